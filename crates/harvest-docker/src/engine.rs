//! The Docker engine: one connection per use, over `DOCKER_HOST` or the local socket, at
//! the API version the engine speaks; its failures said as what to do.

use bollard::Docker;
use harvest_sandbox::SandboxError;

/// Connect to the engine and agree on the API version (a Debian engine speaks an older
/// one than bollard's default).
pub async fn connect() -> Result<Docker, SandboxError> {
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&e.to_string()))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    docker
        .ping()
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    Ok(docker)
}

fn host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// No engine answers, or its socket is not ours to use.
pub fn unreachable(detail: &str) -> SandboxError {
    let fix = if detail.contains("ermission denied") {
        "the socket is not accessible to this user: add the user to the `docker` group (then log in again) or point DOCKER_HOST at an engine it may use"
    } else {
        "start it (as root: `dockerd &` or `systemctl start docker`; Debian/Ubuntu: `sudo apt-get install docker.io`), or point DOCKER_HOST at one"
    };
    SandboxError::Spawn(format!(
        "no Docker engine answers at {} ({detail}); {fix}",
        host()
    ))
}

/// Any other engine error, with what Harvest was doing.
pub fn failed(doing: &str, e: bollard::errors::Error) -> SandboxError {
    let text = e.to_string();
    if text.contains("no space left on device") {
        return SandboxError::Spawn(format!(
            "{doing}: the Docker engine's disk is full ({text}); free space (`docker system prune`) and try again"
        ));
    }
    SandboxError::Spawn(format!("{doing}: {text}"))
}

/// The engine says the thing asked for does not exist.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
