//! Branches and review with the local provider, end to end (the real daemon, claude CLI,
//! scripted model and git): a session on a local repository never touches the user's
//! checkout; `diff` shows exactly the agent's change; `apply` brings it in, and stops at a
//! conflict with the user's own change with nothing written; what the agent planted in
//! its repository runs nowhere but in its sandbox.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::git::{git, repo_with};
use harvest_e2e::{Harness, of_type, parse_lines, summarize};
use std::path::PathBuf;
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "fix the greeting"
[[turn.step]]
text = "Fixing it."
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "sleep 2; echo '*.log' > .gitignore; echo noise > build.log; echo new > notes.md; git status --short", description = "More work" } }
[[turn.step]]
text = "Fixed the greeting."

[[turn]]
prompt = "write latin1"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "printf 'caf\\351\\n' > latin1.txt && echo written", description = "Latin-1" } }
[[turn.step]]
text = "Written."

[[turn]]
prompt = "plant a link"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "ln -s /etc/passwd passwd-link && echo linked", description = "Link" } }
[[turn.step]]
text = "Linked."

[[turn]]
prompt = "plant a monitor"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "git config core.fsmonitor 'touch MARK; false'; git config core.pager 'touch MARK'; git config diff.noprefix true; echo changed >> greeting.txt; echo planted", description = "Plant" } }
[[turn.step]]
text = "Planted."

[[turn]]
prompt = "leave a swapper"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "echo 'reviewed change' >> greeting.txt; nohup sh -c 'sleep 3; echo UNREVIEWED-PAYLOAD > greeting.txt' >/dev/null 2>&1 & echo left", description = "Swapper" } }
[[turn.step]]
text = "Left it."
"#;

struct Repo {
    h: Harness,
    repo: PathBuf,
}

fn setup() -> Repo {
    let h = Harness::with_script_for(|root| {
        SCRIPT.replace("MARK", &root.join("outside/pwned").display().to_string())
    });
    std::fs::create_dir_all(h.path("outside")).unwrap();
    let repo = h.path("outside/app");
    repo_with(
        &repo,
        &[("greeting.txt", "helo world\n"), ("README.md", "app\n")],
    );
    Repo { h, repo }
}

fn session(r: &Repo, prompt: &str) -> (String, Vec<serde_json::Value>) {
    let repo = r.repo.to_str().unwrap();
    let out = r.h.ok(&["run", "--json", "--repo", repo, prompt]);
    let events = parse_lines(&out);
    (events[0]["session"].as_str().unwrap().to_owned(), events)
}

#[test]
fn a_local_repo_session_leaves_the_checkout_alone_until_apply() {
    let r = setup();
    let repo = r.repo.to_str().unwrap().to_owned();
    let head_before = git(&r.repo, &["rev-parse", "HEAD"]);
    let id =
        r.h.ok(&["new", "--detach", "--repo", &repo, "fix the greeting"]);
    let id = id.trim().to_owned();
    // While the agent works (its Bash sleeps), the user's checkout is as it was.
    r.h.wait_events(&id, "the edit", Duration::from_secs(60), |e| {
        !of_type(e, "tool_result").is_empty()
    });
    let untouched = |r: &Repo| {
        assert_eq!(
            std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
            "helo world\n"
        );
        assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
        assert_eq!(git(&r.repo, &["branch", "--show-current"]).trim(), "main");
        assert_eq!(git(&r.repo, &["branch", "--list"]).trim(), "* main");
        assert_eq!(git(&r.repo, &["rev-parse", "HEAD"]), head_before);
    };
    untouched(&r);
    let evs =
        r.h.wait_events(&id, "the turn", Duration::from_secs(60), |e| {
            !of_type(e, "turn_result").is_empty()
        });
    untouched(&r);
    let branch = format!("harvest/fix-the-greeting-{id}");
    assert!(
        of_type(&evs, "git_operation")
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains(&branch)),
        "{}",
        summarize(&evs)
    );
    let ls = r.h.ok(&["ls", "--json"]);
    assert!(ls.contains(&format!("\"branch\":\"{branch}\"")), "{ls}");

    // Exactly the agent's changes: the edit, the new files, not what is ignored.
    let patch = r.h.ok(&["diff", &id]);
    let files: Vec<&str> = patch
        .lines()
        .filter(|l| l.starts_with("diff --git"))
        .collect();
    assert_eq!(
        files,
        [
            "diff --git a/.gitignore b/.gitignore",
            "diff --git a/greeting.txt b/greeting.txt",
            "diff --git a/notes.md b/notes.md"
        ],
        "{patch}"
    );
    assert!(patch.contains("-helo world\n+hello world\n"), "{patch}");
    assert!(!patch.contains("build.log"), "{patch}");

    // A fork works on a branch of its own, and its diff still holds the original's work
    // (it is measured from the same base).
    let fork = r.h.ok(&["fork", &id]).trim().to_owned();
    let fork_branch = format!("harvest/fix-the-greeting-{fork}");
    let ls = r.h.ok(&["ls", "--json"]);
    assert!(
        ls.contains(&format!("\"branch\":\"{fork_branch}\"")),
        "{ls}"
    );
    let fork_patch = r.h.ok(&["diff", &fork]);
    assert!(
        fork_patch.contains("-helo world\n+hello world\n"),
        "{fork_patch}"
    );

    r.h.ok(&["apply", &id]);
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.repo.join("notes.md")).unwrap(),
        "new\n"
    );
    assert!(!r.repo.join("build.log").exists());
    // Still the user's branch and commit: the changes wait for them to commit.
    assert_eq!(git(&r.repo, &["branch", "--show-current"]).trim(), "main");
    assert_eq!(git(&r.repo, &["rev-parse", "HEAD"]), head_before);
    // A second apply says the changes are there already, and writes nothing.
    let again = r.h.ok(&["apply", &id]);
    assert!(again.contains("already holds"), "{again}");
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
}

#[test]
fn apply_reports_a_conflict_with_the_users_change_and_writes_nothing() {
    let r = setup();
    let (id, _) = session(&r, "fix the greeting");
    // The user changed the same line meanwhile, not committed.
    std::fs::write(r.repo.join("greeting.txt"), "howdy world\n").unwrap();
    let out = r.h.run(&["apply", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("greeting.txt") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "howdy world\n"
    );
    assert!(!r.repo.join("notes.md").exists(), "a partial apply");

    // Committed, it is a 3-way merge that marks the conflict in the file.
    git(&r.repo, &["commit", "-qam", "mine"]);
    let out = r.h.run(&["apply", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("greeting.txt") && stderr.contains("both sides"),
        "{stderr}"
    );
    let merged = std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap();
    assert!(
        merged.contains("<<<<<<<")
            && merged.contains("howdy world")
            && merged.contains("hello world"),
        "{merged}"
    );
}

/// The attack: the agent plants a link, and git config that runs commands wherever git
/// runs. `apply` refuses the link; `diff` and `apply` never run the agent's config on
/// this machine; the agent's `diff.noprefix` does not shift the paths.
/// The attack: a process the agent left running changes the workspace after the user
/// reviewed `harvest diff`. `apply --patch NAME` applies only what was reviewed: the
/// changed workspace is refused with nothing written.
#[test]
fn apply_takes_only_the_patch_that_was_reviewed() {
    let r = setup();
    let repo = r.repo.to_str().unwrap().to_owned();
    // Detached, so the agent (and what it left running) stays up after the turn.
    let id =
        r.h.ok(&["new", "--detach", "--repo", &repo, "leave a swapper"]);
    let id = id.trim().to_owned();
    r.h.ok(&["wait", &id]);
    let out = r.h.run(&["diff", &id]);
    let reviewed = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        reviewed.contains("+reviewed change"),
        "{reviewed}\n{err}\n{}",
        r.h.daemon_log_tail()
    );
    let name = err
        .split_whitespace()
        .skip_while(|w| *w != "patch")
        .nth(1)
        .unwrap_or_else(|| panic!("no patch name: {err}"))
        .trim_end_matches(':')
        .to_owned();
    // The swapper fires 3 s after the turn; wait until the sandbox's diff shows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !r.h.ok(&["diff", &id]).contains("UNREVIEWED-PAYLOAD") {
        assert!(
            std::time::Instant::now() < deadline,
            "the swapper never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = r.h.run(&["apply", &id, "--patch", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "applied an unreviewed patch");
    assert!(
        err.contains("nothing was written") && err.contains(&name),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "helo world\n"
    );
    // Reviewed again, it applies, and what lands is what was shown.
    let out = r.h.run(&["diff", &id]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let name = err
        .split_whitespace()
        .skip_while(|w| *w != "patch")
        .nth(1)
        .unwrap();
    let name = name.trim_end_matches(':').to_owned();
    r.h.ok(&["apply", &id, "--patch", &name]);
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "UNREVIEWED-PAYLOAD\n"
    );
}

#[test]
fn what_the_agent_plants_in_its_repository_never_runs_here() {
    let r = setup();
    let (id, _) = session(&r, "fix the greeting");
    r.h.ok(&["send", &id, "plant a link"]);
    r.h.wait_events(&id, "the link", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    let out = r.h.run(&["apply", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("symbolic link") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert!(std::fs::symlink_metadata(r.repo.join("passwd-link")).is_err());
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "helo world\n"
    );

    r.h.ok(&["send", &id, "plant a monitor"]);
    r.h.wait_events(&id, "the plant", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 3
    });
    let patch = r.h.ok(&["diff", &id]);
    assert!(
        patch.contains("diff --git a/greeting.txt b/greeting.txt"),
        "{patch}"
    );
    assert!(r.h.ok(&["diff", &id, "--stat"]).contains("greeting.txt"));
    let _ = r.h.run(&["apply", &id]);
    assert!(
        !r.h.path("outside/pwned").exists(),
        "the agent's git config ran a command on this machine"
    );
}

#[test]
fn a_workspace_session_has_nothing_to_apply_and_a_non_repo_nothing_to_diff() {
    let r = setup();
    let repo = r.repo.to_str().unwrap().to_owned();
    let out = r.h.ok(&[
        "run",
        "--json",
        "--repo",
        &repo,
        "--in-place",
        "fix the greeting",
    ]);
    let id = parse_lines(&out)[0]["session"].as_str().unwrap().to_owned();
    // In place: the agent's edit is in the user's folder itself, on their branch.
    assert_eq!(
        std::fs::read_to_string(r.repo.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    assert_eq!(git(&r.repo, &["branch", "--show-current"]).trim(), "main");
    assert!(r.h.ok(&["diff", &id]).contains("+hello world"));
    assert!(r.h.ok(&["apply", &id]).contains("there already"));

    let plain = r.h.path("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("greeting.txt"), "helo world\n").unwrap();
    let out = r.h.ok(&[
        "run",
        "--json",
        "--workspace",
        plain.to_str().unwrap(),
        "fix the greeting",
    ]);
    let id = parse_lines(&out)[0]["session"].as_str().unwrap().to_owned();
    let diff = r.h.run(&["diff", &id]);
    assert!(!diff.status.success());
    assert!(String::from_utf8_lossy(&diff.stderr).contains("not a git repository"));
}

/// A file that is not UTF-8 comes through byte for byte.
#[test]
fn a_file_that_is_not_utf8_is_applied_byte_for_byte() {
    let r = setup();
    let (id, _) = session(&r, "write latin1");
    r.h.ok(&["apply", &id]);
    assert_eq!(
        std::fs::read(r.repo.join("latin1.txt")).unwrap(),
        b"caf\xe9\n"
    );
}
