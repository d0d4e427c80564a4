//! Memory kept per removed session: one daemon, rounds of sessions each created (a turn
//! through the real claude CLI and the scripted model), answered and removed with `rm`;
//! the daemon's resident memory after every round. A daemon that retains something per
//! removed session grows with every round; one that does not levels off after the first
//! rounds (the allocator keeps what it grew to).
//! `cargo build --release -p harvest && cargo bench --bench memory`
//! (HARVEST_MEMORY_ROUNDS, HARVEST_MEMORY_PER_ROUND change the counts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "Looking."
tool_use = { name = "Bash", input = { command = "seq 1 2000", description = "work" } }
[[turn.step]]
text = "Done with this one."
"#;

fn main() {
    let count = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = count("HARVEST_MEMORY_ROUNDS", 6);
    let per_round = count("HARVEST_MEMORY_PER_ROUND", 12);
    let h = Harness::new(SCRIPT);
    println!("daemon resident memory after each round of {per_round} sessions created and removed");
    let mut figures = Vec::new();
    for round in 1..=rounds {
        let ids: Vec<String> = (0..per_round)
            .map(|i| h.new_session(&format!("round {round} session {i}")))
            .collect();
        for id in &ids {
            h.wait_events(id, "the turn to end", Duration::from_secs(120), |e| {
                !of_type(e, "turn_result").is_empty()
            });
        }
        for id in &ids {
            h.ok(&["rm", id]);
        }
        // Let the removed sessions' tasks finish.
        std::thread::sleep(Duration::from_secs(1));
        let rss = h.daemon_rss_kib();
        println!(
            "round {round:>2} ({:>3} sessions removed): {:>6.1} MiB",
            round * per_round,
            rss as f64 / 1024.0
        );
        figures.push(rss);
    }
    if let (Some(second), Some(last)) = (figures.get(1), figures.last()) {
        let removed_since = (rounds - 2) * per_round;
        println!(
            "growth from round 2 to round {rounds}: {:+.1} KiB per removed session",
            (*last as f64 - *second as f64) / removed_since.max(1) as f64
        );
    }
}
