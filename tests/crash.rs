//! The agent outlives the daemon: `kill -9` of the daemon while the model streams, while a
//! tool runs, and between turns. A restarted daemon re-adopts the running agent, and the
//! stored events match a run without the crash: nothing lost, nothing doubled.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use serde_json::Value;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "stream"
[[turn.step]]
text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four"
chunk_delay_ms = 150

[[turn]]
prompt = "tool"
[[turn.step]]
text = "Running the job."
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(3)' && echo finished > marker.txt && echo job-done", description = "Slow job" } }
[[turn.step]]
text = "The job is done."

[[turn]]
prompt = "again"
[[turn.step]]
text = "Still the same conversation."
"#;

#[derive(Clone, Copy, PartialEq)]
enum Kill {
    Never,
    WhileStreaming,
    WhileToolRuns,
    BetweenTurns,
}

/// One scripted session: a first turn (`prompt`), then a follow-up; killing the daemon at
/// the chosen moment. Returns the stored events.
fn session(prompt: &str, kill: Kill) -> (Harness, Vec<Value>) {
    let h = Harness::new(SCRIPT);
    let id = h.new_session(prompt);
    let long = Duration::from_secs(60);
    match kill {
        Kill::WhileStreaming => {
            h.wait_events(&id, "text to start streaming", long, |e| {
                of_type(e, "assistant_delta").len() >= 2
            });
            h.kill_daemon();
        }
        Kill::WhileToolRuns => {
            h.wait_events(&id, "the tool to start", long, |e| {
                !of_type(e, "tool_call").is_empty()
            });
            std::thread::sleep(Duration::from_millis(500));
            h.kill_daemon();
        }
        _ => {}
    }
    h.wait_events(&id, "the first turn to end", long, |e| idle_after(e, 1));
    if kill == Kill::BetweenTurns {
        h.kill_daemon();
    }
    h.ok(&["send", &id, "again"]);
    let evs = h.wait_events(&id, "the follow-up to end", long, |e| idle_after(e, 2));
    (h, evs)
}

fn idle_after(evs: &[Value], turns: usize) -> bool {
    of_type(evs, "turn_result").len() >= turns
        && evs
            .last()
            .is_some_and(|e| e["type"] == "status" && e["state"] == "idle")
}

/// An event without what differs between any two runs: times, ids, paths, durations.
fn shape(h: &Harness, e: &Value) -> String {
    let mut e = e.clone();
    if let Some(o) = e.as_object_mut() {
        for k in [
            "ts",
            "session",
            "raw",
            "id",
            "tool_use_id",
            "duration_ms",
            "agent_session_id",
        ] {
            o.remove(k);
        }
    }
    e.to_string()
        .replace(&h.dir.path().display().to_string(), "<root>")
}

fn compare(kill: Kill, prompt: &str) {
    let (reference, expected) = session(prompt, Kill::Never);
    let (crashed, got) = session(prompt, kill);
    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap or duplicate: {}",
        summarize(&got)
    );
    let a: Vec<String> = expected.iter().map(|e| shape(&reference, e)).collect();
    let b: Vec<String> = got.iter().map(|e| shape(&crashed, e)).collect();
    assert_eq!(b, a, "the events differ from a run without the crash");
    // The same agent served the follow-up: it was re-adopted, not restarted.
    assert!(
        !got.iter().any(|e| e["type"] == "sandbox"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("restarted"))),
        "the agent was restarted instead of re-adopted: {}",
        summarize(&got)
    );
}

#[test]
fn kill_9_while_the_model_streams() {
    compare(Kill::WhileStreaming, "stream");
}

#[test]
fn kill_9_while_a_tool_runs_and_its_effect_lands() {
    compare(Kill::WhileToolRuns, "tool");
    let (h, evs) = session("tool", Kill::WhileToolRuns);
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("marker.txt")).unwrap(),
        "finished\n"
    );
    let result = of_type(&evs, "tool_result")[0];
    assert!(
        result["content"].as_str().unwrap().contains("job-done"),
        "{result}"
    );
}

#[test]
fn kill_9_between_turns() {
    compare(Kill::BetweenTurns, "stream");
}

#[test]
fn an_agent_that_died_while_the_daemon_was_down_is_interrupted_then_resumed() {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("stream");
    h.wait_events(
        &id,
        "text to start streaming",
        Duration::from_secs(60),
        |e| of_type(e, "assistant_delta").len() >= 2,
    );
    // The daemon and then the whole jail die, as in a reboot or an out-of-memory kill.
    h.kill_daemon();
    let jail = format!("sessions/{id}/home");
    std::process::Command::new("pkill")
        .args(["-9", "-f", &jail])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let evs = h.wait_events(
        &id,
        "the session marked interrupted",
        Duration::from_secs(30),
        |e| e.iter().any(|e| e["state"] == "interrupted"),
    );
    let mark = evs.iter().find(|e| e["state"] == "interrupted").unwrap();
    assert!(
        mark["reason"]
            .as_str()
            .unwrap()
            .contains("send a message to resume"),
        "{mark}"
    );

    // The next message resumes the conversation in the same workspace.
    h.ok(&["send", &id, "again"]);
    h.wait_events(&id, "the resumed turn", Duration::from_secs(60), |e| {
        of_type(e, "turn_result")
            .iter()
            .any(|t| t["is_error"] == false)
    });
    let req = h.last_request_for("again");
    assert!(
        req.all_text().contains("stream"),
        "the resumed agent lost the conversation: {}",
        req.all_text()
    );
}

/// The daemon and the session's supervisor both killed mid-turn (the agent's jail left
/// running, its output with no one to write it): the turn is lost, and the restarted
/// daemon says so at once, with the reason, rather than showing the session running.
/// Killing the supervisor alone, the daemon watching, is noticed as soon.
#[test]
fn a_supervisor_killed_mid_turn_marks_the_session_interrupted_at_once() {
    for kill_daemon_too in [true, false] {
        let h = Harness::new(SCRIPT);
        let id = h.new_session("tool");
        h.wait_events(&id, "the tool to start", Duration::from_secs(60), |e| {
            !of_type(e, "tool_call").is_empty()
        });
        if kill_daemon_too {
            h.kill_daemon();
        }
        let record: Value = serde_json::from_slice(
            &std::fs::read(h.path(&format!("state/harvest/sessions/{id}/supervisor.json")))
                .unwrap(),
        )
        .unwrap();
        let pid = record["supervisor_pid"].as_i64().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let started = std::time::Instant::now();
        let evs = h.wait_events(
            &id,
            "the session marked interrupted",
            Duration::from_secs(10),
            |e| e.iter().any(|e| e["state"] == "interrupted"),
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "noticed only after {:?}",
            started.elapsed()
        );
        let mark = evs
            .iter()
            .rev()
            .find(|e| e["state"] == "interrupted")
            .unwrap();
        let reason = mark["reason"].as_str().unwrap();
        assert!(reason.contains("supervisor"), "{reason}");
        let ls = h.ok(&["ls", "--json"]);
        assert!(!ls.contains("\"running\""), "{ls}");
        // Nothing of the jail is left running (SIGKILL takes a moment to land).
        let jail = format!("sessions/{id}/home");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = std::process::Command::new("pgrep")
                .args(["-f", &jail])
                .output()
                .unwrap();
            if left.stdout.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the jail outlived its supervisor: {}",
                String::from_utf8_lossy(&left.stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A script following a session with `logs --follow` must not believe the session ended
/// because the daemon died: it reconnects, goes on from the last event, and ends only
/// when the session does.
#[test]
fn logs_follow_reconnects_after_a_daemon_kill_with_no_gap_and_no_duplicate() {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("stream");
    let follower = h
        .cmd(&["logs", "--json", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.wait_events(
        &id,
        "text to start streaming",
        Duration::from_secs(60),
        |e| of_type(e, "assistant_delta").len() >= 2,
    );
    h.kill_daemon();
    let stored = h.wait_events(&id, "the turn to end", Duration::from_secs(60), |e| {
        idle_after(e, 1)
    });
    std::thread::sleep(Duration::from_millis(500));
    h.ok(&["rm", &id]);
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the follower failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<u64> = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, want, "gap or duplicate in what the follower printed");
    assert!(
        seen.len() > stored.len(),
        "the follower stopped early: {} of {} events (and the removal)",
        seen.len(),
        stored.len()
    );
}

/// A power cut loses the store's last commits (with `synchronous = NORMAL`), but not the
/// agent's log that the supervisor flushes to disk: the restarted daemon's checkpoint is
/// older, so it reads the log again from there and stores the same events under the same
/// seqs. Simulated by putting back the store's files as they were earlier, after the log
/// went on.
#[test]
fn a_store_that_lost_its_last_commits_is_rebuilt_from_the_log_with_the_same_seqs() {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("stream");
    h.wait_events(
        &id,
        "text to start streaming",
        Duration::from_secs(60),
        |e| of_type(e, "assistant_delta").len() >= 2,
    );
    h.kill_daemon();
    let data = h.path("data/harvest");
    let saved = h.path("saved-store");
    std::fs::create_dir_all(&saved).unwrap();
    for f in ["harvest.db", "harvest.db-wal", "harvest.db-shm"] {
        if data.join(f).exists() {
            std::fs::copy(data.join(f), saved.join(f)).unwrap();
        }
    }
    let full = h.wait_events(&id, "the turn to end", Duration::from_secs(60), |e| {
        idle_after(e, 1)
    });
    h.kill_daemon();
    // The commits after the copy are "lost": the store is back to what it was.
    for f in ["harvest.db", "harvest.db-wal", "harvest.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
        if saved.join(f).exists() {
            std::fs::copy(saved.join(f), data.join(f)).unwrap();
        }
    }
    let rebuilt = h.wait_events(
        &id,
        "the turn to be rebuilt",
        Duration::from_secs(60),
        |e| idle_after(e, 1),
    );
    let a: Vec<String> = full.iter().map(|e| shape(&h, e)).collect();
    let b: Vec<String> = rebuilt.iter().map(|e| shape(&h, e)).collect();
    assert_eq!(b, a, "the rebuilt session differs: {}", summarize(&rebuilt));
}

/// `harvest daemon stop` mid-tool leaves the agent running: the next command's daemon
/// takes it up again and the turn completes, not interrupted; `daemon reload` reads a
/// changed config the same way, refuses a broken one and keeps the daemon.
/// `--end-sessions` stops the agents.
#[test]
fn stopping_or_reloading_the_daemon_keeps_the_turn_running() {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("tool");
    h.wait_events(&id, "the tool call", Duration::from_secs(60), |e| {
        !of_type(e, "tool_call").is_empty()
    });
    let out = h.ok(&["daemon", "stop"]);
    assert!(out.contains("agents run on"), "{out}");
    let evs = h.wait_events(
        &id,
        "the turn, after the stop",
        Duration::from_secs(60),
        |e| !of_type(e, "turn_result").is_empty(),
    );
    let result = of_type(&evs, "turn_result")[0];
    assert_eq!(result["is_error"], false, "{}", summarize(&evs));
    assert_eq!(result["interrupted"], false, "{}", summarize(&evs));
    assert!(h.workspace.join("marker.txt").exists());
    assert!(
        !summarize(&evs).contains("interrupted"),
        "{}",
        summarize(&evs)
    );

    // A broken config is refused and the daemon kept; a good one is read.
    h.write_config("[agent]\nmodle = \"x\"\n");
    let bad = h.run(&["daemon", "reload"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("modle"));
    h.write_config("[agent]\nmax_turns = 7\n");
    h.ok(&["send", &id, "tool"]);
    h.wait_events(&id, "the second tool call", Duration::from_secs(60), |e| {
        of_type(e, "tool_call").len() >= 2
    });
    let out = h.ok(&["daemon", "reload"]);
    assert!(out.contains("reloaded"), "{out}");
    let evs = h.wait_events(&id, "the second turn", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    assert_eq!(of_type(&evs, "turn_result")[1]["interrupted"], false);

    // --end-sessions stops the agent: the session shows exited, and why.
    let out = h.ok(&["daemon", "stop", "--end-sessions"]);
    assert!(out.contains("and its sessions' agents"), "{out}");
    let evs = h.events(&id);
    let last = evs.iter().rev().find(|e| e["type"] == "status").unwrap();
    assert_eq!(last["state"], "exited", "{}", summarize(&evs));
}
