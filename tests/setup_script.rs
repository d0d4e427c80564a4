//! The repository's setup (`.harvest/setup`), run in the sandbox before the first turn,
//! through the real daemon, CLI and scripted model: its output streams line by line to
//! the waiting client and is stored; a failure says its exit code and the session goes
//! on; `--no-setup` skips it.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use std::io::BufRead;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
prompt = "use what setup made"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat installed.txt", description = "Look" } }
[[turn.step]]
text = "Looked."
"#;

fn with_setup(h: &Harness, script: &str) {
    let dir = h.workspace.join(".harvest");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("setup"), script).unwrap();
}

#[test]
fn a_slow_setup_streams_line_by_line_and_the_first_turn_sees_its_work() {
    slow_setup("local");
}

#[test]
fn a_slow_setup_streams_in_a_container_too() {
    slow_setup("docker");
}

fn slow_setup(kind: &str) {
    let h = Harness::new(SCRIPT);
    h.write_config(&format!("[sandbox]\ndefault = \"{kind}\"\n"));
    if kind == "docker" {
        harvest_e2e::docker::prepare(&h);
    }
    with_setup(
        &h,
        "for i in 1 2 3; do echo \"step $i\"; sleep 1; done; echo dependencies > installed.txt\n",
    );
    let ws = h.workspace.to_str().unwrap().to_owned();
    let mut child = h
        .cmd(&["new", "--detach", "--workspace", &ws, "use what setup made"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("setup: step") {
            seen.push((line, start.elapsed()));
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[2].1 - seen[0].1 >= Duration::from_millis(1500),
        "the lines came at once, not as the setup printed them: {seen:?}"
    );
    let evs = h.wait_events(&id, "the first turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let all = serde_json::to_string(&evs).unwrap();
    assert!(all.contains("setup: step 3") && all.contains("setup (.harvest/setup) finished"));
    let results = serde_json::to_string(&of_type(&evs, "tool_result")).unwrap();
    assert!(results.contains("dependencies"), "{}", summarize(&evs));
}

#[test]
fn a_failing_setup_says_its_exit_code_and_no_setup_skips_it() {
    let h = Harness::new(SCRIPT);
    with_setup(&h, "echo about to fail\nexit 3\n");
    std::fs::write(h.workspace.join("installed.txt"), "from before\n").unwrap();
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h.new_session("use what setup made");
    let evs = h.wait_events(&id, "the first turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let failed: Vec<_> = of_type(&evs, "error")
        .into_iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains("exit code 3"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", summarize(&evs));
    assert_eq!(
        of_type(&evs, "turn_result")[0]["is_error"],
        false,
        "the session went on"
    );

    let out = h.ok(&[
        "new",
        "--detach",
        "--no-setup",
        "--workspace",
        &ws,
        "use what setup made",
    ]);
    let evs = h.wait_events(out.trim(), "the first turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    assert!(
        !serde_json::to_string(&evs).unwrap().contains("setup:"),
        "--no-setup ran it"
    );
}
