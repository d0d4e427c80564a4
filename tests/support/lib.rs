//! End-to-end test harness: each test gets its own HOME and XDG folders (so its own
//! daemon, store and socket), an in-process scripted model server, and helpers that run
//! the real `harvest` binary the way a person would.

// A test harness: failing loudly, with what it saw, is its whole job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod daytona;
pub mod docker;
pub mod forge;
pub mod git;
pub mod oauth;

use harvest_scripted_model::{ModelServer, RecordedRequest, Script};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const TEST_KEY: &str = "sk-ant-harvest-test-key-0123456789";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub model: ModelServer,
    /// A workspace folder, created empty.
    pub workspace: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Harness {
    pub fn new(script_toml: &str) -> Harness {
        Self::with_env(script_toml, &[])
    }

    /// `env` is added to every harvest command (and so to a daemon they start).
    pub fn with_env(script_toml: &str, env: &[(&str, &str)]) -> Harness {
        Self::build(|_| script_toml.to_owned(), env)
    }

    /// For scripts that name the test's own paths: `script` gets the harness's root.
    pub fn with_script_for(script: impl FnOnce(&Path) -> String) -> Harness {
        Self::build(script, &[])
    }

    /// Both: a script that names the test's paths, and environment for every command.
    pub fn with_env_for(script: impl FnOnce(&Path) -> String, env: &[(&str, &str)]) -> Harness {
        Self::build(script, env)
    }

    fn build(script: impl FnOnce(&Path) -> String, env: &[(&str, &str)]) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("hv")
            .tempdir()
            .expect("temp dir");
        let script = Script::from_toml_str(&script(dir.path())).expect("test script parses");
        let model = ModelServer::spawn_in_thread(script).expect("scripted model starts");
        for sub in ["home", "run", "data", "state", "config", "ws"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod run");
        let workspace = dir.path().join("ws");
        Harness {
            dir,
            model,
            workspace,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write this test's `harvest.toml`; do it before the first command starts the daemon.
    pub fn write_config(&self, toml: &str) {
        let dir = self.path("config/harvest");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("harvest.toml"), toml).unwrap();
    }

    /// The store's instance name, as the docker provider labels its containers.
    pub fn instance(&self) -> String {
        harvest_config::Paths {
            socket: self.socket(),
            data_dir: self.path("data/harvest"),
            state_dir: self.path("state/harvest"),
            config_dir: self.path("config/harvest"),
        }
        .instance()
    }

    pub fn socket(&self) -> PathBuf {
        self.path("run/harvest/harvestd.sock")
    }

    /// A `harvest` command with this test's environment and nothing else of ours.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(harvest_bin());
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("HARVEST_CLAUDE", claude_bin())
            .env("HARVEST_LOG", "debug")
            .env("ANTHROPIC_BASE_URL", self.model.base_url())
            .env("ANTHROPIC_API_KEY", TEST_KEY);
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("harvest runs")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`harvest {}` failed ({}):\nstdout: {}\nstderr: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `harvest new` in the test workspace; returns the session id.
    pub fn new_session(&self, prompt: &str) -> String {
        let ws = self.workspace.to_str().expect("utf-8 path");
        self.ok(&["new", "--workspace", ws, prompt])
            .trim()
            .to_owned()
    }

    /// The stored events of a session, as `harvest logs --json` prints them.
    pub fn events(&self, id: &str) -> Vec<Value> {
        parse_lines(&self.ok(&["logs", "--json", id]))
    }

    /// Poll the stored events until `done` holds; on timeout, fail with what was seen.
    pub fn wait_events(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let evs = self.events(id);
            if done(&evs) {
                return evs;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; events:\n{}\n{}",
                    summarize(&evs),
                    self.daemon_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.model.requests()
    }

    /// The newest request the model received for a prompt containing `text`.
    pub fn last_request_for(&self, text: &str) -> RecordedRequest {
        self.requests()
            .into_iter()
            .rfind(|r| r.prompt().is_some_and(|p| p.contains(text)))
            .unwrap_or_else(|| panic!("no request reached the model for a prompt with {text:?}"))
    }

    /// `kill -9` the daemon, as a crash would, and wait until it is gone.
    pub fn kill_daemon(&self) {
        let status: Value =
            serde_json::from_str(&self.ok(&["daemon", "status", "--json"])).unwrap();
        let pid = status["pid"].as_i64().unwrap();
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        // Dead once gone, or a zombie with no thread left: the machine's init may take a
        // second or more to reap it, and such a zombie holds nothing (no socket, no lock).
        // The leader alone turns Z while other threads still exit, holding the files.
        let alive = || {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
            match zombie {
                Err(_) => false,
                Ok(false) => true,
                Ok(true) => std::fs::read_dir(format!("/proc/{pid}/task"))
                    .map(|d| d.count() > 1)
                    .unwrap_or(false),
            }
        };
        while alive() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the daemon's log, for failure messages.
    /// The running daemon's pid (0 when none answers).
    pub fn daemon_pid(&self) -> u32 {
        let status = self.run(&["daemon", "status", "--json"]);
        serde_json::from_slice::<Value>(&status.stdout)
            .ok()
            .and_then(|v| v["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0)
    }

    /// The daemon's resident memory, KiB (0 when none answers).
    pub fn daemon_rss_kib(&self) -> u64 {
        proc_status_kib(self.daemon_pid(), "VmRSS:")
    }

    pub fn daemon_log_tail(&self) -> String {
        let dir = self.path("state/harvest/logs");
        let mut text = String::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- daemon log tail ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.cmd(&["daemon", "stop"]).output();
        // Sessions outlive their daemon by design; a test's must not outlive the test.
        // Each jail is killed (its supervisor then ends on its own), by the same
        // pid-reuse-safe kill the local provider uses.
        let sessions = self.path("state").join("harvest/sessions");
        for dir in std::fs::read_dir(sessions).into_iter().flatten().flatten() {
            if let Some(record) = harvest_supervisor::read_record(&dir.path()) {
                record.kill_jail();
            }
        }
        docker::remove_leftovers(self);
    }
}

/// A figure of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `type` of each event, with `name` for tool calls: for readable assertion messages.
pub fn summarize(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?");
            match t {
                "tool_call" => format!("{} {t}:{}", e["seq"], e["name"].as_str().unwrap_or("")),
                "status" => format!("{} {t}:{}", e["seq"], e["state"].as_str().unwrap_or("")),
                _ => format!("{} {t}", e["seq"]),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The stand-in agent for tests of Harvest's own pipeline (see the script's header).
pub fn fake_agent() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/fake_agent.py")
        .display()
        .to_string()
}

pub fn harvest_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HARVEST_BIN") {
        return PathBuf::from(p);
    }
    target_bin("harvest")
}

/// A binary of this workspace beside the tests: target/debug/deps/<test> → target/debug/NAME.
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (tests/ci.sh does)",
        bin.display()
    );
    bin
}

pub fn claude_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HARVEST_CLAUDE") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/claude");
    assert!(
        local.exists(),
        "the claude CLI is needed: run `bash tests/setup.sh` or set HARVEST_CLAUDE"
    );
    local
}

/// Start a test double that prints `listening on URL` as its first line: the child and
/// the URL. Its stdout is read for that line; stderr is dropped.
pub fn spawn_listening(command: &mut Command, what: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{what} said {line:?}, not `listening on …`"))
        .to_owned();
    (child, url)
}
