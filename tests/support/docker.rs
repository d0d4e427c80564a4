//! What the docker provider's tests need of this machine: an engine that answers and the
//! sandbox image (`bash tests/setup-docker.sh` starts the one and builds the other).

use crate::Harness;

/// Make a harness's workspace usable by a container agent. Run as root (CI), the agent is
/// uid 1000, so the test's workspace is given to it, as a user would be told to.
pub fn prepare(h: &Harness) {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "harvest-sandbox:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the docker tests need a running Docker engine and the sandbox image: \
         `bash tests/setup-docker.sh` starts dockerd and runs sandbox-image/build.sh"
    );
    give_to_agent(&h.workspace);
}

/// The lines a `docker` command prints (none when it fails).
fn docker_lines(args: &[&str]) -> Vec<String> {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Give a folder to the container agent's uid when the tests run as root (as a user
/// would be told to).
pub fn give_to_agent(path: &std::path::Path) {
    // SAFETY: getuid(2) cannot fail.
    if unsafe { libc::getuid() } == 0 {
        let status = std::process::Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(status.success());
    }
}

/// The containers and volumes of a test's daemon, whatever its sessions left.
pub fn remove_leftovers(h: &Harness) {
    let label = format!("label=dev.harvest.instance={}", h.instance());
    let containers = docker_lines(&["ps", "-aq", "--filter", &label]);
    if !containers.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&containers)
            .output();
    }
    let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &label]);
    if !volumes.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&volumes)
            .output();
    }
}

/// The containers of a session (running or not), and its volumes.
pub fn objects_of(session: &str) -> (Vec<String>, Vec<String>) {
    let label = format!("label=dev.harvest.session={session}");
    (
        docker_lines(&["ps", "-aq", "--filter", &label]),
        docker_lines(&["volume", "ls", "-q", "--filter", &label]),
    )
}

/// A running container of this session.
pub fn running(session: &str) -> bool {
    std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=dev.harvest.session={session}"),
        ])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}
