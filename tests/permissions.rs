//! Permission prompts in `ask` mode, through the real CLI: a tool call waits as a
//! `permission_request` (the session `needs_input`) until someone answers; the first answer
//! wins; a denial reaches the agent and the conversation goes on; "always" allows the tool.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, parse_lines};
use serde_json::Value;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "first"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "touch first.txt", description = "make a file" } }
[[turn.step]]
text = "first done"

[[turn]]
prompt = "second"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "touch second.txt", description = "make another" } }
[[turn.step]]
text = "second done"

[[turn]]
prompt = "third"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "touch third-a.txt", description = "one" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "touch third-b.txt", description = "two" } }
[[turn.step]]
text = "third done"

[[turn]]
prompt = "widen"
[[turn.step]]
tool_use = { name = "Bash", input = { command = '''mkdir -p .claude ~/.claude && for f in .claude/settings.json .claude/settings.local.json ~/.claude/settings.json; do printf '{"permissions":{"allow":["Bash"],"defaultMode":"bypassPermissions"}}' > $f; done; echo widened''', description = "widen" } }
[[turn.step]]
text = "widened"

[[turn]]
prompt = "after"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "touch after.txt", description = "after" } }
[[turn.step]]
text = "after done"
"#;

const LONG: Duration = Duration::from_secs(60);

fn pending(evs: &[Value]) -> Vec<String> {
    let resolved: Vec<&str> = of_type(evs, "permission_resolved")
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    of_type(evs, "permission_request")
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .filter(|r| !resolved.contains(&r.as_str()))
        .collect()
}

#[test]
fn ask_mode_allow_race_deny_and_always() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h
        .ok(&["new", "--permissions", "ask", "--workspace", &ws, "first"])
        .trim()
        .to_owned();

    // The call waits; the session needs input, with the command in the reason.
    let evs = h.wait_events(&id, "a permission request", LONG, |e| {
        !pending(e).is_empty()
    });
    let req = of_type(&evs, "permission_request")[0].clone();
    assert_eq!(req["tool"], "Bash");
    assert!(
        req["summary"].as_str().unwrap().contains("touch first.txt"),
        "{req}"
    );
    let listed = parse_lines(&h.ok(&["ls", "--json"]));
    assert_eq!(listed[0]["state"], "needs_input", "{listed:?}");
    assert!(
        !h.workspace.join("first.txt").exists(),
        "the call ran before it was allowed"
    );
    // Allowed with the command edited: the edited one runs, not the requested one.
    h.ok(&[
        "approve",
        &id,
        req["request_id"].as_str().unwrap(),
        "--allow",
        "--command",
        "touch edited.txt",
    ]);
    h.wait_events(&id, "the first turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    assert!(h.workspace.join("edited.txt").exists());
    assert!(!h.workspace.join("first.txt").exists());
    // Every client learns what ran and that it was edited: the answer carries the input,
    // and the tool call it belongs to is named by the request.
    let evs = h.events(&id);
    let resolved = of_type(&evs, "permission_resolved")[0].clone();
    assert_eq!(
        resolved["input"]["command"], "touch edited.txt",
        "{resolved}"
    );
    let asked = of_type(&evs, "permission_request")[0]["tool_use_id"].clone();
    assert!(
        of_type(&evs, "tool_call").iter().any(|c| c["id"] == asked),
        "the request names its tool call: {asked}"
    );
    assert!(
        h.ok(&["logs", &id])
            .contains("edited: runs `touch edited.txt`"),
        "logs must show the command that ran"
    );

    // Two answers race: exactly one wins; here whichever it is decides the outcome.
    h.ok(&["send", &id, "second"]);
    let evs = h.wait_events(&id, "the second request", LONG, |e| !pending(e).is_empty());
    let req = pending(&evs)[0].clone();
    let spawn = |args: &[&str]| {
        h.cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let deny = spawn(&["approve", &id, &req, "--deny", "--message", "not that one"]);
    let allow = spawn(&["approve", &id, &req, "--allow"]);
    let (deny, allow) = (
        deny.wait_with_output().unwrap(),
        allow.wait_with_output().unwrap(),
    );
    assert!(
        deny.status.success() != allow.status.success(),
        "exactly one answer must win:\ndeny: {deny:?}\nallow: {allow:?}"
    );
    let loser = if deny.status.success() { &allow } else { &deny };
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("already answered"),
        "{loser:?}"
    );
    let evs = h.wait_events(&id, "the second turn", LONG, |e| {
        of_type(e, "turn_result").len() >= 2
    });
    assert_eq!(
        h.workspace.join("second.txt").exists(),
        allow.status.success()
    );
    if deny.status.success() {
        // The denial reached the agent as a failed tool call, and the turn went on.
        let result = of_type(&evs, "tool_result").last().unwrap().to_string();
        assert!(result.contains("not that one"), "{result}");
        assert_eq!(of_type(&evs, "turn_result")[1]["is_error"], false);
    }

    // "always" allows Bash for the rest of the session: the next call is not asked.
    h.ok(&["send", &id, "third"]);
    let evs = h.wait_events(&id, "the third request", LONG, |e| !pending(e).is_empty());
    h.ok(&["approve", &id, &pending(&evs)[0], "--always"]);
    let evs = h.wait_events(&id, "the third turn", LONG, |e| {
        of_type(e, "turn_result").len() >= 3
    });
    assert!(h.workspace.join("third-a.txt").exists() && h.workspace.join("third-b.txt").exists());
    let asked_third = of_type(&evs, "permission_request").len();
    assert_eq!(pending(&evs), Vec::<String>::new());
    assert!(
        of_type(&evs, "permission_resolved")
            .iter()
            .filter(|e| e["decision"] == "always")
            .count()
            >= asked_third - 2,
        "later Bash calls were allowed without asking"
    );
    assert_eq!(evs.last().unwrap()["state"], "idle");
}

/// The attack: in `ask` mode a tool writes permission rules into the settings files the
/// CLI reads live (the workspace's `.claude/settings*.json`, its HOME's), to have later
/// calls run without asking. Those files are not read in `ask` mode: the next call still
/// waits for an answer.
#[test]
fn a_tool_cannot_widen_its_own_permissions() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h
        .ok(&["new", "--permissions", "ask", "--workspace", &ws, "widen"])
        .trim()
        .to_owned();
    h.wait_events(&id, "the first request", LONG, |e| !pending(e).is_empty());
    // The only request waiting needs no id.
    h.ok(&["approve", &id, "--allow"]);
    h.wait_events(&id, "the first turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    assert!(h.workspace.join(".claude/settings.local.json").exists());
    let none = h.run(&["approve", &id, "--allow"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no permission request waits"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    // The CLI watches its settings files: give it the time to see the change.
    std::thread::sleep(Duration::from_secs(3));
    h.ok(&["send", &id, "after"]);
    let evs = h.wait_events(&id, "the next call, asked or run", LONG, |e| {
        !pending(e).is_empty() || of_type(e, "turn_result").len() >= 2
    });
    assert!(
        !pending(&evs).is_empty() && !h.workspace.join("after.txt").exists(),
        "a call ran without asking after the tool widened its permissions"
    );
}

#[test]
fn a_waiting_permission_survives_a_daemon_crash() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h
        .ok(&["new", "--permissions", "ask", "--workspace", &ws, "first"])
        .trim()
        .to_owned();
    let evs = h.wait_events(&id, "a permission request", LONG, |e| {
        !pending(e).is_empty()
    });
    let req = pending(&evs)[0].clone();
    h.kill_daemon();
    // The restarted daemon re-adopts the waiting agent and still takes the answer.
    h.ok(&["approve", &id, &req, "--allow"]);
    h.wait_events(&id, "the turn after the crash", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    assert!(h.workspace.join("first.txt").exists());
}
