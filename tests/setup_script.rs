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

const KEPT_SCRIPT: &str = r#"
[[turn]]
prompt = "use the kept setup"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat node_modules/dep/index.txt ~/.setup-home-marker; (echo x > /run/harvest-setup/ws/evil) 2>/dev/null && echo KEEP-WRITABLE || echo KEEP-READONLY", description = "Look" } }
[[turn.step]]
text = "Looked."
"#;

/// In containers a successful setup is kept by its script and lockfiles: the next session
/// of the repository starts from it (its workspace files and HOME) without running it,
/// cannot change what later sessions start from, and a changed lockfile runs it anew.
#[test]
fn a_containers_setup_is_kept_for_the_next_session_of_the_repository() {
    let h = Harness::new(KEPT_SCRIPT);
    h.write_config("[sandbox]\ndefault = \"docker\"\n");
    harvest_e2e::docker::prepare(&h);
    let repo = h.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    harvest_e2e::git::repo_with(
        &repo,
        &[
            (".gitignore", "node_modules/\n"),
            ("package-lock.json", "{\"v\": 1}\n"),
            (
                ".harvest/setup",
                "echo installing; sleep 1; mkdir -p node_modules/dep; \
                 echo dependencies > node_modules/dep/index.txt; \
                 echo home-kept > ~/.setup-home-marker; echo installed\n",
            ),
        ],
    );
    let repo_arg = repo.to_str().unwrap().to_owned();
    let session = |h: &Harness| {
        let out = h.run(&["run", "--json", "--repo", &repo_arg, "use the kept setup"]);
        let evs = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{}\n{}",
            summarize(&evs),
            h.daemon_log_tail()
        );
        evs
    };
    let said = |evs: &[serde_json::Value]| serde_json::to_string(evs).unwrap();
    let first = session(&h);
    assert!(
        said(&first).contains("setup: installing"),
        "{}",
        summarize(&first)
    );
    assert!(
        said(&first).contains("result was kept"),
        "{}",
        summarize(&first)
    );

    let second = session(&h);
    let text = said(&second);
    assert!(
        !text.contains("setup: installing"),
        "the setup ran again: {}",
        summarize(&second)
    );
    assert!(
        text.contains("starts from its kept result"),
        "{}",
        summarize(&second)
    );
    let results = serde_json::to_string(&of_type(&second, "tool_result")).unwrap();
    assert!(
        results.contains("dependencies") && results.contains("home-kept"),
        "the kept workspace files or HOME are missing: {results}"
    );
    assert!(
        results.contains("KEEP-READONLY"),
        "an agent could change the keep: {results}"
    );

    // A changed lockfile is another setup.
    std::fs::write(repo.join("package-lock.json"), "{\"v\": 2}\n").unwrap();
    harvest_e2e::git::git(&repo, &["commit", "-qam", "bump"]);
    let third = session(&h);
    assert!(
        said(&third).contains("setup: installing"),
        "{}",
        summarize(&third)
    );
}
