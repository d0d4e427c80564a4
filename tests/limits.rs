//! Limits that protect the user: each gives a clear event, never a silent stop.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

const SCRIPT: &str = r#"
[[turn]]
prompt = "expensive"
[[turn.step]]
text = "That was a lot of tokens."
usage = { input_tokens = 200000, output_tokens = 20000 }

[[turn]]
prompt = "tools"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "echo one", description = "one" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "echo two", description = "two" } }
[[turn.step]]
text = "done"

[[turn]]
[[turn.step]]
text = "hello"
"#;

#[test]
fn a_session_over_budget_says_so_and_refuses_more_work() {
    let h = Harness::new(SCRIPT);
    h.write_config("[agent]\nmax_budget_usd = 0.05\n");
    let id = h.new_session("expensive");
    let evs = h.wait_events(&id, "the costly turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let spent = of_type(&evs, "turn_result")[0]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(
        spent >= 0.05,
        "the scripted usage should cost more than the budget: {spent}"
    );
    let errors = of_type(&evs, "error");
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("budget")),
        "no budget event: {errors:?}"
    );
    let out = h.run(&["send", &id, "hello"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_budget_usd"),
        "{out:?}"
    );
}

#[test]
fn max_turns_ends_a_long_turn_with_a_clear_result() {
    let h = Harness::new(SCRIPT);
    h.write_config("[agent]\nmax_turns = 1\n");
    let id = h.new_session("tools");
    let evs = h.wait_events(&id, "the capped turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let turn = of_type(&evs, "turn_result")[0];
    assert_eq!(turn["subtype"], "error_max_turns", "{turn}");
    assert!(
        turn["result"]
            .as_str()
            .unwrap()
            .contains("maximum number of turns"),
        "{turn}"
    );
}

#[test]
fn an_idle_agent_is_stopped_and_the_next_message_resumes_it() {
    let h = Harness::new(SCRIPT);
    h.write_config("[agent]\nidle_timeout_secs = 1\n");
    let id = h.new_session("hello there");
    let evs = h.wait_events(&id, "the idle timeout", LONG, |e| {
        e.iter().any(|e| {
            e["state"] == "exited" && e["reason"].as_str().is_some_and(|r| r.contains("idle"))
        })
    });
    assert!(!of_type(&evs, "turn_result").is_empty());
    h.ok(&["send", &id, "hello again"]);
    h.wait_events(&id, "the resumed turn", LONG, |e| {
        of_type(e, "turn_result").len() >= 2
    });
}

#[test]
fn a_session_beyond_the_running_limit_waits_queued_then_runs() {
    let h = Harness::new(
        r#"
[[turn]]
prompt = "slow"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(3)'", description = "slow" } }
[[turn.step]]
text = "slow done"
[[turn]]
[[turn.step]]
text = "quick done"
"#,
    );
    h.write_config("[agent]\nmax_running_sessions = 1\n");
    let a = h.new_session("slow one");
    h.wait_events(&a, "the slow command", LONG, |e| {
        !of_type(e, "tool_call").is_empty()
    });
    let ws2 = h.path("ws2");
    std::fs::create_dir_all(&ws2).unwrap();
    let b = h
        .ok(&["new", "--workspace", ws2.to_str().unwrap(), "quick one"])
        .trim()
        .to_owned();

    // B is stored and waits for the slot, visibly.
    let evs = h.events(&b);
    assert!(evs.iter().any(|e| e["state"] == "queued"), "{evs:?}");
    assert!(of_type(&evs, "turn_result").is_empty(), "B ran beside A");
    let listed = h.ok(&["ls", "--json"]);
    assert!(listed.contains("\"state\":\"queued\""), "{listed}");

    // When A's turn ends, B runs.
    let a_done = h.wait_events(&a, "A's turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let b_done = h.wait_events(&b, "B's turn", LONG, |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let a_end = of_type(&a_done, "turn_result")[0]["ts"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_start = b_done
        .iter()
        .find(|e| e["state"] == "running")
        .map(|e| e["ts"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        b_start >= a_end,
        "B started ({b_start}) before A's turn ended ({a_end})"
    );
    assert!(b_done.iter().any(|e| e["text"] == "quick done"));
}
