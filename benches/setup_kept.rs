//! What a kept setup costs a docker session's start: a repository whose setup (a second
//! of work, a dependency folder and a HOME file) was kept by an earlier session, against
//! the same repository without a setup, through the real daemon, engine, claude CLI and
//! scripted model: `harvest new --repo R` → the `agent_init` event in the store, pairs
//! alternated. Target: within 1.2× of the session without setup.
//!
//! `cargo build --release -p harvest && HARVEST_BIN=$PWD/target/release/harvest HARVEST_CLAUDE=$PWD/.tools/bin/claude cargo bench --bench setup_kept`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::{Duration, Instant};

const SCRIPT: &str = "[[turn]]\n[[turn.step]]\ntext = \"Hello.\"\n";
const SETUP: &str = "sleep 1; mkdir -p node_modules/dep; \
                     for i in $(seq 1 200); do echo \"module $i\" > node_modules/dep/m$i.js; done; \
                     echo kept > ~/.setup-home-marker\n";

fn main() {
    let h = Harness::new(SCRIPT);
    h.write_config("[sandbox]\ndefault = \"docker\"\n");
    harvest_e2e::docker::prepare(&h);
    let files = |setup: bool| {
        let mut f = vec![
            (".gitignore", "node_modules/\n"),
            ("package-lock.json", "{\"lockfileVersion\": 3}\n"),
            ("index.js", "console.log('hi')\n"),
        ];
        if setup {
            f.push((".harvest/setup", SETUP));
        }
        f
    };
    let with_setup = h.path("with-setup");
    let without = h.path("without-setup");
    harvest_e2e::git::repo_with(&with_setup, &files(true));
    harvest_e2e::git::repo_with(&without, &files(false));
    h.ok(&["daemon"]);
    // The first session of the repository runs the setup and keeps it.
    first_event(&h, &with_setup);
    let (mut kept, mut none, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let a = first_event(&h, &with_setup);
        let b = first_event(&h, &without);
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        kept.push(a);
        none.push(b);
    }
    kept.sort();
    none.sort();
    ratios.sort_by(|a, b| a.total_cmp(b));
    println!(
        "docker session start → agent_init, medians of 7: from a kept setup {:.0} ms, without a setup {:.0} ms; ratio per pair: median {:.2} (min {:.2}, max {:.2}; target ≤ 1.2)",
        ms(kept[3]),
        ms(none[3]),
        ratios[3],
        ratios[0],
        ratios[6]
    );
}

/// `harvest new --detach --repo R` to the `agent_init` event in the store (polled every
/// 5 ms).
fn first_event(h: &Harness, repo: &std::path::Path) -> Duration {
    let start = Instant::now();
    let id = h
        .ok(&["new", "--detach", "--repo", repo.to_str().unwrap(), "hello"])
        .trim()
        .to_owned();
    let took = loop {
        if !of_type(&h.events(&id), "agent_init").is_empty() {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no agent_init");
        std::thread::sleep(Duration::from_millis(5));
    };
    h.wait_events(&id, "the turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    h.ok(&["rm", &id]);
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
