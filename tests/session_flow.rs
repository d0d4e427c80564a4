//! A session as a user runs it: the real daemon, the real claude CLI in real bubblewrap,
//! and the scripted model.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, parse_lines, summarize};
use serde_json::Value;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "fix the greeting"
[[turn.step]]
text = "Reading the greeting first."
tool_use = { name = "Read", input = { file_path = "{cwd}/greeting.txt" } }
[[turn.step]]
text = "There is a typo."
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat greeting.txt && echo ran-ok", description = "Show the file" } }
[[turn.step]]
text = "Fixed the greeting."

[[turn]]
prompt = "also update the docs"
[[turn.step]]
text = "Docs updated too."

[[turn]]
prompt = "edit where you were"
[[turn.step]]
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "hello world", new_string = "hello fork" } }
[[turn.step]]
text = "Edited in the fork."
"#;

#[test]
fn read_edit_and_bash_change_the_workspace_and_stream_every_step() {
    let h = Harness::new(SCRIPT);
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let ws = h.workspace.to_str().unwrap();

    let out = h.run(&["run", "--json", "--workspace", ws, "fix the greeting"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.daemon_log_tail()
    );
    let live = parse_lines(&stdout);

    // The workspace file really changed.
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    // Every event numbered from 1 without gaps, as a live subscriber saw them.
    let seqs: Vec<u64> = live.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{}",
        summarize(&live)
    );

    let calls: Vec<&str> = of_type(&live, "tool_call")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["Read", "Edit", "Bash"], "{}", summarize(&live));

    let results = of_type(&live, "tool_result");
    let patch = results
        .iter()
        .find(|r| r["output"]["kind"] == "patch")
        .unwrap_or_else(|| panic!("no patch result: {results:?}"));
    let hunk_lines: Vec<&str> = patch["output"]["hunks"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        hunk_lines.contains(&"-helo world") && hunk_lines.contains(&"+hello world"),
        "{hunk_lines:?}"
    );
    let bash = results
        .iter()
        .find(|r| r["output"]["kind"] == "bash")
        .expect("a bash result");
    assert!(
        bash["output"]["stdout"]
            .as_str()
            .unwrap()
            .contains("ran-ok"),
        "{bash}"
    );

    let turn = of_type(&live, "turn_result");
    assert_eq!(turn.len(), 1);
    assert_eq!(turn[0]["is_error"], false);
    assert!(turn[0]["cost_usd"].as_f64().unwrap() > 0.0, "{}", turn[0]);
    assert!(turn[0]["num_turns"].as_u64().unwrap() >= 4, "{}", turn[0]);
    assert!(
        live.iter().any(|e| e["type"] == "assistant_delta"),
        "live text deltas streamed"
    );
    // The raw agent line travels with the event.
    assert_eq!(turn[0]["raw"]["type"], "result");

    // `logs` replays exactly what the live subscriber saw.
    let id = live[0]["session"].as_str().unwrap().to_owned();
    let stored = h.events(&id);
    assert!(stored.len() >= live.len());
    assert_eq!(
        &stored[..live.len()],
        &live[..],
        "replay differs from the live stream"
    );

    // `run` stopped the agent when the turn ended; `harvest resume` starts it again
    // (`claude --resume`) in the same sandbox and workspace, and a follow-up continues the
    // conversation.
    h.ok(&["resume", &id]);
    let evs = h.events(&id);
    let last = evs.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["state"].as_str()),
        (Some("status"), Some("idle")),
        "{last}"
    );
    assert!(
        evs.iter()
            .any(|e| e["type"] == "sandbox"
                && e["message"].as_str().unwrap_or("").contains("resuming")),
        "{}",
        summarize(&evs)
    );
    h.ok(&["send", &id, "also update the docs"]);
    h.wait_events(
        &id,
        "the resumed turn to end",
        Duration::from_secs(60),
        |evs| of_type(evs, "turn_result").len() >= 2,
    );
    let resumed = h.last_request_for("also update the docs");
    assert!(
        resumed.all_text().contains("Fixed the greeting."),
        "the resumed agent lost the first turn: {}",
        resumed.all_text()
    );
}

#[test]
fn follow_up_continues_the_conversation_and_subscribers_agree() {
    let h = Harness::new(SCRIPT);
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let id = h.new_session("fix the greeting");
    h.wait_events(
        &id,
        "the first turn to end",
        Duration::from_secs(60),
        |evs| !of_type(evs, "turn_result").is_empty(),
    );

    // Old sessions stay recognisable: a name of one's own, the first prompt, the workspace.
    let renamed = h.ok(&["rename", &id, "greeting fix"]);
    assert!(renamed.contains("greeting fix"), "{renamed}");
    let listed = parse_lines(&h.ok(&["ls", "--json"]));
    assert_eq!(listed[0]["name"], "greeting fix");
    assert_eq!(listed[0]["first_prompt"], "fix the greeting");
    assert_eq!(
        listed[0]["workspace"],
        h.workspace.canonicalize().unwrap().to_str().unwrap()
    );
    let table = h.ok(&["ls"]);
    assert!(
        table.contains("greeting fix") && table.contains("› fix the greeting"),
        "{table}"
    );
    assert!(
        !h.run(&["rename", &id, "  "]).status.success(),
        "an empty name is refused"
    );

    // Two live subscribers attached while the follow-up runs.
    let follow = || {
        h.cmd(&["logs", "--json", "--follow", &id])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (follow(), follow());
    std::thread::sleep(Duration::from_millis(300));
    h.ok(&["send", &id, "also update the docs"]);
    let evs = h.wait_events(
        &id,
        "the follow-up turn to end",
        Duration::from_secs(60),
        |evs| {
            of_type(evs, "turn_result").len() >= 2
                && evs
                    .last()
                    .is_some_and(|e| e["type"] == "status" && e["state"] == "idle")
        },
    );
    let texts: Vec<&str> = of_type(&evs, "assistant_text")
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"Docs updated too."), "{texts:?}");

    // The model saw the first turn when it answered the second: one conversation.
    let second = h.last_request_for("also update the docs");
    let history = second.all_text();
    assert!(
        history.contains("fix the greeting") && history.contains("Fixed the greeting."),
        "the follow-up request lacks the first turn: {history}"
    );

    std::thread::sleep(Duration::from_millis(300));
    let collect = |mut child: std::process::Child| -> Vec<Value> {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        parse_lines(&String::from_utf8_lossy(&out.stdout))
    };
    let (seen_a, seen_b) = (collect(a), collect(b));
    assert_eq!(seen_a, seen_b, "two subscribers saw different streams");
    assert_eq!(
        seen_a,
        evs[..seen_a.len()].to_vec(),
        "a subscriber differs from the store"
    );
    assert!(
        seen_a.len() >= evs.len(),
        "subscribers missed events: {} < {}",
        seen_a.len(),
        evs.len()
    );
}

#[test]
fn repo_sessions_clone_a_fresh_workspace_and_rm_removes_everything() {
    let h = Harness::new(SCRIPT);
    // A local git repository stands in for a remote one (same `git clone` path).
    let repo = h.path("origin");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("greeting.txt"), "helo world\n").unwrap();
    for args in [
        vec!["init", "-q"],
        vec!["add", "."],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "init",
        ],
    ] {
        let st = std::process::Command::new("git")
            .args(&args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }
    let out = h.ok(&[
        "run",
        "--json",
        "--repo",
        repo.to_str().unwrap(),
        "fix the greeting",
    ]);
    let events = parse_lines(&out);
    let id = events[0]["session"].as_str().unwrap().to_owned();
    let clone = h.path(&format!("data/harvest/workspaces/{id}"));
    assert_eq!(
        std::fs::read_to_string(clone.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("greeting.txt")).unwrap(),
        "helo world\n",
        "the origin repository must not change"
    );

    h.ok(&["rm", &id]);
    assert!(!clone.exists(), "rm left the cloned workspace");
    assert!(!h.path(&format!("state/harvest/sessions/{id}")).exists());
    assert!(h.ok(&["ls", "--json"]).trim().is_empty());
    let out = h.run(&["logs", &id]);
    assert!(!out.status.success(), "a removed session has no logs");

    let bad = h.run(&["new", "--repo", "/nonexistent/repo.git", "x"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("git clone"), "{err}");
}

#[test]
fn an_overloaded_api_shows_as_retries_within_seconds_then_a_failed_turn() {
    let h = Harness::new(
        r#"
[[turn]]
[[turn.step]]
error = { status = 529, type = "overloaded_error", message = "Overloaded" }
"#,
    );
    h.write_config("[agent]\nmax_retries = 1\n");
    let ws = h.workspace.to_str().unwrap();
    let started = std::time::Instant::now();
    let out = h.run(&["run", "--json", "--workspace", ws, "hello"]);
    assert!(!out.status.success(), "a failed turn exits non-zero");
    let events = parse_lines(&String::from_utf8_lossy(&out.stdout));
    let retry = of_type(&events, "api_retry");
    assert!(
        !retry.is_empty(),
        "no api_retry event: {}",
        summarize(&events)
    );
    assert_eq!(retry[0]["http_status"], 529);
    assert_eq!(retry[0]["limit"], 1);
    let turn = of_type(&events, "turn_result");
    assert_eq!(turn[0]["is_error"], true);
    assert!(
        turn[0]["result"].as_str().unwrap().contains("529"),
        "{}",
        turn[0]
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_fork_copies_workspace_and_conversation_then_goes_its_own_way() {
    let h = Harness::new(SCRIPT);
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let id = h.new_session("fix the greeting");
    h.wait_events(&id, "the first turn", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });

    let forked = h.run(&["fork", &id]);
    assert!(forked.status.success(), "{forked:?}");
    let fork = String::from_utf8_lossy(&forked.stdout).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&forked.stderr).contains(&format!("harvest attach {fork}")),
        "fork says what it made and how to go there: {forked:?}"
    );
    let fork_ws = h.path(&format!("data/harvest/workspaces/{fork}"));
    assert_eq!(
        std::fs::read_to_string(fork_ws.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    let listed = h.ok(&["ls", "--json"]);
    assert!(listed.contains("(fork)"), "{listed}");
    // The fork shows the history it continues, and where it forked.
    let evs = h.events(&fork);
    assert!(
        of_type(&evs, "user_message")
            .iter()
            .any(|e| e["text"] == "fix the greeting"),
        "the fork's history is empty: {}",
        summarize(&evs)
    );
    assert!(
        serde_json::to_string(&evs)
            .unwrap()
            .contains("forked from session"),
        "{}",
        summarize(&evs)
    );
    let before = of_type(&evs, "turn_result").len();

    h.ok(&["send", &fork, "also update the docs"]);
    h.wait_events(
        &fork,
        "the fork's first turn",
        Duration::from_secs(60),
        |e| of_type(e, "turn_result").len() > before,
    );
    // The fork's agent started from the original conversation.
    let req = h.last_request_for("also update the docs");
    assert!(
        req.all_text().contains("Fixed the greeting."),
        "{}",
        req.all_text()
    );
    // The original went on without the fork's turn.
    assert_eq!(of_type(&h.events(&id), "turn_result").len(), 1);

    // The conversation's paths hold in the fork: an Edit of the file where the original
    // saw it changes the fork's copy, and only it.
    h.ok(&["send", &fork, "edit where you were"]);
    let evs = h.wait_events(&fork, "the fork's edit", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() > before + 1
    });
    let edit = of_type(&evs, "tool_result")
        .last()
        .cloned()
        .cloned()
        .unwrap();
    assert_eq!(edit["is_error"], false, "{}", summarize(&evs));
    assert_eq!(
        std::fs::read_to_string(fork_ws.join("greeting.txt")).unwrap(),
        "hello fork\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("greeting.txt")).unwrap(),
        "hello world\n",
        "the fork edited the original"
    );

    // Later the fork resumes its own conversation, not the original's.
    std::fs::write(fork_ws.join("only-in-fork.txt"), "x").unwrap();
    h.ok(&["stop", &fork]);
    h.ok(&["send", &fork, "also update the docs"]);
    h.wait_events(
        &fork,
        "the fork's resumed turn",
        Duration::from_secs(60),
        |e| of_type(e, "turn_result").len() > before + 2,
    );
    let resumed = h.last_request_for("also update the docs");
    assert!(
        resumed.all_text().contains("Docs updated too."),
        "the fork lost its own turn: {}",
        resumed.all_text()
    );
    assert!(
        !h.workspace.join("only-in-fork.txt").exists(),
        "the workspaces are separate"
    );
}

/// The README's first command: `harvest demo` runs the whole product offline (its own
/// scripted model, the real CLI, a real sandbox) and fixes the demo project.
#[test]
fn the_demo_runs_offline_and_fixes_its_project() {
    let h = Harness::new("");
    let out = h.run(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        h.daemon_log_tail()
    );
    assert!(stdout.contains("All tests pass now"), "{stdout}");
    assert!(stdout.contains("return a + b"), "{stdout}");
    assert!(
        stderr.contains("SCRIPTED MODEL"),
        "the demo must say it is scripted: {stderr}"
    );
}
