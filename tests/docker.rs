//! The docker provider's own errors and what only containers have, through the real
//! daemon and a real Docker engine (the shared behaviour is in tests/conformance.rs):
//! an engine that does not answer, an image that is not built, a port without a network,
//! and what a container session looks like in `harvest ls`.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type};
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "Hello from the container."
"#;

fn docker_harness(env: &[(&str, &str)]) -> Harness {
    let h = Harness::with_env(SCRIPT, env);
    h.write_config("[sandbox]\ndefault = \"docker\"\n");
    harvest_e2e::docker::prepare(&h);
    h
}

#[test]
fn an_engine_that_does_not_answer_is_said_with_how_to_start_one() {
    let h = docker_harness(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&["new", "--detach", "--workspace", ws, "hello"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no Docker engine answers"), "{err}");
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    assert!(
        err.contains("dockerd"),
        "the error says how to start one: {err}"
    );
    // Nothing half-made is left listed.
    assert!(!h.ok(&["ls", "--json"]).contains("\"state\":\"running\""));
}

#[test]
fn an_image_that_is_not_built_is_said_with_how_to_build_it() {
    let h = docker_harness(&[]);
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&[
        "new",
        "--detach",
        "--image",
        "harvest-sandbox:never-built",
        "--workspace",
        ws,
        "hello",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("harvest-sandbox:never-built"), "{err}");
    assert!(err.contains("sandbox-image/build.sh"), "{err}");
}

#[test]
fn a_port_without_a_network_is_refused_with_the_fix() {
    let h = docker_harness(&[]);
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&[
        "new",
        "--detach",
        "--network",
        "none",
        "--port",
        "3000",
        "--workspace",
        ws,
        "hello",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--port needs a network"), "{err}");
}

#[test]
fn ls_shows_the_container_and_rm_leaves_none() {
    let h = docker_harness(&[]);
    let id = h.new_session("hello");
    h.wait_events(&id, "the answer", Duration::from_secs(60), |e| {
        !of_type(e, "turn_result").is_empty()
    });
    let ls = h.ok(&["ls"]);
    let container = format!("harvest-{}-{id}", h.instance());
    assert!(ls.contains(&container), "{ls}");
    assert!(ls.contains("docker"), "{ls}");
    let json = h.ok(&["ls", "--json"]);
    assert!(
        json.contains(&format!("\"sandbox_name\":\"{container}\"")),
        "{json}"
    );
    h.ok(&["rm", &id]);
    let (containers, volumes) = harvest_e2e::docker::objects_of(&id);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
}
