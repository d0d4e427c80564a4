//! `sandbox-image/check.sh` as the attack: an image derived from the sandbox image with a
//! token planted in a file, or a credential in its environment, must fail the check,
//! saying where. (The real image passing it is part of `tests/setup-docker.sh`.)

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn check(image: &str) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-image/check.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(image)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Build `FROM harvest-sandbox:latest` plus `lines`, tagged `tag`.
fn derived(tag: &str, lines: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM harvest-sandbox:latest\n{lines}\n"),
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "--network", "none", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Untag a derived image, keeping its parent layers: the tests build in parallel from the
/// same cached `USER 0` layer, and pruning it under another build in flight fails that
/// build ("failed to get digest …", seen in CI).
fn remove(tag: &str) {
    let _ = Command::new("docker")
        .args(["rmi", "-f", "--no-prune", tag])
        .output();
}

#[test]
fn a_token_planted_in_a_file_fails_the_check_and_names_the_file() {
    let tag = "harvest-sandbox-test:planted-token";
    // Split so this source file holds no token shape itself.
    let token = format!(
        "ghp_{}",
        "A1b2C3d4E5".repeat(4).chars().take(36).collect::<String>()
    );
    derived(
        tag,
        &format!("USER 0\nRUN echo 'export GH={token}' > /etc/profile.d/forge.sh\nUSER 1000"),
    );
    let (ok, out) = check(tag);
    remove(tag);
    assert!(!ok, "a planted token passed the check:\n{out}");
    assert!(out.contains("/etc/profile.d/forge.sh"), "{out}");
}

#[test]
fn a_credential_in_the_environment_fails_the_check() {
    let tag = "harvest-sandbox-test:env-credential";
    derived(tag, "ENV GITHUB_TOKEN=not-a-real-one");
    let (ok, out) = check(tag);
    remove(tag);
    assert!(!ok, "a credential variable passed the check:\n{out}");
    assert!(out.contains("GITHUB_TOKEN"), "{out}");
}

#[test]
fn a_world_writable_file_fails_the_check() {
    let tag = "harvest-sandbox-test:world-writable";
    derived(
        tag,
        "USER 0\nRUN touch /etc/anyone-writes && chmod 0666 /etc/anyone-writes\nUSER 1000",
    );
    let (ok, out) = check(tag);
    remove(tag);
    assert!(!ok, "a world-writable file passed the check:\n{out}");
    assert!(out.contains("/etc/anyone-writes"), "{out}");
}

#[test]
fn the_built_image_passes_the_check() {
    let (ok, out) = check("harvest-sandbox:latest");
    assert!(ok, "{out}");
    assert!(out.contains("runs as uid 1000"), "{out}");
    assert!(out.contains("claude --version answers"), "{out}");
}
