//! The user's own Claude login in Harvest: a subscription login found in
//! `~/.claude/.credentials.json` without being asked, used and refreshed only by the model
//! proxy outside the sandbox (against a FAKE token endpoint, tests/support/fake_oauth.py,
//! which rotates refresh tokens as Claude's does), written back so the user's own `claude`
//! stays logged in, refreshed once for several sessions, and never inside a sandbox.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::oauth::FakeOAuth;
use harvest_e2e::{Harness, of_type, summarize};
use serde_json::{Value, json};
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "show me your environment"
[[turn.step]]
tool_use = { name = "Bash", input = { command = '''env; for f in /proc/[0-9]*/environ; do tr '\0' '\n' < $f; done 2>/dev/null; cat ~/.claude/.credentials.json 2>&1; grep -rao 'sk-ant-o[a-z]*[0-9]*-[A-Za-z0-9]*' ~ . /tmp 2>/dev/null; echo env-probe-done''', description = "Print every environment" } }
[[turn.step]]
text = "That is all I can see."

[[turn]]
[[turn.step]]
text = "Hello from the scripted model."
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A login whose access token expires in a minute: inside the proxy's margin, so the
/// sessions' first requests need a refresh, as one that expires mid-session would.
fn write_login(h: &Harness) -> std::path::PathBuf {
    let dir = h.path("home/.claude");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(".credentials.json");
    let login = json!({
        "claudeAiOauth": {
            "accessToken": "sk-ant-oat01-A0",
            "refreshToken": "sk-ant-ort01-R0",
            "expiresAt": now_ms() + 60_000,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        },
        "mcpOAuth": {"kept": "as it was"}
    });
    std::fs::write(&path, login.to_string()).unwrap();
    path
}

fn subscription_sessions(kind: &str) {
    let oauth = FakeOAuth::start("sk-ant-ort01-R0");
    let token_url = oauth.token_url();
    let h = Harness::with_env(SCRIPT, &[("HARVEST_TEST_OAUTH_ENDPOINT", &token_url)]);
    h.write_config(&format!("[sandbox]\ndefault = \"{kind}\"\n"));
    if kind == "docker" {
        harvest_e2e::docker::prepare(&h);
    }
    let login = write_login(&h);
    let ws = h.workspace.to_str().unwrap().to_owned();

    // `harvest auth` says what sessions will use, and never prints a token.
    let auth = h
        .cmd(&["auth"])
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&auth.stdout);
    assert!(
        auth.status.success() && said.contains("subscription login (max plan)"),
        "{said}"
    );
    assert!(!said.contains("sk-ant-"), "{said}");

    // Three sessions at once, with no key in the environment.
    let children: Vec<_> = (0..3)
        .map(|_| {
            h.cmd(&[
                "new",
                "--detach",
                "--workspace",
                &ws,
                "show me your environment",
            ])
            .env_remove("ANTHROPIC_API_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    let mut probes = String::new();
    for id in &ids {
        let evs = h.wait_events(id, "the turn", Duration::from_secs(90), |e| {
            !of_type(e, "turn_result").is_empty()
        });
        let result = of_type(&evs, "turn_result")[0];
        assert_eq!(
            result["is_error"],
            false,
            "{}\n{:?}\n{}",
            summarize(&evs),
            of_type(&evs, "error"),
            h.daemon_log_tail()
        );
        for r in of_type(&evs, "tool_result") {
            probes.push_str(&r.to_string());
        }
    }
    assert_eq!(oauth.refreshes(), 1, "three sessions must refresh once");
    let file: Value = serde_json::from_slice(&std::fs::read(&login).unwrap()).unwrap();
    assert_eq!(file["claudeAiOauth"]["accessToken"], "sk-ant-oat01-A1");
    assert_eq!(file["claudeAiOauth"]["refreshToken"], "sk-ant-ort01-R1");
    assert_eq!(file["mcpOAuth"]["kept"], "as it was", "other fields kept");
    for r in h.requests() {
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(auth, Some("Bearer sk-ant-oat01-A1"), "{}", r.path);
    }
    // The sandboxes held only the placeholder.
    assert!(probes.contains("env-probe-done"), "the probes did not run");
    for secret in ["sk-ant-oat01", "sk-ant-ort01"] {
        let at = probes.find(secret);
        assert!(
            at.is_none(),
            "{secret} reached a sandbox: …{}…",
            at.map(|i| &probes[i.saturating_sub(200)..(i + 100).min(probes.len())])
                .unwrap_or_default()
        );
    }

    // The user's own claude, afterwards, is still logged in with the rotated token.
    let before = h.requests().len();
    let out = std::process::Command::new(harvest_e2e::claude_bin())
        .args(["-p", "hello", "--output-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", h.path("home"))
        .env("ANTHROPIC_BASE_URL", h.model.base_url())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(&h.workspace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mine = &h.requests()[before..];
    assert!(!mine.is_empty());
    let auth = mine[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer sk-ant-oat01-A1"));
}

#[test]
fn a_subscription_login_is_refreshed_once_outside_the_sandbox_and_written_back() {
    subscription_sessions("local");
}

#[test]
fn a_subscription_login_works_in_a_container_too() {
    subscription_sessions("docker");
}

/// Without any credential, the error says what to do: log in, `claude setup-token`, a
/// key; `harvest auth` says the same.
#[test]
fn no_credential_at_all_says_how_to_log_in() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let out = h
        .cmd(&["new", "--detach", "--workspace", &ws, "hello"])
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("claude setup-token") && err.contains("log in with `claude`"),
        "{err}"
    );
}
