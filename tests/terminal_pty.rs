//! The terminal client on a bare pseudo-terminal that never answers a query, as a plain
//! or slow terminal over SSH would: the first frame comes at once (no wait for the
//! keyboard-protocol query), and under `TERM=xterm` (16 colours) no 256-colour code is
//! written. The real `harvest` binary, daemon, claude CLI and bubblewrap.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, harvest_bin};
use serde_json::Value;
use std::path::Path;

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "A plain answer for the colour check."
"#;

fn attach_on_a_pty(h: &Harness, id: &str, term: &str) -> (Option<f64>, String) {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_run.py");
    let cmd = h.cmd(&[]);
    let envs: Vec<(String, String)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let mut run = std::process::Command::new("python3");
    run.env_clear();
    for (k, v) in envs {
        run.env(k, v);
    }
    run.env("TERM", term)
        .arg(helper)
        .arg("colour")
        .arg("4")
        .arg(harvest_bin())
        .arg("attach")
        .arg(id);
    let out = run.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["first"].as_f64(),
        v["output"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_terminal_that_never_answers_gets_its_first_frame_at_once_in_16_colours() {
    let h = Harness::new(SCRIPT);
    let id = h.new_session("say something plain");
    h.ok(&["wait", &id]);
    let (first, out) = attach_on_a_pty(&h, &id, "xterm");
    let first = first.unwrap_or_else(|| panic!("the answer never showed: {out:?}"));
    assert!(
        first < 1.5,
        "the first frame took {first:.2} s on a terminal that never answers"
    );
    assert!(!out.contains("38;5;"), "256-colour codes under TERM=xterm");
    assert!(
        out.contains("\x1b[0;1;94m") || out.contains("\x1b[0;94"),
        "no 16-colour code at all"
    );
    // The same client on a 256-colour terminal does use the palette: the check above
    // would see it.
    let (_, out256) = attach_on_a_pty(&h, &id, "xterm-256color");
    assert!(
        out256.contains("38;5;"),
        "no 256-colour code under xterm-256color"
    );
}
