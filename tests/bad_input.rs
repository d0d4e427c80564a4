//! Bad input gets a clear error, the daemon stays up, and other sessions are unharmed.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, TEST_KEY, of_type};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "hello"
[[turn.step]]
text = "Hello there."
[[turn]]
prompt = "again"
[[turn.step]]
text = "Still fine."
"#;

struct Raw {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Raw {
    fn connect(h: &Harness) -> Raw {
        let s = UnixStream::connect(h.socket()).expect("the daemon socket answers");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }
    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }
    fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("the daemon answers JSON")),
        }
    }
    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.send_raw(format!("{req}\n").as_bytes());
        self.read().expect("an answer")
    }
    fn hello(&mut self) {
        let r = self.call(
            0,
            "hello",
            json!({"protocol":1,"client":"test","version":"0"}),
        );
        assert!(r["result"]["pid"].is_u64(), "{r}");
    }
}

fn code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error: {v}"))
}

#[test]
fn malformed_and_oversized_frames_are_refused_and_the_daemon_stays_up() {
    let h = Harness::new(SCRIPT);
    // A healthy session first: it must be unharmed by everything below.
    let id = h.new_session("hello");
    h.wait_events(&id, "the first turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });

    let mut c = Raw::connect(&h);
    // Before hello.
    let r = c.call(1, "session/list", json!({}));
    assert_eq!(code(&r), -32001, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("hello"));
    c.hello();
    // Garbage: a parse error, and the connection stays usable.
    c.send_raw(b"this is not json\n");
    let r = c.read().expect("an answer to garbage");
    assert_eq!(code(&r), -32700, "{r}");
    assert!(r["id"].is_null());
    let r = c.call(2, "session/list", json!({}));
    assert_eq!(r["result"]["sessions"].as_array().unwrap().len(), 1, "{r}");
    // Unknown method, unknown session, bad params.
    assert_eq!(code(&c.call(3, "session/explode", json!({}))), -32601);
    let r = c.call(4, "session/get", json!({"session": "nope"}));
    assert_eq!(code(&r), -32010, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("harvest ls"),
        "{r}"
    );
    assert_eq!(code(&c.call(5, "session/send", json!({"text": 3}))), -32602);

    // An oversized line: refused with an error, and only this connection closes.
    let mut big = Raw::connect(&h);
    big.hello();
    let chunk = vec![b'a'; 1 << 20];
    let mut refused = None;
    for _ in 0..17 {
        if big.writer.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = big.writer.write_all(b"\n");
    if let Some(v) = big.read() {
        refused = Some(v);
    }
    let refused = refused.expect("an error for the oversized line");
    assert_eq!(code(&refused), -32003, "{refused}");
    assert!(
        big.read().is_none(),
        "the oversized connection should be closed"
    );

    // The first connection and the daemon are fine; the session still works.
    let r = c.call(6, "daemon/status", json!({}));
    assert!(r["result"]["pid"].is_u64(), "{r}");
    h.ok(&["send", &id, "again"]);
    let evs = h.wait_events(&id, "the follow-up", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    assert!(evs.iter().any(|e| e["text"] == "Still fine."));
}

#[test]
fn unknown_ids_missing_key_and_missing_cli_get_clear_errors() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();

    let out = h.run(&["logs", "deadbeef"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no session") && err.contains("harvest ls"),
        "{err}"
    );

    // No key and no base URL: refused before any sandbox is made.
    let out = h
        .cmd(&["new", "--workspace", &ws, "hello"])
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ANTHROPIC_API_KEY"), "{err}");
    assert!(
        h.ok(&["ls", "--json"]).trim().is_empty(),
        "a failed create left a session behind"
    );
    let sessions_dir = h.path("state/harvest/sessions");
    assert_eq!(
        std::fs::read_dir(&sessions_dir)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    // A missing workspace.
    let out = h.run(&["new", "--workspace", "/nonexistent/ws", "hello"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ws"));

    // The key never reaches the store or the daemon's logs.
    let id = h.new_session("hello");
    h.wait_events(&id, "a turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    h.ok(&["daemon", "stop"]);
    for dir in ["data", "state"] {
        for file in walk(&h.path(dir)) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let hit = bytes
                .windows(TEST_KEY.len())
                .any(|w| w == TEST_KEY.as_bytes());
            assert!(!hit, "the API key was written to {}", file.display());
            // Everything the daemon writes is private to the user.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            if !file.starts_with(h.workspace.as_path())
                && !file.to_string_lossy().contains("/home/")
            {
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{} is mode {:o}",
                    file.display(),
                    mode & 0o777
                );
            }
        }
    }
}

#[test]
fn a_missing_claude_cli_is_named_and_the_daemon_survives() {
    let h = Harness::with_env(SCRIPT, &[("HARVEST_CLAUDE", "/nonexistent/claude")]);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let out = h.run(&["new", "--workspace", &ws, "hello"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("claude CLI was not found") && err.contains("/nonexistent/claude"),
        "{err}"
    );
    let status = h.ok(&["daemon", "status"]);
    assert!(status.contains("running"), "{status}");

    // One daemon per socket: a second one refuses to start and leaves the first alone.
    let second = h.run(&["daemon", "--foreground"]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(h.ok(&["daemon", "status"]).contains("running"));
}

/// An SSH login without XDG_RUNTIME_DIR uses another socket folder than the desktop's, but
/// the same store: the second daemon must refuse, and say which daemon holds the store.
#[test]
fn a_second_daemon_on_another_socket_refuses_the_same_store() {
    let h = Harness::new(SCRIPT);
    h.ok(&["ls"]); // starts the daemon
    let other_run = h.path("other-run");
    std::fs::create_dir_all(&other_run).unwrap();
    let second = h
        .cmd(&["daemon", "--foreground"])
        .env("XDG_RUNTIME_DIR", &other_run)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second daemon started on the same store"
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("already uses the store") && err.contains("pid "),
        "{err}"
    );
    assert!(h.ok(&["daemon", "status"]).contains("running"));
}

/// The attack: a process with the user's uid but inside another PID or mount namespace
/// (what a jailed agent is) reaches the socket. It is refused, and told why.
#[test]
fn a_peer_in_another_namespace_is_refused() {
    let h = Harness::new(SCRIPT);
    h.ok(&["ls"]); // starts the daemon on the host
    let harvest = harvest_e2e::harvest_bin();
    // The test's environment (its own HOME, socket, store), for a command run by unshare.
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = h
        .cmd(&["ls"])
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    for flags in [&["-U", "-r", "-p", "-f", "-m"][..], &["-U", "-r", "-m"][..]] {
        let out = std::process::Command::new("unshare")
            .args(flags)
            .arg(&harvest)
            .arg("ls")
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "unshare {flags:?}: a namespaced peer got in"
        );
        assert!(err.contains("inside a sandbox"), "unshare {flags:?}: {err}");
    }
    // The daemon is fine and still serves the host.
    h.ok(&["ls"]);
}

fn daemon_rss_mib(h: &Harness) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&h.ok(&["daemon", "status", "--json"])).unwrap();
    let pid = status["pid"].as_i64().unwrap();
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// The attack: forty connections each send 15 MiB of a line and stop; 1 100 more sit idle;
/// one request has an object for an id. The daemon stays small, answers the odd request,
/// and `harvest ls` still works.
#[test]
fn held_partial_lines_and_idle_connections_cannot_starve_the_daemon() {
    use std::io::{BufRead, BufReader, Write};
    let h = Harness::new(SCRIPT);
    h.ok(&["ls"]);
    let before = daemon_rss_mib(&h);
    let chunk = vec![b'x'; 1024 * 1024];
    let mut holders = Vec::new();
    for _ in 0..40 {
        let mut s = std::os::unix::net::UnixStream::connect(h.socket()).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"");
        for _ in 0..15 {
            if s.write_all(&chunk).is_err() {
                break; // refused and closed: what a spent budget does
            }
        }
        holders.push(s);
    }
    let mut idle = Vec::new();
    for _ in 0..1100 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(h.socket()) {
            idle.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = daemon_rss_mib(&h);
    assert!(
        during < before + 150,
        "the daemon grew from {before} MiB to {during} MiB on held partial lines"
    );
    let t = std::time::Instant::now();
    h.ok(&["ls"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "ls took {:?}",
        t.elapsed()
    );

    let mut odd = std::os::unix::net::UnixStream::connect(h.socket()).unwrap();
    odd.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    odd.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"hello\",\"params\":{}}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(&odd).read_line(&mut line).unwrap();
    assert!(
        line.contains("-32600") && line.contains("\"id\":null"),
        "{line}"
    );
    drop(holders);
    drop(idle);
}

#[test]
fn missing_bubblewrap_names_the_package_to_install() {
    let h = Harness::new(SCRIPT);
    h.write_config("[sandbox]\nbwrap_path = \"/nonexistent/bwrap\"\n");
    let ws = h.workspace.to_str().unwrap().to_owned();
    let out = h.run(&["new", "--workspace", &ws, "hello"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install bubblewrap"), "{err}");
    assert!(h.ok(&["ls", "--json"]).trim().is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&p));
        } else if ft.is_file() {
            out.push(p);
        }
    }
    out
}

/// Credentials in a `--repo` URL are never echoed back: not in the error of a failed
/// clone, not in the store.
#[test]
fn credentials_in_a_repo_url_stay_out_of_errors_and_the_store() {
    let h = Harness::new(SCRIPT);
    let out = h.run(&[
        "new",
        "--detach",
        "--repo",
        "http://someone:s3cret-token@127.0.0.1:9/org/app.git",
        "hello",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("git clone http://127.0.0.1:9/org/app.git failed"),
        "{err}"
    );
    assert!(!err.contains("s3cret-token"), "the token was echoed: {err}");
    for file in walk(&h.path("data")) {
        let text = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("s3cret-token"),
            "the token is in {}",
            file.display()
        );
    }
}

/// `harvest new "…"` in a project folder works there, as `claude` does; in the home
/// folder it is refused with why and what to do.
#[test]
fn new_without_a_folder_takes_the_current_one_but_never_home() {
    let h = Harness::new(SCRIPT);
    let out = h
        .cmd(&["new", "--detach", "hello"])
        .current_dir(&h.workspace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let listed = h.ok(&["ls", "--json"]);
    let ws = std::fs::canonicalize(&h.workspace).unwrap();
    assert!(
        listed.contains(&format!("\"workspace\":\"{}\"", ws.display())),
        "{listed}"
    );
    h.wait_events(&id, "the turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    // A path relative to the workspace is read there, as the agent's tools read it.
    std::fs::write(
        h.workspace.join("calc.py"),
        "def add(a, b):\n    return a + b\n",
    )
    .unwrap();
    assert_eq!(
        h.ok(&["cat", &id, "calc.py"]),
        "def add(a, b):\n    return a + b\n"
    );
    let home = h.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = h
        .cmd(&["new", "--detach", "hello"])
        .current_dir(&home)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("home folder"), "{err}");
}
