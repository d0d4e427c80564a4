//! Telling the user when something needs them: `harvest wait` and the notification hook.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, parse_lines};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "Thinking it over slowly, word by word, so that the turn takes a moment."
chunk_delay_ms = 100
"#;

#[test]
fn wait_blocks_until_the_turn_ends_and_the_hook_gets_the_event() {
    let h = Harness::new(SCRIPT);
    let log = h.path("hook.jsonl");
    let env_file = h.path("hook.env");
    h.write_config(&format!(
        "[notify]\nhook = \"env > '{}'; cat >> '{}'\"\n",
        env_file.display(),
        log.display()
    ));
    let id = h.new_session("take your time");

    let start = Instant::now();
    let out = h.run(&["wait", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() > Duration::from_millis(300),
        "wait returned before the turn ran"
    );
    let evs = h.events(&id);
    assert_eq!(
        of_type(&evs, "turn_result").len(),
        1,
        "wait returned before the turn ended"
    );
    // Already idle: returns at once.
    assert_eq!(h.run(&["wait", &id]).status.code(), Some(0));

    let start = Instant::now();
    let hooked = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break parse_lines(&text);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the hook never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hooked[0]["type"], "turn_result", "{hooked:?}");
    // The hook gets a small fixed environment: the session, never a client's credentials.
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains(&format!("HARVEST_SESSION={id}")), "{env}");
    assert!(
        !env.contains(harvest_e2e::TEST_KEY),
        "the hook got the key: {env}"
    );
    assert!(
        !env.contains("ANTHROPIC_"),
        "the hook got the client's variables: {env}"
    );
    assert_eq!(hooked[0]["session"], id.as_str());
    assert!(
        hooked[0]["name"]
            .as_str()
            .unwrap()
            .contains("take your time"),
        "{hooked:?}"
    );

    // A stopped session has ended: wait says so with exit 1.
    h.ok(&["stop", &id]);
    assert_eq!(h.run(&["wait", &id]).status.code(), Some(1));
}
