//! The terminal client end to end, as a person uses it: the real `harvest` binary inside a
//! private tmux server, attached to a real session (real daemon, real claude CLI, real
//! bubblewrap, the scripted model). Keys go in with `send-keys`; the screen is read with
//! `capture-pane`.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, harvest_bin};
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
prompt = "fix the greeting"
[[turn.step]]
text = "Reading the greeting first."
tool_use = { name = "Read", input = { file_path = "{cwd}/greeting.txt" } }
[[turn.step]]
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat greeting.txt && echo ran-ok", description = "Show the file" } }
[[turn.step]]
text = "Fixed the greeting."

[[turn]]
prompt = "slow job"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(30)'  # tmux-slow MARKER", description = "Slow job" } }
[[turn.step]]
text = "slow done"

[[turn]]
[[turn.step]]
text = "Noted."
"#;

struct Tmux<'h> {
    server: String,
    h: &'h Harness,
}

impl<'h> Tmux<'h> {
    fn start(h: &'h Harness) -> Tmux<'h> {
        // One tmux server per test: the tests of this file run in parallel in one process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let server = format!("harvest-test-{}-{n}", std::process::id());
        let t = Tmux { server, h };
        t.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "120",
            "-y",
            "40",
        ]);
        // tmux keeps its own default prefix (C-b), as most users have it; harvest then
        // uses C-g. No delay after Esc.
        t.tmux(&["set", "-g", "escape-time", "0"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("tmux runs (bash tests/setup.sh installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell command line running harvest with this test's environment.
    fn harvest_line(&self, args: &str) -> String {
        let cmd = self.h.cmd(&[]);
        let env: Vec<String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?)))
            .collect();
        // `$TMUX` as tmux set it in the shell, as a user's would have it.
        format!(
            "env -i TMUX=\"$TMUX\" {} TERM=tmux-256color {} {args}",
            env.join(" "),
            harvest_bin().display()
        )
    }

    fn keys(&self, target: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", target];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn type_text(&self, target: &str, text: &str) {
        self.tmux(&["send-keys", "-t", target, "-l", text]);
    }

    fn screen(&self, target: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", target])
    }

    fn wait_for(&self, target: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen(target);
            if done(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "timed out waiting for {what}; the screen:\n{s}\n{}",
                    self.h.daemon_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux<'_> {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

#[test]
fn attach_work_detach_reattach_and_cancel_in_tmux() {
    let h = Harness::with_script_for(|root| SCRIPT.replace("MARKER", &root.display().to_string()));
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let t = Tmux::start(&h);
    let ws = h.workspace.display().to_string();

    // `harvest new` in a terminal creates the session and attaches to it.
    t.type_text(
        "main",
        &t.harvest_line(&format!("new --workspace {ws} 'fix the greeting'")),
    );
    t.keys("main", &["Enter"]);
    let s = t.wait_for("main", "the first turn with its Bash output", |s| {
        s.contains("turn done") && s.contains("ran-ok")
    });
    assert!(s.contains("▸ Bash") && s.contains("▸ Edit"), "{s}");

    // Open the Edit in place: its diff shows.
    t.keys("main", &["Tab"]);
    let mut shown = String::new();
    for _ in 0..10 {
        t.keys("main", &["k", "Space"]);
        std::thread::sleep(Duration::from_millis(150));
        shown = t.screen("main");
        if shown.contains("+hello world") {
            break;
        }
        t.keys("main", &["Space"]);
    }
    assert!(
        shown.contains("-helo world") && shown.contains("+hello world"),
        "{shown}"
    );

    // Back to the input box; start a slow turn, leave a draft, detach.
    t.keys("main", &["Tab", "Tab"]);
    t.type_text("main", "slow job");
    t.keys("main", &["Enter"]);
    let s = t.wait_for("main", "the slow command to run", |s| {
        s.contains("running") && s.contains("time.sleep(30)")
    });
    assert!(
        s.contains("$ python3 -c"),
        "the tool pane follows the new call: {s}"
    );
    t.type_text("main", "keep this draft");
    // Inside tmux the footer names the prefix that does not clash with tmux's.
    assert!(
        s.contains("C-g d detach"),
        "the footer should offer C-g d: {s}"
    );
    t.keys("main", &["C-g", "d"]);
    let s = t.wait_for("main", "the client to detach", |s| {
        s.contains("[detached from")
    });
    let id = s
        .split("[detached from ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned();

    // Detaching did not disturb the agent.
    let ls = h.ok(&["ls", "--json"]);
    assert!(ls.contains("\"state\":\"running\""), "{ls}");

    // Reattach from a second window: the whole history, the live turn, the draft.
    t.tmux(&["new-window", "-t", "main"]);
    t.type_text("main:1", &t.harvest_line(&format!("attach {id}")));
    t.keys("main:1", &["Enter"]);
    let s = t.wait_for("main:1", "the full history after reattaching", |s| {
        s.contains("fix the greeting") && s.contains("slow job") && s.contains("keep this draft")
    });
    assert!(s.contains("Fixed the greeting."), "{s}");

    // Esc cancels the running command; the session goes idle and the draft stays.
    t.keys("main:1", &["Escape"]);
    let s = t.wait_for("main:1", "the cancelled turn", |s| {
        s.contains("turn interrupted") && s.contains("idle")
    });
    assert!(
        s.contains("keep this draft"),
        "the draft survives a cancel: {s}"
    );
    let marker = format!("tmux-slow {}", h.dir.path().display());
    let sleeper = Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .unwrap();
    assert!(
        !sleeper.status.success(),
        "the cancelled command still runs"
    );
}

/// `harvest` with no arguments opens the session the user last sent to, not the oldest
/// live one; the input box edits like a shell (C-u kills the line) and Up recalls the
/// last prompt.
#[test]
fn bare_harvest_opens_the_last_session_sent_to_and_the_input_edits_like_a_shell() {
    let h = Harness::new(SCRIPT);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let first = h.ok(&["new", "--detach", "--workspace", &ws, "fix the greeting"]);
    let second = h.ok(&["new", "--detach", "--workspace", &ws, "slow job"]);
    let (first, second) = (first.trim().to_owned(), second.trim().to_owned());
    h.ok(&["cancel", &second]);
    h.ok(&["send", &first, "remember me"]);
    let t = Tmux::start(&h);
    t.type_text("main", &t.harvest_line(""));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the session last sent to", |s| {
        s.contains("remember me")
    });
    t.type_text("main", "some words to kill");
    t.wait_for("main", "the typed words", |s| {
        s.contains("some words to kill")
    });
    t.keys("main", &["C-u"]);
    t.wait_for("main", "C-u to kill the line", |s| {
        !s.contains("some words to kill") && s.contains("message…")
    });
    // Up, again if a loaded machine lost the key (seen once in CI, never reproduced):
    // a client that cannot recall fails all three.
    let recalled = |s: &str| {
        s.lines()
            .any(|l| l.contains("┃ remember me") || l.contains("┃remember me"))
    };
    for _ in 0..2 {
        t.keys("main", &["Up"]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) && !recalled(&t.screen("main")) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if recalled(&t.screen("main")) {
            return;
        }
    }
    t.keys("main", &["Up"]);
    t.wait_for("main", "the last prompt recalled", recalled);
}

/// A follow-up typed while a turn runs shows as queued above the input; Up on the empty
/// input takes it back to edit; Esc cancels the turn and brings what was queued back into
/// the input instead of starting it; Enter then sends it as a turn of its own.
#[test]
fn a_queued_follow_up_is_shown_edited_and_taken_back_by_esc() {
    let h = Harness::with_script_for(|root| SCRIPT.replace("MARKER", &root.display().to_string()));
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h.ok(&["new", "--detach", "--workspace", &ws, "slow job"]);
    let id = id.trim().to_owned();
    let t = Tmux::start(&h);
    t.type_text("main", &t.harvest_line(&format!("attach {id}")));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the slow command to run", |s| {
        s.contains("time.sleep(30)")
    });
    t.type_text("main", "then check the logs");
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the follow-up shown as queued", |s| {
        s.contains("queued › then check the logs")
    });
    // Up on the empty input takes it back to edit.
    t.keys("main", &["Up"]);
    t.wait_for("main", "the queued message back in the input", |s| {
        !s.contains("queued ›") && s.contains("┃then check the logs")
            || !s.contains("queued ›") && s.contains("┃ then check the logs")
    });
    t.type_text("main", " twice");
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the edited follow-up queued", |s| {
        s.contains("queued › then check the logs twice")
    });
    // Esc cancels the turn; the queued message comes back instead of starting a turn.
    t.keys("main", &["Escape"]);
    t.wait_for(
        "main",
        "the cancelled turn with the message back in the input",
        |s| {
            s.contains("turn interrupted")
                && !s.contains("queued ›")
                && s.contains("check the logs twice")
        },
    );
    let evs = h.events(&id);
    assert!(
        !evs.iter().any(|e| e["type"] == "user_message"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.contains("check the logs"))),
        "a withdrawn message was delivered: {}",
        harvest_e2e::summarize(&evs)
    );
    // Enter sends it now, as a turn of its own.
    t.keys("main", &["Enter"]);
    t.wait_for("main", "its answer", |s| s.contains("Noted."));
    assert!(
        h.requests()
            .iter()
            .any(|r| r.all_text().contains("then check the logs twice"))
    );
}

/// The review view, as a person reaches it: prefix v lists the changed files of a
/// `--repo` session and shows each one's diff; `a` brings them into the checkout it was
/// cloned from, and a second `a`, over the now changed files, writes nothing and says why.
#[test]
fn the_review_view_shows_the_changes_and_applies_them() {
    let h = Harness::new(SCRIPT);
    let repo = h.path("app");
    harvest_e2e::git::repo_with(&repo, &[("greeting.txt", "helo world\n")]);
    let out = h.ok(&[
        "run",
        "--json",
        "--repo",
        repo.to_str().unwrap(),
        "fix the greeting",
    ]);
    let id = harvest_e2e::parse_lines(&out)[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = Tmux::start(&h);
    t.type_text("main", &t.harvest_line(&format!("attach {id}")));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the session, its branch in the status line", |s| {
        s.contains("Fixed the greeting.") && s.contains(&format!("harvest/fix-the-greeting-{id}"))
    });
    t.keys("main", &["C-g", "v"]);
    let s = t.wait_for("main", "the review view", |s| {
        s.contains("Review") && s.contains("+hello world")
    });
    assert!(
        s.contains("greeting.txt") && s.contains("-helo world"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("greeting.txt")).unwrap(),
        "helo world\n"
    );
    t.keys("main", &["a"]);
    t.wait_for("main", "the apply", |s| s.contains("applied 1 file(s)"));
    assert_eq!(
        std::fs::read_to_string(repo.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    t.keys("main", &["a"]);
    t.wait_for("main", "the second apply", |s| {
        s.contains("already holds these changes")
    });
    assert_eq!(
        std::fs::read_to_string(repo.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
    // A repository cloned from a folder without a remote: `p` says so, not "no token".
    t.keys("main", &["p"]);
    t.wait_for("main", "why there is no pull request", |s| {
        s.contains("no `origin` remote")
    });
    t.keys("main", &["Escape"]);
    t.wait_for("main", "the conversation again", |s| {
        !s.contains("Review ·")
    });
}

/// From the review view, `p` opens the pull request with the client's token (the FAKE
/// forge: git http-backend and GitHub's pulls API); the status line then shows it.
#[test]
fn the_review_view_opens_a_pull_request() {
    use harvest_e2e::forge::{FakeForge, TOKEN};
    let forge = FakeForge::start(TOKEN);
    let url = forge.repo("org", "app", &[("greeting.txt", "helo world\n")]);
    let api = forge.api_url();
    let h = Harness::with_env(
        SCRIPT,
        &[("GH_TOKEN", TOKEN), ("GITHUB_API_URL", api.as_str())],
    );
    let out = h.ok(&["run", "--json", "--repo", &url, "fix the greeting"]);
    let id = harvest_e2e::parse_lines(&out)[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = Tmux::start(&h);
    t.type_text("main", &t.harvest_line(&format!("attach {id}")));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the session", |s| s.contains("Fixed the greeting."));
    t.keys("main", &["C-g", "v"]);
    t.wait_for("main", "the review view", |s| s.contains("+hello world"));
    t.keys("main", &["p"]);
    t.wait_for("main", "the pull request", |s| {
        s.contains("opened pull request #1")
    });
    let pulls = forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        pulls[0]["head"]["ref"],
        format!("harvest/fix-the-greeting-{id}")
    );
    t.keys("main", &["Escape"]);
    // The steps in the conversation; the branch and the pull request in the status line
    // (which cuts what does not fit).
    t.wait_for("main", "the pull request shown", |s| {
        s.contains("git push: harvest/fix-the-greeting")
            && s.contains("/org/app/pull/1")
            && s.lines()
                .next()
                .is_some_and(|l| l.contains(&format!("⎇ harvest/fix-the-greeting-{id} · http")))
    });
}

/// A session made from the TUI's new-session form asks Claude Code's question before a
/// project's `.mcp.json` servers start: trusted with `y`, its server starts; the answer
/// is remembered (shared with the command line), so the next session does not ask.
#[test]
fn the_new_session_form_asks_before_a_projects_mcp_servers_start() {
    let h = Harness::new(SCRIPT);
    std::fs::write(
        h.workspace.join("tiny_mcp.py"),
        include_str!("support/tiny_mcp.py"),
    )
    .unwrap();
    std::fs::write(
        h.workspace.join(".mcp.json"),
        r#"{"mcpServers": {"projdb": {"command": "python3", "args": ["tiny_mcp.py"]}}}"#,
    )
    .unwrap();
    let t = Tmux::start(&h);
    let ws = h.workspace.to_str().unwrap().to_owned();
    t.type_text("main", &format!("cd '{ws}' && {}", t.harvest_line("")));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the picker", |s| s.contains("n new"));
    t.keys("main", &["n"]);
    t.wait_for("main", "the form", |s| s.contains(&ws));
    t.type_text("main", "hello from the form");
    t.keys("main", &["Enter"]);
    let asked = t.wait_for("main", "the trust question", |s| {
        s.contains("Trust this project's MCP servers?")
    });
    assert!(
        asked.contains("projdb: python3 tiny_mcp.py"),
        "the question does not say what would start:\n{asked}"
    );
    t.keys("main", &["y"]);
    t.wait_for("main", "the new session", |s| {
        s.contains("hello from the form")
    });
    let listed = h.ok(&["ls", "--json"]);
    let first = harvest_e2e::parse_lines(&listed);
    let id = first
        .first()
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("the new session is not listed: {listed}"))
        .to_owned();
    let evs = h.wait_events(&id, "the agent's init", Duration::from_secs(60), |e| {
        !harvest_e2e::of_type(e, "agent_init").is_empty()
    });
    let init = harvest_e2e::of_type(&evs, "agent_init")[0]["raw"]["mcp_servers"].to_string();
    assert!(
        init.contains("projdb"),
        "the trusted server did not start: {init}"
    );
    // Remembered: the command line does not ask again (it is not a terminal here, so an
    // unknown file would start without its servers).
    let out = h.run(&["run", "--json", "--workspace", &ws, "hello again"]);
    let evs = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    let init = harvest_e2e::of_type(&evs, "agent_init")[0]["raw"]["mcp_servers"].to_string();
    assert!(
        init.contains("projdb"),
        "the trust was not remembered: {init}"
    );
}

/// A session whose first turn ended ("fix the greeting"), attached in a new tmux.
fn attached_after_its_first_turn(h: &Harness) -> (Tmux<'_>, String) {
    let ws = h.workspace.to_str().unwrap().to_owned();
    let id = h
        .ok(&["new", "--detach", "--workspace", &ws, "fix the greeting"])
        .trim()
        .to_owned();
    h.wait_events(&id, "the first turn", Duration::from_secs(60), |e| {
        !harvest_e2e::of_type(e, "turn_result").is_empty()
    });
    let t = Tmux::start(h);
    t.type_text("main", &t.harvest_line(&format!("attach {id}")));
    t.keys("main", &["Enter"]);
    t.wait_for("main", "the session", |s| s.contains("Fixed the greeting"));
    (t, id)
}

/// tmux's own paste (`paste-buffer -p`: bracketed, lines ended by CR) keeps its three
/// lines: shown collapsed in the input, sent whole as one message.
#[test]
fn a_tmux_paste_keeps_its_lines() {
    let h = Harness::new(SCRIPT);
    let (t, id) = attached_after_its_first_turn(&h);
    t.tmux(&["set-buffer", "-b", "p", "alpha line\rbeta line\rgamma line"]);
    t.tmux(&["paste-buffer", "-p", "-b", "p", "-t", "main"]);
    t.wait_for("main", "the collapsed paste", |s| {
        s.contains("[pasted 3 lines #1]")
    });
    t.keys("main", &["Enter"]);
    let evs = h.wait_events(&id, "the pasted message", Duration::from_secs(60), |e| {
        harvest_e2e::of_type(e, "user_message").len() >= 2
    });
    let sent = harvest_e2e::of_type(&evs, "user_message")[1]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent, "alpha line\nbeta line\ngamma line");
}

/// `y` inside tmux puts the selected block in tmux's own paste buffer, whatever tmux
/// passes through to the outer terminal, and says so truthfully.
#[test]
fn copy_inside_tmux_reaches_tmuxs_buffer() {
    let h = Harness::new(SCRIPT);
    let (t, _) = attached_after_its_first_turn(&h);
    t.keys("main", &["Tab", "g", "y"]);
    t.wait_for("main", "the copy's notice", |s| s.contains("paste buffer"));
    let buffer = t.tmux(&["show-buffer"]);
    assert!(buffer.contains("fix the greeting"), "{buffer:?}");
}

/// `prefix m` hands the mouse to the terminal (tmux then selects text itself) and takes it
/// back: what the pane asked of tmux shows in its mouse flag.
#[test]
fn the_mouse_can_be_handed_to_the_terminal_and_back() {
    let h = Harness::new(SCRIPT);
    let (t, _) = attached_after_its_first_turn(&h);
    let flag = |t: &Tmux| {
        t.tmux(&["display", "-p", "-t", "main", "#{mouse_any_flag}"])
            .trim()
            .to_owned()
    };
    assert_eq!(flag(&t), "1", "the client takes the mouse by default");
    t.keys("main", &["C-g", "m"]);
    t.wait_for("main", "the notice", |s| {
        s.contains("the mouse is the terminal's")
    });
    assert_eq!(flag(&t), "0", "the mouse was not handed back");
    t.keys("main", &["C-g", "m"]);
    t.wait_for("main", "the notice", |s| {
        s.contains("scrolls the panes again")
    });
    assert_eq!(flag(&t), "1");
}
