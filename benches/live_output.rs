//! A command printing 10 000 lines a second for 20 s, followed live: the daemon's resident
//! memory while it runs (against the same daemon idle), how many `tool_progress` events it
//! stored, and the longest one (bytes). Through the real daemon, claude CLI, bubblewrap
//! and scripted model.
//! `cargo build --release -p harvest && HARVEST_BIN=$PWD/target/release/harvest HARVEST_CLAUDE=$PWD/.tools/bin/claude cargo bench --bench live_output`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use serde_json::Value;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
prompt = "flood"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "python3 -c 'import sys,time\nfor s in range(20):\n  t=time.time()\n  for i in range(10000): sys.stdout.write(\"line %d of second %d, some text to make it a realistic length\\n\" % (i, s))\n  sys.stdout.flush(); time.sleep(max(0, 1-(time.time()-t)))'", description = "Flood" } }
[[turn.step]]
text = "Flooded."
"#;

fn main() {
    let h = Harness::new(SCRIPT);
    h.ok(&["daemon"]);
    let pid = h.daemon_pid();
    let idle = harvest_e2e::proc_status_kib(pid, "VmRSS:");
    let start = Instant::now();
    let id = h.new_session("flood");
    let mut peak = 0;
    loop {
        peak = peak.max(harvest_e2e::proc_status_kib(pid, "VmRSS:"));
        let evs = h.events(&id);
        if !of_type(&evs, "turn_result").is_empty() {
            let progress: Vec<&Value> = of_type(&evs, "tool_progress");
            let longest = progress
                .iter()
                .map(|e| e.to_string().len())
                .max()
                .unwrap_or(0);
            let last_lines = progress
                .last()
                .and_then(|e| e["lines"].as_u64())
                .unwrap_or(0);
            println!(
                "10 000 lines/s for 20 s: daemon RSS idle {idle} KiB, peak while following {peak} KiB (+{} KiB); {} tool_progress events stored, the longest {longest} bytes; lines counted at the last report {last_lines}; the turn took {:.1} s",
                peak.saturating_sub(idle),
                progress.len(),
                start.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the turn did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
