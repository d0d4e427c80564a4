//! What bringing the user's own Claude Code configuration costs a session's start: a
//! typical configuration (CLAUDE.md, settings.json, 50 skills, 20 commands, 3 stdio MCP
//! servers) against none (`--no-user-config`), through the real daemon, claude CLI and
//! scripted model: `harvest new` → the `agent_init` event in the store, pairs alternated.
//!
//! `cargo build --release -p harvest && HARVEST_BIN=$PWD/target/release/harvest HARVEST_CLAUDE=$PWD/.tools/bin/claude cargo bench --bench user_config`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::{Duration, Instant};

const SCRIPT: &str = "[[turn]]\n[[turn.step]]\ntext = \"Hello.\"\n";
const TINY_MCP: &str = include_str!("../tests/support/tiny_mcp.py");

fn main() {
    let h = Harness::new(SCRIPT);
    typical_home(&h);
    std::fs::write(h.workspace.join("tiny_mcp.py"), TINY_MCP).unwrap();
    h.ok(&["daemon"]);
    let (mut with, mut without, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        let a = first_event(&h, false);
        let b = first_event(&h, true);
        diffs.push(ms(a) - ms(b));
        with.push(a);
        without.push(b);
    }
    with.sort();
    without.sort();
    diffs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "session start → agent_init, medians of 9: with the typical configuration {:.0} ms, without {:.0} ms; difference per pair: median {:.0} ms (min {:.0}, max {:.0}; target < 50 ms)",
        ms(with[4]),
        ms(without[4]),
        diffs[4],
        diffs[0],
        diffs[8]
    );
}

fn typical_home(h: &Harness) {
    let claude = h.path("home/.claude");
    std::fs::create_dir_all(claude.join("commands")).unwrap();
    std::fs::write(
        claude.join("CLAUDE.md"),
        "Prefer small, reviewed changes.\n".repeat(40),
    )
    .unwrap();
    std::fs::write(
        claude.join("settings.json"),
        r#"{"permissions":{"allow":["Bash(git status:*)"]},"env":{"EDITOR":"vi"}}"#,
    )
    .unwrap();
    for i in 0..50 {
        let dir = claude.join(format!("skills/skill-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("SKILL.md"),
            format!("---\nname: skill-{i}\ndescription: Does task number {i}.\n---\nSteps for task {i}.\n"),
        )
        .unwrap();
    }
    for i in 0..20 {
        std::fs::write(
            claude.join(format!("commands/cmd-{i}.md")),
            format!("---\ndescription: Command {i}\n---\nRun command {i}: $ARGUMENTS\n"),
        )
        .unwrap();
    }
    let servers: serde_json::Map<String, serde_json::Value> = (0..3)
        .map(|i| {
            (
                format!("tiny-{i}"),
                serde_json::json!({"type": "stdio", "command": "python3", "args": ["tiny_mcp.py"]}),
            )
        })
        .collect();
    std::fs::write(
        h.path("home/.claude.json"),
        serde_json::json!({ "mcpServers": servers }).to_string(),
    )
    .unwrap();
}

/// `harvest new --detach` to the `agent_init` event in the store (polled every 5 ms).
fn first_event(h: &Harness, clean: bool) -> Duration {
    let ws = h.workspace.to_str().unwrap();
    let mut args = vec!["new", "--detach", "--workspace", ws];
    if clean {
        args.push("--no-user-config");
    }
    args.push("hello");
    let start = Instant::now();
    let id = h.ok(&args).trim().to_owned();
    let took = loop {
        if !of_type(&h.events(&id), "agent_init").is_empty() {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
