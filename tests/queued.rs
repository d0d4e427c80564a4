//! Follow-ups sent while a turn runs are queued: held by the daemon until the turn ends,
//! shown as queued (`message_queued`), and withdrawable until the agent has them; then
//! they go to the agent (`message_dequeued` + `user_message`) and are answered. Through
//! the real daemon, CLI and bubblewrap, with the scripted model.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use serde_json::Value;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "start the job"
[[turn.step]]
text = "Starting a job that takes a while."
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(3)' && echo job-done", description = "Slow job" } }
[[turn.step]]
text = "The job is done."

[[turn]]
[[turn.step]]
text = "Noted."
"#;

fn busy_session(h: &Harness) -> String {
    let id = h.new_session("start the job");
    h.wait_events(&id, "the tool call", Duration::from_secs(60), |e| {
        !of_type(e, "tool_call").is_empty()
    });
    id
}

/// `harvest send` while the turn runs: it says the message is queued, and with which id.
fn send_queued(h: &Harness, id: &str, text: &str) -> String {
    let out = h.run(&["send", id, text]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queued behind the running turn"), "{err}");
    err.split("(message ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_owned()
}

fn wait_idle(h: &Harness, id: &str) -> Vec<Value> {
    let out = h.run(&["wait", id]);
    let evs = h.events(id);
    assert!(out.status.success(), "not idle: {}", summarize(&evs));
    evs
}

fn model_saw(h: &Harness, text: &str) -> bool {
    h.requests().iter().any(|r| r.all_text().contains(text))
}

#[test]
fn a_follow_up_waits_for_the_turn_then_goes_as_its_own_turn() {
    let h = Harness::new(SCRIPT);
    let id = busy_session(&h);
    send_queued(&h, &id, "and then tidy up");
    let evs = h.events(&id);
    assert_eq!(
        of_type(&evs, "message_queued").len(),
        1,
        "{}",
        summarize(&evs)
    );
    assert!(
        !model_saw(&h, "and then tidy up"),
        "the agent had the message before the turn ended"
    );
    let evs = h.wait_events(&id, "two turns", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    // Taken when the first turn ended: after its result, before the second turn's.
    let pos = |t: &str| evs.iter().position(|e| e["type"] == t).unwrap();
    let first_result = pos("turn_result");
    let taken = evs
        .iter()
        .position(|e| e["type"] == "user_message" && e["text"] == "and then tidy up")
        .unwrap();
    assert!(taken > first_result, "{}", summarize(&evs));
    assert!(
        evs.iter()
            .any(|e| e["type"] == "message_dequeued" && e["withdrawn"] == false),
        "{}",
        summarize(&evs)
    );
    wait_idle(&h, &id);
    assert!(model_saw(&h, "and then tidy up"));
}

#[test]
fn a_queued_follow_up_can_be_withdrawn_and_the_agent_never_sees_it() {
    let h = Harness::new(SCRIPT);
    let id = busy_session(&h);
    let keep = send_queued(&h, &id, "keep this one");
    let drop = send_queued(&h, &id, "withdraw this one");
    assert_ne!(keep, drop);
    let out = h.ok(&["withdraw", &id, "--message", &drop]);
    assert_eq!(out.trim(), "withdraw this one");
    // Withdrawing it again says it is not queued any more.
    let again = h.run(&["withdraw", &id, "--message", &drop]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not queued"),
        "{again:?}"
    );
    h.wait_events(&id, "two turns", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    let evs = wait_idle(&h, &id);
    assert!(model_saw(&h, "keep this one"), "{}", summarize(&evs));
    assert!(
        !model_saw(&h, "withdraw this one"),
        "a withdrawn message reached the model"
    );
    // Once the agent has it, it cannot be withdrawn.
    let late = h.run(&["withdraw", &id, "--message", &keep]);
    assert!(!late.status.success(), "{late:?}");
}

#[test]
fn withdrawing_every_queued_message_leaves_the_session_idle_after_its_turn() {
    let h = Harness::new(SCRIPT);
    let id = busy_session(&h);
    send_queued(&h, &id, "first thought");
    send_queued(&h, &id, "second thought");
    let out = h.ok(&["withdraw", &id]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["first thought", "second thought"]
    );
    let evs = wait_idle(&h, &id);
    assert_eq!(of_type(&evs, "turn_result").len(), 1, "{}", summarize(&evs));
    assert!(!model_saw(&h, "thought"));
}

#[test]
fn a_queued_follow_up_survives_a_daemon_kill_and_is_delivered_once() {
    let h = Harness::new(SCRIPT);
    let id = busy_session(&h);
    send_queued(&h, &id, "after the crash");
    h.kill_daemon();
    h.wait_events(&id, "two turns", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    let evs = wait_idle(&h, &id);
    let delivered = evs
        .iter()
        .filter(|e| e["type"] == "user_message" && e["text"] == "after the crash")
        .count();
    assert_eq!(delivered, 1, "{}", summarize(&evs));
    // The conversation the model last saw holds it once.
    let last = h.requests().last().unwrap().all_text();
    assert_eq!(last.matches("after the crash").count(), 1, "{last}");
}

/// `harvest send-now` sends a queued follow-up into the running turn: the model has it in
/// the turn's next request (beside the tool's result), the turn ends once, and the session
/// goes idle, not left running.
#[test]
fn send_now_puts_a_queued_follow_up_into_the_running_turn() {
    let h = Harness::new(SCRIPT);
    let id = busy_session(&h);
    send_queued(&h, &id, "also mention the weather");
    let out = h.run(&["send-now", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sent into the running turn"));
    let evs = wait_idle(&h, &id);
    // The model saw it in the same turn: in a request that also carries the job's result.
    let folded = h.requests().iter().any(|r| {
        let t = r.all_text();
        t.contains("also mention the weather") && t.contains("job-done")
    });
    assert!(
        folded,
        "the follow-up did not reach the running turn: {}",
        summarize(&evs)
    );
    let taken: Vec<&Value> = of_type(&evs, "message_dequeued");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0]["withdrawn"], false);
    assert_eq!(evs.last().unwrap()["state"], "idle", "{}", summarize(&evs));
    // Nothing is left queued to send now.
    let again = h.run(&["send-now", &id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing was queued"));
}
