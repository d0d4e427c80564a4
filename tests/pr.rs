//! Pull requests end to end: the real daemon, claude CLI and scripted model, the local
//! provider, and the FAKE forge (tests/support/fake_forge.py: the real `git http-backend`
//! behind basic auth, and GitHub's pull-request API). Harvest commits in the sandbox,
//! pushes from this machine with the user's token and opens the pull request; the token
//! is never where the agent could see it.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::forge::{FakeForge, TOKEN};
use harvest_e2e::git::git;
use harvest_e2e::{Harness, of_type, parse_lines, summarize};
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "Fix the greeting"
[[turn.step]]
text = "Reading it."
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
text = "Fixed the greeting: helo is now hello."

[[turn]]
prompt = "look for tokens"
# The pattern matches the token but not itself: the transcript holding this command
# is searched too.
[[turn.step]]
tool_use = { name = "Bash", input = { command = "env | grep -c 'ghp_harvest[T]estToken' ; grep -rlE 'ghp_harvest[T]estToken' . ~ /tmp 2>/dev/null | wc -l; git config --list | grep -ci extraheader; echo looked", description = "Look" } }
[[turn.step]]
text = "Looked."
"#;

fn harness(forge: &FakeForge) -> Harness {
    let api = forge.api_url();
    Harness::with_env_for(
        |_| SCRIPT.to_owned(),
        &[("GH_TOKEN", TOKEN), ("GITHUB_API_URL", api.as_str())],
    )
}

fn clone_of(forge: &FakeForge, branch: &str) -> std::path::PathBuf {
    let dir = forge
        .root
        .path()
        .join(format!("check-{}", branch.replace('/', "-")));
    let bare = forge.bare("org", "app");
    git(
        forge.root.path(),
        &[
            "clone",
            "-q",
            "-b",
            branch,
            bare.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    dir
}

/// Tiny Backspace: a repo URL and a prompt in, a pull request out, every step streamed.
#[test]
fn run_pr_ends_with_a_pushed_branch_and_a_pull_request() {
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = harness(&forge);
    let out = h.ok(&["run", "--json", "--pr", "--repo", &url, "Fix the greeting"]);
    let lines = parse_lines(&out);
    let id = lines[0]["session"].as_str().unwrap().to_owned();
    let branch = format!("harvest/fix-the-greeting-{id}");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "pr", "{out}");
    assert_eq!(last["url"], format!("{}/org/app/pull/1", forge.url));

    // The branch is real: the agent's change, committed by Harvest on top of main.
    let checkout = clone_of(&forge, &branch);
    assert_eq!(
        std::fs::read_to_string(checkout.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    let main = git(&forge.bare("org", "app"), &["rev-parse", "main"]);
    assert_eq!(git(&checkout, &["rev-parse", "HEAD~1"]), main);
    let message = git(&checkout, &["log", "-1", "--format=%an <%ae>%n%B"]);
    assert!(
        message.starts_with("Harvest <harvest@localhost>\nFix the greeting\n"),
        "{message}"
    );
    assert!(
        message.contains("> Fix the greeting") && message.contains("Made by Harvest"),
        "{message}"
    );

    // The pull request: head, base, title and a body that tells the session.
    let pulls = forge.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    assert_eq!(pr["head"]["ref"], branch.as_str());
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(pr["title"], "Fix the greeting");
    let body = pr["body"].as_str().unwrap();
    for part in [
        "> Fix the greeting",
        "Fixed the greeting: helo is now hello.",
        "greeting.txt",
        "1 turn(s)",
        "Made by Harvest",
    ] {
        assert!(body.contains(part), "{part:?} not in {body}");
    }

    // Streamed: the git steps and the pull request are events; ls shows them.
    let events = h.events(&id);
    let ops: Vec<String> = of_type(&events, "git_operation")
        .iter()
        .map(|e| format!("{} {}", e["operation"].as_str().unwrap(), e["ok"]))
        .collect();
    assert_eq!(
        ops,
        ["clone true", "branch true", "commit true", "push true"],
        "{}",
        summarize(&events)
    );
    assert_eq!(of_type(&events, "pr_created")[0]["number"], 1);
    let ls = h.ok(&["ls"]);
    assert!(
        ls.contains(&branch) && ls.contains("/org/app/pull/1"),
        "{ls}"
    );

    // A second `harvest pr` finds the open one instead of failing.
    let again = h.ok(&["pr", &id]);
    assert!(
        again.contains("open already") && again.contains("/pull/1"),
        "{again}"
    );
    assert_eq!(forge.pulls().len(), 1);
}

/// The attack: an agent that prints its environment and searches its files after the
/// pull request was made sees no token, and none is in a file Harvest wrote.
#[test]
fn the_token_never_enters_the_sandbox_nor_a_file() {
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = harness(&forge);
    let out = h.ok(&["run", "--json", "--pr", "--repo", &url, "Fix the greeting"]);
    let id = parse_lines(&out)[0]["session"].as_str().unwrap().to_owned();
    h.ok(&["send", &id, "look for tokens"]);
    let events = h.wait_events(&id, "the look", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    let result = of_type(&events, "tool_result").last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        result.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "0", "looked"],
        "{result}"
    );
    // Nothing Harvest keeps holds it: store, logs, sessions' files, the agent's HOME.
    let found = std::process::Command::new("grep")
        .args(["-rl", "--binary-files=text", TOKEN])
        .arg(h.path(""))
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the token is in {}",
        String::from_utf8_lossy(&found.stdout)
    );
    // It went only where the protocol puts it: the API's and git's authorization headers.
    for r in forge.requests() {
        let mut r = r.clone();
        r["headers"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
        assert!(!r.to_string().contains(TOKEN), "{r}");
    }
}

/// A token the API refuses: a clear error after the push, the branch on the remote, and
/// `harvest pr` again once the token is fixed.
#[test]
fn a_rejected_token_leaves_the_branch_pushed_and_says_how_to_retry() {
    let forge = FakeForge::start("some-other-token");
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = harness(&forge);
    let out = h.ok(&["run", "--json", "--repo", &url, "Fix the greeting"]);
    let id = parse_lines(&out)[0]["session"].as_str().unwrap().to_owned();
    let branch = format!("harvest/fix-the-greeting-{id}");
    let failed = h.run(&["pr", &id, "--base", "main"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(
        stderr.contains(&format!("the branch {branch} is pushed")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("harvest pr {id}")), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    git(
        &forge.bare("org", "app"),
        &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
    );
    assert!(forge.pulls().is_empty());

    forge.accept_api_token(TOKEN);
    let opened = h.ok(&["pr", &id, "--draft", "--title", "Greeting fixed"]);
    assert!(opened.contains("opened pull request #1"), "{opened}");
    let pr = &forge.pulls()[0];
    assert_eq!(
        (pr["title"].as_str(), pr["draft"].as_bool()),
        (Some("Greeting fixed"), Some(true))
    );
}

#[test]
fn pr_without_a_token_or_a_branch_is_a_clear_error() {
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = Harness::with_script_for(|_| SCRIPT.to_owned());
    let out = h.run(&["run", "--pr", "--repo", &url, "Fix the greeting"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GH_TOKEN"));
    assert!(
        h.ok(&["ls", "--json"]).trim().is_empty(),
        "a session was made for nothing"
    );

    let h = harness(&forge);
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let id = h.new_session("Fix the greeting");
    let out = h.run(&["pr", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no branch of its own"));
}

/// A branch of that name on the remote with other commits is never overwritten.
#[test]
fn a_branch_that_exists_on_the_remote_is_not_overwritten() {
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = harness(&forge);
    let out = h.ok(&["run", "--json", "--repo", &url, "Fix the greeting"]);
    let id = parse_lines(&out)[0]["session"].as_str().unwrap().to_owned();
    let branch = format!("harvest/fix-the-greeting-{id}");
    // Someone pushed a branch of that name meanwhile.
    let bare = forge.bare("org", "app");
    let theirs = git(&bare, &["commit-tree", "-m", "theirs", "main^{tree}"]);
    git(
        &bare,
        &["update-ref", &format!("refs/heads/{branch}"), theirs.trim()],
    );
    let failed = h.run(&["pr", &id]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        stderr.contains(&format!("the branch {branch} already exists")),
        "{stderr}"
    );
    assert_eq!(git(&bare, &["rev-parse", &branch]).trim(), theirs.trim());
    assert!(forge.pulls().is_empty());
}

/// `[github] api_url` in the config serves where GITHUB_API_URL is not set (an Enterprise
/// server named once).
#[test]
fn the_config_names_the_api_when_the_environment_does_not() {
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let h = Harness::with_env_for(|_| SCRIPT.to_owned(), &[("GH_TOKEN", TOKEN)]);
    h.write_config(&format!("[github]\napi_url = \"{}\"\n", forge.api_url()));
    let out = h.ok(&["run", "--pr", "--repo", &url, "Fix the greeting"]);
    assert!(out.contains("opened pull request #1"), "{out}");
    assert_eq!(forge.pulls().len(), 1);
}
