//! Cancelling a turn while a long Bash command runs.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::{Duration, Instant};

// The CLI refuses a bare `sleep N`, so the long command is a Python sleep.
const SCRIPT: &str = r#"
[[turn]]
prompt = "run the slow job"
[[turn.step]]
text = "Starting the slow job."
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(30)' && echo slow-job-finished # MARKER", description = "Slow job" } }
[[turn.step]]
text = "The slow job finished."

[[turn]]
prompt = "are you still there"
[[turn.step]]
text = "Still here."
"#;

#[test]
fn cancel_interrupts_a_long_bash_command_and_the_session_goes_on() {
    // The command carries this test's own folder, so no other run's sleeper is mistaken
    // for it.
    let h = Harness::with_script_for(|root| SCRIPT.replace("MARKER", &root.display().to_string()));
    let marker = h.dir.path().display().to_string();
    let id = h.new_session("run the slow job");
    h.wait_events(
        &id,
        "the Bash call to start",
        Duration::from_secs(60),
        |evs| !of_type(evs, "tool_call").is_empty(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sleeper_running(&marker),
        "the long command should be running before the cancel"
    );

    let asked = Instant::now();
    h.ok(&["cancel", &id]);
    let evs = h.wait_events(
        &id,
        "the turn to end as interrupted",
        Duration::from_secs(20),
        |evs| !of_type(evs, "turn_result").is_empty(),
    );
    let took = asked.elapsed();
    let turn = of_type(&evs, "turn_result")[0];
    assert_eq!(turn["interrupted"], true, "{turn}");
    assert!(took < Duration::from_secs(3), "the cancel took {took:?}");
    let results = of_type(&evs, "tool_result");
    assert!(
        !results.iter().any(|e| e["content"]
            .as_str()
            .unwrap_or("")
            .contains("slow-job-finished")),
        "the command ran to completion: {results:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !sleeper_running(&marker),
        "the cancelled command is still running"
    );
    h.wait_events(
        &id,
        "the session to be idle",
        Duration::from_secs(5),
        |evs| {
            evs.last()
                .is_some_and(|e| e["type"] == "status" && e["state"] == "idle")
        },
    );

    h.ok(&["send", &id, "are you still there"]);
    let evs = h.wait_events(
        &id,
        "a new turn after the cancel",
        Duration::from_secs(60),
        |evs| of_type(evs, "turn_result").len() >= 2,
    );
    let last = of_type(&evs, "turn_result")[1];
    assert_eq!(last["is_error"], false, "{last}");
    assert!(evs.iter().any(|e| e["text"] == "Still here."));
}

fn sleeper_running(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("time.sleep\\(30\\).*{marker}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
