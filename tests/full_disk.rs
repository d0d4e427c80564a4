//! A full disk: the store refuses every append (simulated by the daemon's test hook
//! `HARVEST_TEST_STORE_FULL`, which makes appends fail with SQLite's "database or disk is
//! full" while a file exists). The session shows it is stalled and why, calls to it answer
//! with that instead of hanging, nothing the agent printed meanwhile is lost, and it goes on
//! by itself once there is room again, with one stored `error` event saying what happened.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
prompt = "stream"
[[turn.step]]
text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four"
chunk_delay_ms = 150

[[turn]]
[[turn.step]]
text = "Answered."
"#;

#[test]
fn a_full_store_stalls_the_session_visibly_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let flag = root.path().join("disk-full");
    let h = Harness::with_env(
        SCRIPT,
        &[("HARVEST_TEST_STORE_FULL", flag.to_str().unwrap())],
    );
    let id = h.new_session("stream");
    h.wait_events(
        &id,
        "text to start streaming",
        Duration::from_secs(60),
        |e| of_type(e, "assistant_delta").len() >= 2,
    );
    std::fs::write(&flag, "").unwrap();
    let start = Instant::now();
    loop {
        let ls = h.ok(&["ls"]);
        if ls.contains("stalled since") && ls.contains("disk is full") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no stall shown: {ls}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A call answers at once with why, instead of hanging.
    let t = Instant::now();
    let out = h.run(&["send", &id, "are you there"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "send went through a stalled session");
    assert!(
        err.contains("cannot take this now") && err.contains("disk"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "send took {:?}",
        t.elapsed()
    );
    // Room again: it catches up by itself, with every word and no gap.
    std::fs::remove_file(&flag).unwrap();
    let evs = h.wait_events(&id, "the turn to end", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{}",
        summarize(&evs)
    );
    let text = of_type(&evs, "assistant_text")[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.ends_with("twenty-four"), "{text}");
    // The history says where the gap came from, once, for every client to show.
    let errors: Vec<_> = of_type(&evs, "error")
        .into_iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("could not be stored") && m.contains("disk is full"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", summarize(&evs));
    assert!(
        !h.ok(&["ls"]).contains("stalled"),
        "the stall is still shown"
    );
}
