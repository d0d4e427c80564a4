//! The local sandbox really isolates: escapes tried from inside, with real bubblewrap.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::path::Path;
use std::time::Duration;

/// One Bash call that tries each escape and prints a marker for what happened.
fn probe_script(root: &Path) -> String {
    let r = root.display();
    let command = format!(
        "echo x > {r}/outside/escape 2>/dev/null && echo WROTE-OUTSIDE || echo no-write-outside; \
         touch /usr/harvest-probe 2>/dev/null && echo WROTE-USR || echo no-write-usr; \
         cat {r}/home/secret.txt 2>/dev/null || echo no-read-home; \
         cat {r}/other-ws/secret.txt 2>/dev/null || echo no-read-other; \
         ls {r}/data/harvest >/dev/null 2>&1 && echo SAW-HARVEST-DATA || echo no-harvest-data; \
         ls {r}/state/harvest >/dev/null 2>&1 && echo SAW-HARVEST-STATE || echo no-harvest-state; \
         echo procs=$(ls /proc | grep -c '^[0-9]'); \
         echo uid=$(id -u); \
         echo user=$(id -un) owner=$(stat -c %U .); \
         echo ok > ~/probe && echo home-writable; \
         echo ok > ./probe && echo workspace-writable"
    );
    format!(
        "[[turn]]\nprompt = \"probe\"\n[[turn.step]]\ntool_use = {{ name = \"Bash\", input = {{ command = '''{command}''', description = \"probe\" }} }}\n[[turn.step]]\ntext = \"done\"\n\n[[turn]]\nprompt = \"other\"\n[[turn.step]]\ntext = \"other session\"\n"
    )
}

#[test]
fn the_agent_cannot_reach_outside_its_workspace_and_home() {
    let h = Harness::with_script_for(probe_script);
    std::fs::write(h.path("home/secret.txt"), "REAL-HOME-SECRET").unwrap();
    std::fs::create_dir_all(h.path("other-ws")).unwrap();
    std::fs::write(h.path("other-ws/secret.txt"), "OTHER-SESSION-SECRET").unwrap();
    std::fs::create_dir_all(h.path("outside")).unwrap();

    // A real other session, whose workspace the probe tries to read.
    h.ok(&[
        "new",
        "--workspace",
        h.path("other-ws").to_str().unwrap(),
        "other",
    ]);
    let id = h.new_session("probe");
    let evs = h.wait_events(&id, "the probe to finish", Duration::from_secs(60), |evs| {
        !of_type(evs, "turn_result").is_empty()
    });
    let result = of_type(&evs, "tool_result")[0];
    let out = format!(
        "{}\n{}",
        result["content"].as_str().unwrap_or(""),
        result["output"]["stdout"].as_str().unwrap_or("")
    );
    for expected in [
        "no-write-outside",
        "no-write-usr",
        "no-read-home",
        "no-read-other",
        "no-harvest-data",
        "no-harvest-state",
        "uid=1000",
        // The agent by its own name, not whichever account of this machine has its uid.
        "user=agent owner=agent",
        "home-writable",
        "workspace-writable",
    ] {
        assert!(
            out.contains(expected),
            "expected {expected:?} in the probe output:\n{out}"
        );
    }
    for leaked in [
        "WROTE",
        "REAL-HOME-SECRET",
        "OTHER-SESSION-SECRET",
        "SAW-HARVEST",
    ] {
        assert!(
            !out.contains(leaked),
            "the sandbox leaked {leaked:?}:\n{out}"
        );
    }
    let procs: u32 = out
        .split("procs=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no process count in {out}"));
    assert!(
        procs < 10,
        "the agent sees {procs} processes: host processes are visible"
    );
    assert!(!h.path("outside/escape").exists());
    assert!(!Path::new("/usr/harvest-probe").exists());
    assert!(
        h.workspace.join("probe").exists(),
        "the workspace write did not reach the host folder"
    );
}

/// The attack: between two launches, a component of a session's workspace path is swapped
/// for a link to somewhere else (another session's agent can do it when folders nest).
/// The next launch must refuse, not bind the link's target into the jail.
#[test]
fn a_workspace_swapped_for_a_link_is_refused_at_the_next_launch() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &harvest_e2e::fake_agent())]);
    let id = h.new_session("emit 0 0");
    h.wait_events(&id, "the first turn", Duration::from_secs(30), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    h.ok(&["stop", &id]);
    let elsewhere = h.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("private.txt"), "not for this session").unwrap();
    std::fs::rename(&h.workspace, h.path("ws-moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &h.workspace).unwrap();

    let out = h.run(&["resume", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    let evs = h.events(&id);
    assert!(!out.status.success(), "resumed through the link: {err}");
    assert!(err.contains("replaced by a link"), "{err}");
    assert!(
        !evs.iter()
            .any(|e| e.to_string().contains("not for this session")),
        "the link's target reached the agent"
    );
}
