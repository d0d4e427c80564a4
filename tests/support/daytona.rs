//! The FAKE Daytona (`harvest-fake-daytona`, crates/harvest-fake-daytona) as the daytona
//! provider's tests use it: started on a free loopback port with its own sandbox root,
//! its control routes (`/_fake/…`) driven with curl.

use crate::{Harness, claude_bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const KEY: &str = "dtn-test-key-7f3a9c2e41b8";

static SHARED: std::sync::OnceLock<FakeDaytona> = std::sync::OnceLock::new();

pub struct FakeDaytona {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub root: tempfile::TempDir,
}

pub fn fake_bin() -> PathBuf {
    crate::target_bin("harvest-fake-daytona")
}

impl FakeDaytona {
    pub fn start(extra: &[&str]) -> FakeDaytona {
        let root = tempfile::Builder::new()
            .prefix("fd")
            .tempdir()
            .expect("temp dir");
        let (child, url) = crate::spawn_listening(
            Command::new(fake_bin())
                .args(["--listen", "127.0.0.1:0", "--api-key", KEY])
                .arg("--root")
                .arg(root.path())
                .arg("--claude")
                .arg(claude_bin())
                .args(if extra.contains(&"--transition-ms") {
                    &[][..]
                } else {
                    &["--transition-ms", "150"][..]
                })
                .args(["--close-ms", "300", "--exit-with-stdin"])
                .args(extra)
                .stdin(Stdio::piped()),
            "the fake Daytona",
        );
        FakeDaytona { child, url, root }
    }

    /// One fake for a whole test binary (sessions are told apart by their labels); it
    /// ends with the binary, as its stdin closes.
    pub fn shared() -> &'static FakeDaytona {
        SHARED.get_or_init(|| FakeDaytona::start(&[]))
    }

    /// The shared fake, if a test of this binary started it.
    pub fn if_started() -> Option<&'static FakeDaytona> {
        SHARED.get()
    }

    /// A sandbox labelled for a session, whatever its state.
    pub fn sandbox_labelled(&self, session: &str) -> Option<Value> {
        self.sandboxes()
            .into_iter()
            .find(|s| s["labels"]["harvest.session"] == session)
    }

    /// The sandbox of the one session of a harness.
    pub fn sandbox_of_harness(&self, h: &Harness) -> Option<Value> {
        let instance = h.instance();
        self.sandboxes()
            .into_iter()
            .find(|s| s["labels"]["harvest.instance"] == instance.as_str())
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    /// A harness whose harvest commands use this fake, `daytona` the default sandbox.
    pub fn harness(&self, script: impl FnOnce(&Path) -> String) -> Harness {
        let url = self.api_url();
        let h = Harness::with_env_for(
            script,
            &[("DAYTONA_API_KEY", KEY), ("DAYTONA_API_URL", url.as_str())],
        );
        h.write_config("[sandbox]\ndefault = \"daytona\"\n");
        h
    }

    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "30"])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn fault(&self, fault: Value) {
        self.curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &fault.to_string(),
            &format!("{}/_fake/faults", self.url),
        ]);
    }

    /// Every sandbox that is not destroyed, each with its `dir` on this machine.
    pub fn sandboxes(&self) -> Vec<Value> {
        serde_json::from_str(&self.curl(&[&format!("{}/_fake/sandboxes", self.url)]))
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Value> {
        serde_json::from_str(&self.curl(&[&format!("{}/_fake/requests", self.url)]))
            .unwrap_or_default()
    }

    /// An authenticated GET of the API or toolbox, as a client of the service would.
    pub fn get(&self, path: &str) -> String {
        self.curl(&[
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-H",
            "X-Daytona-SDK-Version: 0.190.0",
            &format!("{}{path}", self.url),
        ])
    }

    /// The one sandbox of a session.
    pub fn sandbox_of(&self, session: &str) -> Value {
        let all = self.sandboxes();
        let mine: Vec<&Value> = all
            .iter()
            .filter(|s| s["labels"]["harvest.session"] == session)
            .collect();
        assert_eq!(mine.len(), 1, "sandboxes of {session}: {all:?}");
        mine[0].clone()
    }

    /// A file of a session's workspace, read on this machine from the fake's root.
    pub fn workspace_file(&self, session: &str, rel: &str) -> Option<String> {
        let s = self.sandbox_of(session);
        let dir = PathBuf::from(s["dir"].as_str()?);
        std::fs::read_to_string(dir.join("home/workspace").join(rel)).ok()
    }
}

impl Drop for FakeDaytona {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
