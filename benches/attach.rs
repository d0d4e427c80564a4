//! Attach to content, as a user feels it: the real `harvest attach` binary on a
//! pseudo-terminal (tests/support/pty_run.py, a terminal that answers no query), through
//! the real daemon, on sessions of 13 000 and 100 000 stored events written as the CLI
//! writes a working session (text, Bash calls with output). Measured: from starting the
//! client to the session's last text on screen. Median of five attaches each.
//! `cargo build --release -p harvest && HARVEST_BIN=$PWD/target/release/harvest cargo bench --bench attach`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, fake_agent, harvest_bin};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn main() {
    println!("attach to content through the daemon (median of 5; target < 150 ms)");
    for n in [13_000, 100_000] {
        let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
        let id = h.new_session(&format!("mix {n}"));
        h.wait_events(&id, "the session's events", Duration::from_secs(600), |e| {
            e.iter().any(|e| e["type"] == "turn_result")
        });
        let stored = h.events(&id).len();
        let mut runs: Vec<f64> = (0..5).map(|_| attach_ms(&h, &id)).collect();
        runs.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{stored} events: last text on screen {:.0} ms after the client started (runs {:?} ms)",
            runs[2],
            runs.iter().map(|r| r.round() as u64).collect::<Vec<_>>()
        );
    }
}

fn attach_ms(h: &Harness, id: &str) -> f64 {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_run.py");
    let cmd = h.cmd(&[]);
    let mut run = std::process::Command::new("python3");
    run.env_clear();
    for (k, v) in cmd.get_envs() {
        if let (Some(k), Some(v)) = (k.to_str(), v.and_then(|v| v.to_str())) {
            run.env(k, v);
        }
    }
    run.env("TERM", "xterm-256color")
        .arg(helper)
        .arg("MIX-END")
        .arg("2")
        .arg(harvest_bin())
        .arg("attach")
        .arg(id);
    let out = run.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["first"].as_f64().expect("the last text never showed") * 1000.0
}
