//! Messages survive any crash, and reach the agent exactly once: the daemon dies between
//! storing a message and writing it, or between writing it and recording that it did; a
//! queued message waits through a crash for its running slot.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use serde_json::Value;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "slow job"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(4)' && echo slow-done", description = "Slow" } }
[[turn.step]]
text = "Slow job done."

[[turn]]
[[turn.step]]
text = "Answered."
"#;

const LONG: Duration = Duration::from_secs(60);

fn idle_with_turns(evs: &[Value], turns: usize) -> bool {
    of_type(evs, "turn_result").len() >= turns
        && evs
            .last()
            .is_some_and(|e| e["type"] == "status" && e["state"] == "idle")
}

/// How many model requests carried this prompt as their latest user message.
fn requests_for(h: &Harness, prompt: &str) -> usize {
    h.requests()
        .iter()
        .filter(|r| r.prompt().as_deref() == Some(prompt) && r.tool_results_after_prompt() == 0)
        .count()
}

/// The daemon dies at `point` while delivering the first prompt of `harvest new`; the next
/// command restarts it, and the prompt is answered, once.
fn first_prompt_survives(point: &str) {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap();
    let out = h
        .cmd(&["new", "--detach", "--workspace", ws, "hello there"])
        .env("HARVEST_TEST_CRASH_AT", point)
        .output()
        .unwrap();
    // The daemon dies as it delivers, which may come before or after `new` has its answer;
    // either way the session was stored before, and the next command finds it.
    std::thread::sleep(Duration::from_millis(500));
    let mut id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if id.is_empty() {
        let ls = harvest_e2e::parse_lines(&h.ok(&["ls", "--json"]));
        assert_eq!(ls.len(), 1, "the session must exist: {ls:?} ({out:?})");
        id = ls[0]["id"].as_str().unwrap().to_owned();
    }
    let evs = h.wait_events(&id, "the first turn", LONG, |e| idle_with_turns(e, 1));
    assert_eq!(
        of_type(&evs, "user_message").len(),
        1,
        "the prompt is stored once: {}",
        summarize(&evs)
    );
    assert_eq!(
        requests_for(&h, "hello there"),
        1,
        "the model must get the prompt exactly once"
    );
}

#[test]
fn a_crash_between_storing_and_writing_the_first_prompt_delivers_it_after_the_restart() {
    first_prompt_survives("before_delivery");
}

#[test]
fn a_crash_between_writing_and_recording_delivers_it_only_once() {
    first_prompt_survives("after_delivery");
}

#[test]
fn a_queued_first_prompt_waits_through_a_crash_and_gets_the_slot() {
    let h = Harness::new(SCRIPT);
    h.write_config("[agent]\nmax_running_sessions = 1\n");
    let a = h.new_session("slow job");
    h.wait_events(&a, "the slow job to run", LONG, |e| {
        !of_type(e, "tool_call").is_empty()
    });
    let b = h.new_session("queued prompt");
    h.wait_events(&b, "the second session to queue", LONG, |e| {
        e.iter().any(|e| e["state"] == "queued")
    });
    h.kill_daemon();
    // The first session finishes; the queued one gets the slot, its prompt answered.
    h.wait_events(&a, "the slow job to end", LONG, |e| idle_with_turns(e, 1));
    let evs = h.wait_events(&b, "the queued prompt's turn", LONG, |e| {
        idle_with_turns(e, 1)
    });
    assert_eq!(requests_for(&h, "queued prompt"), 1, "{}", summarize(&evs));
    // And the slot is free for the next session.
    let c = h.new_session("third");
    h.wait_events(&c, "a third session's turn", LONG, |e| {
        idle_with_turns(e, 1)
    });
}
