//! The FAKE forge (tests/support/fake_forge.py) as the tests use it: bare repositories
//! served over git's smart HTTP by the real `git http-backend`, and the pull-request part
//! of GitHub's REST API under `/api/v3`, both on one loopback port.

use crate::git::{git, repo_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const TOKEN: &str = "ghp_harvestTestToken0123456789abcdef";

pub struct FakeForge {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub root: tempfile::TempDir,
}

impl FakeForge {
    /// A forge whose git accepts `TOKEN` for pushes and whose API accepts `api_token`.
    pub fn start(api_token: &str) -> FakeForge {
        let root = tempfile::Builder::new()
            .prefix("ff")
            .tempdir()
            .expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_forge.py");
        let (child, url) = crate::spawn_listening(
            Command::new("python3")
                .arg(script)
                .arg("--root")
                .arg(root.path())
                .args(["--token", TOKEN, "--api-token", api_token])
                .stdin(Stdio::piped()),
            "the fake forge (python3)",
        );
        FakeForge { child, url, root }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.url)
    }

    /// `owner/name` with `files` committed on `main`; its clone URL.
    pub fn repo(&self, owner: &str, name: &str, files: &[(&str, &str)]) -> String {
        let work = self.root.path().join(format!("{owner}-{name}-work"));
        repo_with(&work, files);
        let bare = self.bare(owner, name);
        std::fs::create_dir_all(bare.parent().expect("owner dir")).expect("owner dir");
        git(
            &work,
            &["clone", "-q", "--bare", ".", bare.to_str().expect("utf-8")],
        );
        format!("{}/{owner}/{name}.git", self.url)
    }

    pub fn bare(&self, owner: &str, name: &str) -> PathBuf {
        self.root.path().join(owner).join(format!("{name}.git"))
    }

    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "30"])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pulls(&self) -> Vec<Value> {
        serde_json::from_str(&self.curl(&[&format!("{}/_fake/pulls", self.url)]))
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Value> {
        serde_json::from_str(&self.curl(&[&format!("{}/_fake/requests", self.url)]))
            .unwrap_or_default()
    }

    pub fn accept_api_token(&self, token: &str) {
        self.curl(&[
            "-X",
            "POST",
            "-d",
            &serde_json::json!({ "token": token }).to_string(),
            &format!("{}/_fake/api-token", self.url),
        ]);
    }
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
