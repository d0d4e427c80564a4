//! The docker provider against the local one, on this machine, through the real daemon,
//! claude CLI and scripted model (image cached: `bash tests/setup-docker.sh` first):
//!
//! 1. Sandbox start to the agent's first event: `harvest new` → the `agent_init` event
//!    reaching a subscriber, for a new container and for a local jail.
//! 2. The whole run: `harvest run --sandbox docker` ÷ `harvest run --sandbox local` on the
//!    same scripted Read+Edit+Bash session (the demo's).
//!
//! `cargo build --release -p harvest && HARVEST_BIN=$PWD/target/release/harvest HARVEST_CLAUDE=$PWD/.tools/bin/claude cargo bench --bench docker`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::path::Path;
use std::time::{Duration, Instant};

const DEMO_SCRIPT: &str = include_str!("../crates/harvest/src/commands/demo/script.toml");

fn main() {
    let h = Harness::new(DEMO_SCRIPT);
    harvest_e2e::docker::prepare(&h);
    h.ok(&["daemon"]);
    println!("docker provider benchmarks (medians of 7; image cached)");
    for kind in ["local", "docker"] {
        let mut runs: Vec<Duration> = (0..7).map(|_| first_event(&h, kind)).collect();
        runs.sort();
        println!(
            "  {kind:<6} sandbox start → the agent's first event: {:.0} ms (runs {:?} ms; docker target < 1 s)",
            ms(runs[3]),
            runs.iter()
                .map(|d| ms(*d).round() as u64)
                .collect::<Vec<_>>()
        );
    }
    let mut ratios = Vec::new();
    let (mut locals, mut dockers) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let l = whole_run(&h, "local");
        let d = whole_run(&h, "docker");
        ratios.push(d.as_secs_f64() / l.as_secs_f64());
        locals.push(l);
        dockers.push(d);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    locals.sort();
    dockers.sort();
    println!(
        "  whole run, the demo's Read+Edit+Bash session: docker {:.0} ms, local {:.0} ms, ratio {:.2} (per-pair ratios {:?}; target ≤ 1.2)",
        ms(dockers[3]),
        ms(locals[3]),
        ratios[3],
        ratios
            .iter()
            .map(|r| (r * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
}

/// `harvest new --detach` to the `agent_init` event in the store (polled every 5 ms).
fn first_event(h: &Harness, kind: &str) -> Duration {
    reset(&h.workspace, kind);
    let ws = h.workspace.to_str().unwrap();
    let start = Instant::now();
    let id = h.ok(&[
        "new",
        "--detach",
        "--sandbox",
        kind,
        "--workspace",
        ws,
        "Fix the failing test in this project.",
    ]);
    let id = id.trim().to_owned();
    let took = loop {
        let evs = h.events(&id);
        if !of_type(&evs, "agent_init").is_empty() {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no agent_init");
        std::thread::sleep(Duration::from_millis(5));
    };
    h.wait_events(&id, "the turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    h.ok(&["rm", &id]);
    took
}

fn whole_run(h: &Harness, kind: &str) -> Duration {
    reset(&h.workspace, kind);
    let ws = h.workspace.to_str().unwrap();
    let start = Instant::now();
    let out = h.ok(&[
        "run",
        "--json",
        "--sandbox",
        kind,
        "--workspace",
        ws,
        "Fix the failing test in this project.",
    ]);
    let took = start.elapsed();
    // HARVEST_BENCH_PHASES=1: each event's time, to see where a run spends it.
    if std::env::var_os("HARVEST_BENCH_PHASES").is_some() {
        for l in out.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            eprintln!("{kind} {} {}", v["ts"], v["type"]);
        }
        eprintln!("{kind} total {took:?}");
    }
    assert!(
        std::fs::read_to_string(h.workspace.join("calc.py"))
            .unwrap()
            .contains("a + b"),
        "the {kind} run did not fix the project"
    );
    took
}

fn reset(ws: &Path, kind: &str) {
    std::fs::write(ws.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
    std::fs::write(
        ws.join("test_calc.py"),
        "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
    )
    .unwrap();
    // As root the container's agent is uid 1000: the files are given to it (and back to
    // root for the local jail, which maps root to its own uid 1000).
    // SAFETY: getuid(2) cannot fail.
    if unsafe { libc::getuid() } == 0 {
        let owner = if kind == "docker" { "1000:1000" } else { "0:0" };
        let _ = std::process::Command::new("chown")
            .args(["-R", owner])
            .arg(ws)
            .status();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
