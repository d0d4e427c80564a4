//! A running command's output, live, through the real CLI and the scripted model: while a
//! Bash step prints over several seconds, `tool_progress` events carry how long it has
//! run, how many lines it printed and its last lines (made terminal-safe) before its
//! result; `harvest logs` shows them; the result then replaces them.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use serde_json::Value;

const SCRIPT: &str = r#"
[[turn]]
prompt = "run the slow build"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "for i in $(seq 1 16); do echo \"live-$i\"; printf '\\033]52;c;cGF3bmVk\\007evil-$i\\n'; sleep 0.4; done", description = "Slow build" } }
[[turn.step]]
text = "Built."
"#;

fn live_output(kind: &str) {
    let h = Harness::new(SCRIPT);
    h.write_config(&format!("[sandbox]\ndefault = \"{kind}\"\n"));
    if kind == "docker" {
        harvest_e2e::docker::prepare(&h);
    }
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&["run", "--json", "--workspace", ws, "run the slow build"]);
    let evs = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}\n{}",
        summarize(&evs),
        h.daemon_log_tail()
    );
    let progress: Vec<&Value> = of_type(&evs, "tool_progress");
    assert!(
        !progress.is_empty(),
        "no live output while the command ran: {}",
        summarize(&evs)
    );
    let result_seq = of_type(&evs, "tool_result")[0]["seq"].as_u64().unwrap();
    let before: Vec<&&Value> = progress
        .iter()
        .filter(|p| p["seq"].as_u64().unwrap() < result_seq && p["lines"].as_u64().unwrap() > 0)
        .collect();
    assert!(
        !before.is_empty(),
        "no progress with lines before the result: {progress:?}"
    );
    let last = before.last().unwrap();
    let tail = serde_json::to_string(&last["tail"]).unwrap();
    assert!(tail.contains("live-"), "{tail}");
    // What the command printed is the agent's: no terminal control reaches a client.
    assert!(
        !tail.contains('\u{1b}') && !tail.contains('\u{7}'),
        "{tail}"
    );
    assert!(last["elapsed_secs"].as_u64().is_some());
    // The result carries everything; `harvest logs` shows the live lines too.
    let id = evs[0]["session"].as_str().unwrap();
    let logs = h.ok(&["logs", id]);
    assert!(logs.contains("⋯ running"), "{logs}");
    // A long output shows its start, and says how to see it whole; --full prints it all.
    assert!(logs.contains("harvest logs --full"), "{logs}");
    let full = h.ok(&["logs", "--full", id]);
    assert!(full.contains("live-16"), "{full}");
}

#[test]
fn a_running_commands_output_shows_live() {
    live_output("local");
}

#[test]
fn a_running_commands_output_shows_live_in_a_container() {
    live_output("docker");
}
