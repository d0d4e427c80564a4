//! The daemon's guarantees under stress, with a stand-in agent (tests/support/fake_agent.py)
//! that can produce lines faster than a client reads them, or refuse to stop.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, fake_agent, of_type};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[test]
fn a_stalled_subscriber_is_told_it_lagged_and_still_gets_every_event_once() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let id = h.new_session("emit 0 0");
    h.wait_events(&id, "the empty turn", Duration::from_secs(30), |e| {
        !of_type(e, "turn_result").is_empty()
    });

    // A client that subscribes, then stops reading.
    let stream = UnixStream::connect(h.socket()).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    for (i, (method, params)) in [
        ("hello", json!({"protocol":1,"client":"slow","version":"0"})),
        ("session/subscribe", json!({"session": id, "from_seq": 1})),
    ]
    .into_iter()
    .enumerate()
    {
        writeln!(
            w,
            "{}",
            json!({"jsonrpc":"2.0","id":i,"method":method,"params":params})
        )
        .unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if serde_json::from_str::<Value>(&line).unwrap()["id"] == i {
                break;
            }
        }
    }

    // The agent produces far more than the live buffer holds while the client sleeps; the
    // turn must finish without waiting for that client.
    let n = 30_000;
    let started = Instant::now();
    h.ok(&["send", &id, &format!("emit {n} 0")]);
    h.wait_events(
        &id,
        "the big turn to end with the client stalled",
        Duration::from_secs(60),
        |e| of_type(e, "turn_result").len() >= 2,
    );
    let agent_done = started.elapsed();

    // Now read everything: a lagged notice, and every seq exactly once, in order.
    let last = h.events(&id).last().unwrap()["seq"].as_u64().unwrap();
    let mut seqs = Vec::new();
    let mut lagged = 0;
    while seqs.last() != Some(&last) {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the subscription ended early"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        match v["method"].as_str() {
            Some("event/appended") => seqs.push(v["params"]["event"]["seq"].as_u64().unwrap()),
            Some("subscription/lagged") => lagged += 1,
            _ => {}
        }
    }
    assert!(lagged >= 1, "a stalled subscriber should be told it lagged");
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "gap or duplicate after the re-sync"
    );
    assert!(
        agent_done < Duration::from_secs(30),
        "the agent waited for the client: {agent_done:?}"
    );
}

#[test]
fn cancel_kills_everything_in_the_sandbox_when_the_agent_ignores_interrupt_and_sigterm() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    h.write_config("[agent]\ncancel_grace_secs = 0.5\n");
    let id = h.new_session("stubborn");
    h.wait_events(
        &id,
        "the stubborn agent to start its child",
        Duration::from_secs(30),
        |e| e.iter().any(|e| e["raw"]["subtype"] == "stubborn_started"),
    );
    assert!(
        escaped_child_running(&h),
        "the escaped tool child should be running"
    );
    let asked = Instant::now();
    h.ok(&["cancel", &id]);
    let evs = h.wait_events(&id, "the turn to end", Duration::from_secs(10), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let took = asked.elapsed();
    let turn = of_type(&evs, "turn_result")[0];
    assert_eq!(turn["interrupted"], true, "{turn}");
    // interrupt → 0.5 s → SIGINT → 0.5 s → SIGTERM → 0.5 s → kill the PID namespace.
    assert!(took < Duration::from_secs(5), "escalation took {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !escaped_child_running(&h),
        "a tool child in its own session survived the cancel"
    );
    let last = evs.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["state"].as_str()),
        (Some("status"), Some("idle")),
        "{last}"
    );
}

fn escaped_child_running(h: &Harness) -> bool {
    let marker = format!(
        "escaped-tool {}",
        h.workspace.canonicalize().unwrap().display()
    );
    std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The attack: a tool in the jail sends the agent SIGSTOP, and the user keeps typing, so
/// the agent's input fills and a write into it blocks for good. The session must still
/// obey: `stop` gets through, and `ls` keeps answering meanwhile.
#[test]
fn a_stopped_agent_that_never_reads_its_input_cannot_make_its_session_unstoppable() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let id = h.new_session("freeze");
    h.wait_events(
        &id,
        "the agent to stop itself",
        Duration::from_secs(30),
        |e| e.iter().any(|e| e["raw"]["subtype"] == "frozen"),
    );
    std::thread::sleep(Duration::from_millis(300));
    // More than a socket buffer holds, in messages under the argv limit.
    let big = "x".repeat(120 * 1024);
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = h.cmd(&["send", &id, &big]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let listed = Instant::now();
    h.ok(&["ls"]);
    assert!(
        listed.elapsed() < Duration::from_secs(5),
        "ls waited on the stuck session: {:?}",
        listed.elapsed()
    );
    let asked = Instant::now();
    let mut stop = h.cmd(&["stop", &id]);
    let stopper = std::thread::spawn(move || stop.output().unwrap());
    while !stopper.is_finished() {
        assert!(
            asked.elapsed() < Duration::from_secs(120),
            "stop never got through to the session\n{}",
            h.daemon_log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = stopper.join().unwrap();
    assert!(
        out.status.success(),
        "stop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = h.ok(&["ls"]);
    let row = listing.lines().find(|l| l.contains(&id[..8])).unwrap_or("");
    assert!(!row.contains("running"), "still running: {listing}");
    for s in senders {
        let _ = s.join();
    }
}
