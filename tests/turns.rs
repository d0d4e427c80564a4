//! Turns are tracked by what the CLI reports, not by counting messages (the CLI can fold
//! a message that reaches it during a tool call into the turn under way: two messages, one
//! result). Follow-ups sent during a turn are now held by the daemon until it ends
//! (tests/queued.rs); either way a session must end idle with every message answered —
//! with and without a daemon `kill -9` in between.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
prompt = "start the job"
[[turn.step]]
text = "Starting a job that takes a while."
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(3)' && echo job-done", description = "Slow job" } }
[[turn.step]]
text = "The slow part of the answer streams word by word so that messages can arrive while it does."
chunk_delay_ms = 60

[[turn]]
[[turn.step]]
text = "Noted."
"#;

/// Send `follow_ups` messages at the given offsets after the first tool call started;
/// optionally kill the daemon after the last one. The session must end idle (`harvest
/// wait` says so) and the model must have seen every message.
fn follow_ups(offsets_ms: &[u64], kill: bool) {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("start the job");
    h.wait_events(&id, "the tool call", Duration::from_secs(60), |e| {
        !of_type(e, "tool_call").is_empty()
    });
    let started = Instant::now();
    let mut sent = Vec::new();
    for (i, at) in offsets_ms.iter().enumerate() {
        let wait = Duration::from_millis(*at).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        let text = format!("follow-up number {i}");
        h.ok(&["send", &id, &text]);
        sent.push(text);
    }
    if kill {
        h.kill_daemon();
    }
    // `harvest wait` would hang forever on a session stuck in "running": bound it.
    let mut wait = h.cmd(&["wait", &id]).spawn().expect("harvest wait runs");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = wait.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = wait.kill();
            let _ = wait.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let evs = h.events(&id);
    assert!(
        status.is_some_and(|s| s.success()),
        "harvest wait did not end idle ({status:?}): {}\n{}",
        summarize(&evs),
        h.daemon_log_tail()
    );
    assert_eq!(
        evs.last().unwrap()["state"],
        "idle",
        "the session is not idle: {}",
        summarize(&evs)
    );
    let seen: String = h.requests().iter().map(|r| r.all_text()).collect();
    for text in &sent {
        assert!(
            seen.contains(text.as_str()),
            "the model never saw {text:?}: {}",
            summarize(&evs)
        );
    }
    // Stays idle: no turn is left counted as running.
    std::thread::sleep(Duration::from_millis(700));
    let again = h.events(&id);
    assert_eq!(
        again.last().unwrap()["state"],
        "idle",
        "{}",
        summarize(&again)
    );
}

#[test]
fn one_follow_up_during_the_tool_call_ends_idle() {
    follow_ups(&[500], false);
}

#[test]
fn two_follow_ups_at_different_moments_end_idle() {
    // One while the tool runs, one while the answer streams.
    follow_ups(&[400, 3600], false);
}

#[test]
fn five_follow_ups_during_the_tool_call_end_idle() {
    follow_ups(&[300, 500, 700, 900, 1100], false);
}

#[test]
fn follow_ups_then_a_daemon_kill_9_still_end_idle() {
    follow_ups(&[400, 900], true);
}
