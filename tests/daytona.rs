//! The daytona provider end to end: the real daemon and `claude` CLI, the scripted model,
//! and the FAKE Daytona (crates/harvest-fake-daytona), whose sandboxes run in bubblewrap.
//! Each test starts its own fake and asserts what a user (or the service's bill) would
//! notice: files in the remote workspace, events without gaps or doubles, keys where
//! they belong, nothing left running.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::daytona::{FakeDaytona, KEY};
use harvest_e2e::{TEST_KEY, of_type, parse_lines, summarize};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(90);

const SCRIPT: &str = r#"
[[turn]]
prompt = "fix the greeting"
[[turn.step]]
text = "Reading the greeting first."
tool_use = { name = "Read", input = { file_path = "{cwd}/greeting.txt" } }
[[turn.step]]
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat greeting.txt && echo ran-ok; ls -a", description = "Show the file" } }
[[turn.step]]
text = "Fixed the greeting."

[[turn]]
prompt = "stream a story"
[[turn.step]]
text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four"
chunk_delay_ms = 120

[[turn]]
prompt = "run the short job"
[[turn.step]]
text = "Running the job."
tool_use = { name = "Bash", input = { command = "python3 -c 'import time; time.sleep(3)' && echo finished > marker.txt && echo job-done", description = "Short job" } }
[[turn.step]]
text = "The job is done."

[[turn]]
prompt = "show me your environment"
[[turn.step]]
tool_use = { name = "Bash", input = { command = '''env; echo env-probe-done''', description = "Print the environment" } }
[[turn.step]]
text = "That is all I can see."

[[turn]]
prompt = "change files"
[[turn.step]]
tool_use = { name = "Bash", input = { command = "echo agent-version > notes.txt && echo brand-new > added.txt && rm gone.txt && mkdir -p out && echo planted > out/evil.txt && echo changed", description = "Change files" } }
[[turn.step]]
text = "Changed them."

[[turn]]
prompt = "plant a repository"
[[turn.step]]
tool_use = { name = "Bash", input = { command = '''mkdir -p gen/objects/aa gen/refs/heads && echo 'ref: refs/heads/main' > gen/HEAD && printf '[core]\n\tworktree = .\n\tfsmonitor = "touch ROOT/PWNED-BY-FSMONITOR"\n' > gen/config && echo x > gen/objects/aa/keep && echo y > gen/refs/heads/keep && echo planted-repo''', description = "Plant" } }
[[turn.step]]
text = "Planted."

[[turn]]
prompt = "make a git folder"
[[turn.step]]
tool_use = { name = "Bash", input = { command = '''mkdir -p .git/hooks && printf '#!/bin/sh\ntouch ROOT/PWNED-BY-HOOK\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo agent-version > notes.txt && echo made''', description = "Git folder" } }
[[turn.step]]
text = "Made it."

[[turn]]
[[turn.step]]
text = "Still the same conversation."
"#;

fn idle_after(evs: &[Value], turns: usize) -> bool {
    of_type(evs, "turn_result").len() >= turns
        && evs
            .last()
            .is_some_and(|e| e["type"] == "status" && e["state"] == "idle")
}

fn assert_gapless(evs: &[Value]) {
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap or duplicate: {}",
        summarize(evs)
    );
}

fn tool_output(evs: &[Value]) -> String {
    of_type(evs, "tool_result")
        .iter()
        .map(|r| {
            format!(
                "{}\n{}",
                r["content"].as_str().unwrap_or(""),
                r["output"]["stdout"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn session_ids(h: &harvest_e2e::Harness) -> Vec<String> {
    let ls: Vec<Value> = parse_lines(&h.ok(&["ls", "--json"]));
    let list = match ls.first() {
        Some(Value::Array(a)) => a.clone(),
        _ => ls,
    };
    list.iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_folder_goes_up_the_agent_edits_it_remotely_and_every_step_streams() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    std::fs::write(h.workspace.join(".gitignore"), "ignored.env\n").unwrap();
    std::fs::write(h.workspace.join("ignored.env"), "NOT=uploaded\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", h.workspace.join("link")).unwrap();
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&["run", "--json", "--workspace", ws, "fix the greeting"]);
    let live = parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        summarize(&live),
        String::from_utf8_lossy(&out.stderr),
        h.daemon_log_tail()
    );
    assert_gapless(&live);
    let calls: Vec<&str> = of_type(&live, "tool_call")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["Read", "Edit", "Bash"], "{}", summarize(&live));
    assert!(
        tool_output(&live).contains("ran-ok"),
        "{}",
        summarize(&live)
    );
    let id = session_ids(&h).pop().expect("the session is listed");
    // The edit happened in the remote workspace; the user's folder is as it was.
    assert_eq!(
        fake.workspace_file(&id, "greeting.txt").as_deref(),
        Some("hello world\n")
    );
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("greeting.txt")).unwrap(),
        "helo world\n"
    );
    // What git would ignore, and links, stayed on this machine.
    assert_eq!(fake.workspace_file(&id, "ignored.env"), None);
    assert_eq!(fake.workspace_file(&id, "link"), None);
    assert_eq!(
        fake.workspace_file(&id, ".gitignore").as_deref(),
        Some("ignored.env\n")
    );
    // `harvest ls` names the remote sandbox.
    let sandbox = fake.sandbox_of(&id);
    let ls = h.ok(&["ls"]);
    assert!(
        ls.contains(&format!("{} (started)", sandbox["id"].as_str().unwrap())),
        "ls does not show the sandbox id and Daytona's state:\n{ls}"
    );
}

/// The logs WebSocket dropped mid-stream, then the daemon killed twice (while the model
/// streams and while a tool runs): the agent is found again by its labels and session,
/// the turns complete, and every event is there exactly once.
#[test]
fn dropped_streams_and_a_killed_daemon_lose_and_double_nothing() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    // The next two log connections break after 2 KB (no close frame).
    fake.fault(json!({"fault": "drop_ws", "count": 2, "after_bytes": 2048}));
    let id = h.new_session("stream a story");
    h.wait_events(&id, "text to start streaming", LONG, |e| {
        of_type(e, "assistant_delta").len() >= 2
    });
    h.kill_daemon();
    h.wait_events(&id, "the first turn", LONG, |e| idle_after(e, 1));
    h.ok(&["send", &id, "run the short job"]);
    h.wait_events(&id, "the tool to start", LONG, |e| {
        of_type(e, "tool_call").len() == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    h.kill_daemon();
    let evs = h.wait_events(&id, "the second turn", LONG, |e| idle_after(e, 2));
    assert_gapless(&evs);
    assert_eq!(
        fake.workspace_file(&id, "marker.txt").as_deref(),
        Some("finished\n")
    );
    assert!(tool_output(&evs).contains("job-done"));
    let texts: Vec<&str> = of_type(&evs, "assistant_text")
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts.len(),
        3,
        "each text exactly once: {}",
        summarize(&evs)
    );
    assert_eq!(of_type(&evs, "turn_result").len(), 2, "{}", summarize(&evs));
    assert!(
        !evs.iter().any(|e| e["type"] == "sandbox"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("restarted"))),
        "the agent was restarted instead of re-adopted: {}",
        summarize(&evs)
    );
    assert_eq!(fake.sandboxes().len(), 1, "one sandbox, never a second");
}

#[test]
fn a_missing_or_refused_key_is_reported_before_anything_is_created() {
    let fake = FakeDaytona::start(&[]);
    let mut h = fake.harness(|_| SCRIPT.to_owned());
    for (key, expect) in [
        (Some("dtn-wrong-key"), "refused the API key"),
        (None, "DAYTONA_API_KEY"),
    ] {
        h.extra_env.retain(|(k, _)| k != "DAYTONA_API_KEY");
        if let Some(k) = key {
            h.extra_env.push(("DAYTONA_API_KEY".into(), k.into()));
        }
        let _ = h.run(&["daemon", "stop"]);
        let ws = h.workspace.to_str().unwrap();
        let out = h.run(&["new", "--workspace", ws, "fix the greeting"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a session was made with key {key:?}");
        assert!(
            err.contains(expect),
            "key {key:?}: the error should say {expect:?}: {err}"
        );
    }
    assert!(fake.sandboxes().is_empty(), "{:?}", fake.sandboxes());
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r["method"] == "POST" && r["uri"] == "/api/sandbox"),
        "a create was sent"
    );
}

#[test]
fn rate_limits_and_server_errors_are_waited_out() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    fake.fault(
        json!({"fault": "rate_limit", "throttler": "sandbox-create", "count": 1, "retry_after": 1}),
    );
    fake.fault(json!({"fault": "server_error", "path": "/api/sandbox", "count": 2, "status": 503}));
    let t = Instant::now();
    let id = h.new_session("stream a story");
    h.wait_events(&id, "the first turn", LONG, |e| idle_after(e, 1));
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "the retry hint was not waited for"
    );
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["uri"] == "/api/sandbox")
        .count();
    assert_eq!(creates, 2, "one create refused with 429, then one made");
    assert_eq!(fake.sandboxes().len(), 1);
}

/// The Daytona key goes only in Authorization headers; the model key only in the agent's
/// input (its process environment): never in labels, the sandbox's env, the command text a
/// session listing shows, the sandbox's files, or anything Harvest writes.
#[test]
fn keys_stay_where_they_belong() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let id = h.new_session("show me your environment");
    let evs = h.wait_events(&id, "the probe", LONG, |e| idle_after(e, 1));
    assert!(
        tool_output(&evs).contains("env-probe-done"),
        "{}",
        summarize(&evs)
    );
    for r in fake.requests() {
        let headers = r["headers"].as_object().unwrap();
        for (name, value) in headers {
            if value.as_str().unwrap().contains(KEY) {
                assert_eq!(name, "authorization", "the Daytona key in header {name}");
            }
        }
        let body = r["body"].as_str().unwrap();
        assert!(!body.contains(KEY), "the Daytona key in a body: {r}");
        assert!(
            !r["uri"].as_str().unwrap().contains(TEST_KEY),
            "model key in a URL"
        );
        if body.contains(TEST_KEY) {
            assert!(
                r["method"] == "POST" && r["uri"].as_str().unwrap().ends_with("/input"),
                "the model key outside the agent's input: {r}"
            );
        }
    }
    let sandbox = fake.sandbox_of(&id);
    let sid = sandbox["id"].as_str().unwrap();
    for listing in [
        fake.get(&format!("/api/sandbox/{sid}")),
        fake.get("/api/sandbox"),
        fake.get(&format!("/toolbox/{sid}/process/session")),
    ] {
        assert!(
            !listing.contains(TEST_KEY),
            "the model key is listed: {listing}"
        );
    }
    // Nothing Harvest wrote holds either key (the event log redacts what the agent printed).
    for dir in ["data", "state", "config", "run"] {
        let out = std::process::Command::new("grep")
            .args(["-rlaF", "-e", KEY, "-e", TEST_KEY])
            .arg(h.path(dir))
            .output()
            .unwrap();
        let hits = String::from_utf8_lossy(&out.stdout);
        assert!(hits.trim().is_empty(), "a key was written to: {hits}");
    }
    // Nor do the sandbox's own files, but for the agent's transcripts: a remote agent's
    // process holds its model key (there is no proxy on this machine it could reach),
    // and the transcript records what its `env` printed.
    let out = std::process::Command::new("grep")
        .args(["-rlaF", "--exclude-dir=projects", "-e", KEY, "-e", TEST_KEY])
        .arg(sandbox["dir"].as_str().unwrap())
        .output()
        .unwrap();
    let hits = String::from_utf8_lossy(&out.stdout);
    assert!(
        hits.trim().is_empty(),
        "a key is in the sandbox's files: {hits}"
    );
}

#[test]
fn rm_deletes_the_remote_sandbox() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let id = h.new_session("stream a story");
    h.wait_events(&id, "the first turn", LONG, |e| idle_after(e, 1));
    assert_eq!(fake.sandboxes().len(), 1);
    h.ok(&["rm", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.sandboxes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fake.sandboxes().is_empty(),
        "left behind: {:?}",
        fake.sandboxes()
    );
    let ls = h.ok(&["ls", "--json"]);
    assert!(!ls.contains(&id), "{ls}");
}

/// An idle sandbox stops after its auto-stop interval (a "minute" is 1 s here); the next
/// message starts it again and the conversation resumes, since HOME lives in the sandbox.
#[test]
fn an_idle_sandbox_stops_and_the_next_message_starts_it_again() {
    let fake = FakeDaytona::start(&["--minute-ms", "1500"]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    // A turn streams for about 3 s, longer than the interval: its keep-alive calls (every
    // 0.5 s) must keep the sandbox up until the turn ends.
    h.write_config(
        "[sandbox]\ndefault = \"daytona\"\n[daytona]\nauto_stop_minutes = 1\nkeepalive_ms = 500\n",
    );
    let id = h.new_session("stream a story");
    h.wait_events(&id, "the first turn", LONG, |e| idle_after(e, 1));
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.sandbox_of(&id)["state"] != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let recent: Vec<String> = fake
        .requests()
        .iter()
        .rev()
        .take(8)
        .map(|r| format!("{} {}", r["method"], r["uri"]))
        .collect();
    assert_eq!(
        fake.sandbox_of(&id)["state"],
        "stopped",
        "never auto-stopped; the last requests: {recent:#?}"
    );
    let evs = h.wait_events(&id, "the stop to be reported", LONG, |e| {
        e.last()
            .is_some_and(|e| e["type"] == "status" && e["state"] == "exited")
    });
    assert!(
        !evs.iter().any(|e| e["type"] == "error"),
        "an idle stop is not a failure: {}",
        summarize(&evs)
    );
    // `ls` has it from Daytona itself.
    let ls = h.ok(&["ls"]);
    assert!(ls.contains("(stopped)"), "{ls}");
    h.ok(&["send", &id, "what came before?"]);
    h.wait_events(&id, "the resumed turn", LONG, |e| idle_after(e, 2));
    assert_eq!(fake.sandbox_of(&id)["state"], "started");
    let history = h.last_request_for("what came before?").all_text();
    assert!(
        history.contains("stream a story"),
        "the resumed agent lost the conversation: {history}"
    );
}

/// Egress is Daytona's to enforce: `--network none` asks for an allow list holding only
/// the model's host, `--network allow=…` for those hosts and the model's; an open network
/// asks for no list.
#[test]
fn network_choices_become_the_sandboxes_egress_settings() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let ws = h.workspace.to_str().unwrap().to_owned();
    for (network, want) in [
        ("none", Some("127.0.0.1")),
        (
            "allow=pypi.org,*.github.com",
            Some("pypi.org,*.github.com,127.0.0.1"),
        ),
        ("open", None),
    ] {
        let id = h.ok(&[
            "new",
            "--detach",
            "--network",
            network,
            "--workspace",
            &ws,
            "stream a story",
        ]);
        let s = fake.sandbox_of(id.trim());
        assert_eq!(
            s["domainAllowList"].as_str(),
            want,
            "--network {network}: {s}"
        );
        assert_eq!(
            s["networkBlockAll"], false,
            "the model must stay reachable: {s}"
        );
        h.ok(&["rm", id.trim()]);
    }
}

/// `pull` brings the agent's edits, additions and deletions into the folder they were
/// uploaded from; a file changed here since the upload stops it with nothing written; a
/// link here is never written through (the attack: the agent makes `out/evil.txt` where
/// the user's `out` is a link to a folder outside); `--patch` writes what applies.
#[test]
fn pull_brings_changes_back_and_never_overwrites_or_follows_a_link() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let w = &h.workspace;
    std::fs::write(w.join("notes.txt"), "user-version\n").unwrap();
    std::fs::write(w.join("gone.txt"), "to be deleted\n").unwrap();
    std::fs::write(w.join("keep.txt"), "untouched\n").unwrap();
    let id = h.new_session("change files");
    h.wait_events(&id, "the changes", LONG, |e| idle_after(e, 1));

    // A local edit since the upload: refused, nothing written.
    std::fs::write(w.join("notes.txt"), "edited-here\n").unwrap();
    let out = h.run(&["pull", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a pull overwrote a local edit");
    assert!(
        err.contains("notes.txt") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "edited-here\n"
    );
    assert!(!w.join("added.txt").exists() && w.join("gone.txt").exists());

    // A link where the agent wrote a folder: refused, the outside untouched.
    std::fs::write(w.join("notes.txt"), "user-version\n").unwrap();
    let outside = h.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, w.join("out")).unwrap();
    let out = h.run(&["pull", &id]);
    assert!(!out.status.success(), "a pull wrote through a link");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !outside.join("evil.txt").exists(),
        "written outside the workspace"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "user-version\n",
        "a refused pull wrote part of the changes"
    );

    // As a patch: what `git apply` takes.
    std::fs::remove_file(w.join("out")).unwrap();
    let patch = h.path("agent.patch");
    h.ok(&["pull", &id, "--patch", patch.to_str().unwrap()]);
    let text = std::fs::read_to_string(&patch).unwrap();
    assert!(
        text.contains("+agent-version") && text.contains("-user-version"),
        "{text}"
    );
    assert!(
        text.contains("added.txt") && text.contains("gone.txt"),
        "{text}"
    );

    // Into the folder.
    let pulled = h.ok(&["pull", &id]);
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "agent-version\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("added.txt")).unwrap(),
        "brand-new\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("out/evil.txt")).unwrap(),
        "planted\n"
    );
    assert!(!w.join("gone.txt").exists(), "{pulled}");
    assert_eq!(
        std::fs::read_to_string(w.join("keep.txt")).unwrap(),
        "untouched\n"
    );
    assert!(
        pulled.contains("notes.txt") && !pulled.contains("keep.txt"),
        "{pulled}"
    );
}

/// The attack: the agent leaves a folder shaped as a git repository (`core.fsmonitor` set
/// to its command) for `harvest pull` to bring here, where the user's next `git status`
/// would run it; or makes a `.git` of its own in the workspace. The first is refused
/// with nothing written; the second neither stops the pull nor comes along.
#[test]
fn a_pull_never_plants_a_repository_and_an_agent_git_folder_stays_behind() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|root| SCRIPT.replace("ROOT", &root.display().to_string()));
    let w = &h.workspace;
    std::fs::write(w.join("notes.txt"), "user-version\n").unwrap();
    let id = h.new_session("plant a repository");
    h.wait_events(&id, "the plant", LONG, |e| idle_after(e, 1));
    for args in [
        vec!["pull", id.as_str()],
        vec!["pull", id.as_str(), "--patch", "/dev/null"],
    ] {
        let out = h.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} took a planted repository");
        assert!(
            err.contains("git repository") && err.contains("nothing was pulled"),
            "{err}"
        );
    }
    assert!(
        !w.join("gen").exists(),
        "a refused pull wrote the planted repository"
    );

    let id = h.new_session("make a git folder");
    h.wait_events(&id, "the git folder", LONG, |e| idle_after(e, 1));
    let pulled = h.ok(&["pull", &id]);
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "agent-version\n",
        "{pulled}"
    );
    assert!(
        !w.join(".git").exists(),
        "the agent's .git came along: {pulled}"
    );
    let root = w.parent().unwrap();
    assert!(!root.join("PWNED-BY-HOOK").exists() && !root.join("PWNED-BY-FSMONITOR").exists());
}

/// The service out of reach for 6 s in the middle of a streaming turn (every call 503, the
/// log WebSocket cut): the session waits it out with backoff, says it is reconnecting,
/// and the turn completes with every event exactly once.
#[test]
fn an_outage_mid_turn_is_waited_out_and_loses_nothing() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let id = h.new_session("stream a story");
    h.wait_events(&id, "text to start streaming", LONG, |e| {
        of_type(e, "assistant_delta").len() >= 2
    });
    fake.fault(json!({"fault": "outage", "ms": 6000}));
    let evs = h.wait_events(&id, "the turn", LONG, |e| idle_after(e, 1));
    assert_gapless(&evs);
    assert_eq!(
        of_type(&evs, "assistant_text").len(),
        1,
        "{}",
        summarize(&evs)
    );
    let notices: Vec<&str> = of_type(&evs, "sandbox")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        notices.iter().any(|m| m.starts_with("reconnecting")),
        "the outage was not shown: {notices:?}"
    );
    assert!(
        notices.iter().any(|m| m.starts_with("reconnected")),
        "{notices:?}"
    );
    assert_eq!(h.events(&id).last().unwrap()["state"], "idle");
}

/// `--repo URL`: the sandbox clones it through the git endpoint; the agent's work is
/// there, not on this machine, and comes back as a patch against the clone.
#[test]
fn a_repo_is_cloned_inside_the_sandbox_and_its_changes_come_back_as_a_patch() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| SCRIPT.to_owned());
    let git =
        harvest_e2e::git::GitServer::start(&h.path("git"), &[("greeting.txt", "helo world\n")]);
    let out = h.ok(&["run", "--json", "--repo", &git.url, "fix the greeting"]);
    let events = parse_lines(&out);
    let id = events[0]["session"].as_str().unwrap().to_owned();
    assert_eq!(
        fake.workspace_file(&id, "greeting.txt").as_deref(),
        Some("hello world\n")
    );
    let clones = fake
        .requests()
        .iter()
        .filter(|r| r["uri"].as_str().unwrap().ends_with("/git/clone"))
        .count();
    assert_eq!(clones, 1, "cloned through the toolbox's git endpoint");
    let no_folder = h.run(&["pull", &id]);
    assert!(!no_folder.status.success());
    assert!(String::from_utf8_lossy(&no_folder.stderr).contains("--patch"));
    let patch = h.path("fix.patch");
    h.ok(&["pull", &id, "--patch", patch.to_str().unwrap()]);
    let text = std::fs::read_to_string(&patch).unwrap();
    assert!(
        text.contains("-helo world") && text.contains("+hello world"),
        "{text}"
    );
    assert!(!text.contains(".git/"), "{text}");
    // It applies to the repository as the user has it.
    let work = h.path("git").join("origin-work");
    let applied = std::process::Command::new("git")
        .args(["apply", "-p1"])
        .arg(&patch)
        .current_dir(&work)
        .status()
        .unwrap();
    assert!(applied.success());
    assert_eq!(
        std::fs::read_to_string(work.join("greeting.txt")).unwrap(),
        "hello world\n"
    );
}

/// A large tree goes up in batches, and the user waiting on `harvest new` is told how far
/// it is as it goes (not only the daemon's log).
#[test]
fn a_large_upload_reports_its_progress_to_the_waiting_client() {
    let fake = FakeDaytona::shared();
    let h = fake.harness(|_| SCRIPT.to_owned());
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
    let many = h.workspace.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..1100 {
        std::fs::write(many.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let ws = h.workspace.to_str().unwrap().to_owned();
    let out = h.run(&["new", "--detach", "--workspace", &ws, "fix the greeting"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("uploading the workspace: 500 of 1101 files"),
        "{stderr}"
    );
    assert!(
        stderr.contains("uploading the workspace: 1000 of 1101 files"),
        "{stderr}"
    );
    assert!(
        stderr.contains("uploaded the workspace: 1101 files"),
        "{stderr}"
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        fake.workspace_file(&id, "many/f1099.txt").as_deref(),
        Some("file 1099\n")
    );
    h.ok(&["rm", &id]);
}

/// The user's own Claude Code configuration reaches a remote sandbox too: their memory
/// and a command are in the remote HOME (copies: a remote sandbox cannot bind this
/// machine's files), and a remote MCP server that needs a credential is left out and
/// said so, as no relay keeps its credential outside a remote sandbox yet.
#[test]
fn your_configuration_goes_into_the_remote_home() {
    let fake = FakeDaytona::start(&[]);
    let h = fake.harness(|_| {
        "[[turn]]\nprompt = \"SHIP-COMMAND-EXPANDED\"\n[[turn.step]]\ntext = \"Shipping.\"\n"
            .to_owned()
    });
    let claude = h.path("home/.claude");
    std::fs::create_dir_all(claude.join("commands")).unwrap();
    std::fs::write(claude.join("CLAUDE.md"), "REMOTE-MEMORY-MARKER-7\n").unwrap();
    std::fs::write(
        claude.join("commands/ship.md"),
        "---\ndescription: Ship it\n---\nSHIP-COMMAND-EXPANDED $ARGUMENTS\n",
    )
    .unwrap();
    std::fs::write(
        h.path("home/.claude.json"),
        json!({"mcpServers": {"remote": {"type": "http", "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer sk-remote-mcp-LEAK"}}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(h.workspace.join("a.txt"), "a\n").unwrap();
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&["run", "--json", "--workspace", ws, "/ship now"]);
    let live = parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}\n{}",
        summarize(&live),
        h.daemon_log_tail()
    );
    let req = h.last_request_for("SHIP-COMMAND-EXPANDED");
    assert!(
        req.all_text().contains("REMOTE-MEMORY-MARKER-7"),
        "the memory did not reach the model"
    );
    let said = serde_json::to_string(&live).unwrap();
    assert!(
        said.contains("MCP server remote was left out") && said.contains("remote sandbox"),
        "{}",
        summarize(&live)
    );
    assert!(!said.contains("sk-remote-mcp-LEAK"));
}
