//! Soak: 32 sessions at once on this machine, each a three-turn scripted run through the
//! real claude CLI (a Bash call and text per turn), with the daemon killed (`kill -9`) and
//! restarted three times while they run. Checks that every session completes with every
//! turn's events exactly once, and reports the daemon's memory per session.
//! `cargo build --release -p harvest && cargo bench --bench soak` (HARVEST_SOAK_SESSIONS
//! changes the count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "Working on it, step by step."
tool_use = { name = "Bash", input = { command = "echo turn-output && python3 -c 'import time; time.sleep(1)'", description = "work" } }
chunk_delay_ms = 40
[[turn.step]]
text = "This turn is done."
chunk_delay_ms = 40
"#;

const TURNS: usize = 3;

fn main() {
    let n: usize = std::env::var("HARVEST_SOAK_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let h = Harness::new(SCRIPT);
    let start = Instant::now();
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let ws = h.path(&format!("ws{i}"));
            std::fs::create_dir_all(&ws).unwrap();
            h.ok(&[
                "new",
                "--workspace",
                ws.to_str().unwrap(),
                &format!("turn 1 of session {i}"),
            ])
            .trim()
            .to_owned()
        })
        .collect();
    println!(
        "{n} sessions started in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    let kills = [
        Duration::from_secs(8),
        Duration::from_secs(20),
        Duration::from_secs(35),
    ];
    let mut killed = 0;
    let mut peak_rss_kib = 0;
    let mut sent: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 1)).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if killed < kills.len() && start.elapsed() > kills[killed] {
            peak_rss_kib = peak_rss_kib.max(h.daemon_rss_kib());
            h.kill_daemon();
            killed += 1;
            println!("killed the daemon at {:.1}s", start.elapsed().as_secs_f64());
        }
        let list: Vec<Value> = h
            .ok(&["ls", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut done = 0;
        for s in &list {
            let id = s["id"].as_str().unwrap().to_owned();
            let turns_sent = sent[&id];
            let idle = s["state"] == "idle";
            let finished_turns = s["last_line"]
                .as_str()
                .is_some_and(|l| l.contains("This turn is done"));
            if idle && finished_turns && turns_sent < TURNS {
                let next = turns_sent + 1;
                h.ok(&["send", &id, &format!("turn {next}")]);
                sent.insert(id.clone(), next);
            } else if idle && turns_sent == TURNS {
                done += 1;
            }
        }
        if done == n && killed == kills.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the soak did not finish in time");
        std::thread::sleep(Duration::from_millis(300));
    }
    let wall = start.elapsed();
    peak_rss_kib = peak_rss_kib.max(h.daemon_rss_kib());

    // Every session: seq 1..N without gap, each turn's events exactly once, all turns done.
    let mut events_total = 0;
    for id in &ids {
        let evs = h.events(id);
        events_total += evs.len();
        let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{id}: gap or duplicate seq"
        );
        assert_eq!(
            of_type(&evs, "user_message").len(),
            TURNS,
            "{id}: user messages"
        );
        assert_eq!(
            of_type(&evs, "turn_result").len(),
            TURNS,
            "{id}: turn results"
        );
        assert_eq!(
            of_type(&evs, "tool_call").len(),
            TURNS,
            "{id}: tool calls (one per turn)"
        );
        assert_eq!(
            of_type(&evs, "tool_result").len(),
            TURNS,
            "{id}: tool results"
        );
        let texts = of_type(&evs, "assistant_text").len();
        assert_eq!(texts, 2 * TURNS, "{id}: assistant texts");
        let restarted = evs
            .iter()
            .filter(|e| e["type"] == "status" && e["state"] == "interrupted")
            .count();
        assert_eq!(
            restarted, 0,
            "{id}: an agent was lost in a daemon crash instead of re-adopted"
        );
    }
    println!(
        "soak: {n} sessions × {TURNS} turns, daemon killed {killed} times: all complete in {:.1}s, {events_total} events, none lost or doubled",
        wall.as_secs_f64()
    );
    println!(
        "daemon memory: peak {:.1} MiB resident, {:.0} KiB per session",
        peak_rss_kib as f64 / 1024.0,
        peak_rss_kib as f64 / n as f64
    );
}
