//! Start the daemon when it is not running, as tmux does: a detached `harvest daemon
//! --foreground` in its own session, then wait until its socket answers.

use crate::{Client, ClientError};
use harvest_config::Paths;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a starting daemon gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect, starting the daemon with `harvest_exe` first if nothing answers.
pub async fn connect_or_start(
    paths: &Paths,
    harvest_exe: &Path,
    client_name: &str,
) -> Result<Client, ClientError> {
    match Client::connect(paths, client_name).await {
        Ok(c) => return Ok(c),
        Err(ClientError::Connect { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(paths.log_dir())
        .map_err(|e| {
            ClientError::Start(format!("cannot create {}: {e}", paths.log_dir().display()))
        })?;
    // The daemon's startup errors land here; private like every other log.
    let startup_log = paths.log_dir().join("daemon-start.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&startup_log)
        .map_err(|e| ClientError::Start(format!("cannot create {}: {e}", startup_log.display())))?;
    let mut cmd = std::process::Command::new(harvest_exe);
    // A clean environment: the daemon outlives this command and serves every later one,
    // so it must not carry this command's credentials (they travel per call, to the agent
    // that needs them) or anything else it does not use.
    cmd.env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(daemon_needs)));
    cmd.args(["daemon", "--foreground"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    // SAFETY: setsid(2) is async-signal-safe; it detaches the daemon from our terminal so
    // that closing it (an SSH drop) does not hang it up.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ClientError::Start(format!("cannot run {}: {e}", harvest_exe.display())))?;
    let started = Instant::now();
    let mut lost_the_race = false;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match Client::connect(paths, client_name).await {
            Ok(c) => {
                // The daemon lives on; reap it in the background if it ever exits while
                // we do, so it never lingers as a zombie of this client.
                std::thread::spawn(move || child.wait());
                return Ok(c);
            }
            Err(ClientError::Connect { .. }) => {}
            Err(e) => return Err(e),
        }
        if !lost_the_race && let Ok(Some(status)) = child.try_wait() {
            let why = std::fs::read_to_string(&startup_log).unwrap_or_default();
            // Another client won the race to start it (it holds the lock and is about to
            // answer): wait for that one, as for our own.
            if why.contains("already running") {
                lost_the_race = true;
                continue;
            }
            if let Ok(c) = Client::connect(paths, client_name).await {
                return Ok(c);
            }
            return Err(ClientError::Start(format!(
                "it exited with {status}: {}",
                why.trim()
            )));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(ClientError::Start(format!(
                "it did not answer on {} within {}s; see {}",
                paths.socket.display(),
                START_TIMEOUT.as_secs(),
                startup_log.display()
            )));
        }
    }
}

/// The variables an auto-started daemon keeps: where things are, how to log, locale and
/// time, the display a notification hook may use, network proxy settings for the model
/// proxy, and the Daytona provider's own settings (the daemon, not an agent, talks to
/// Daytona, and must reach its sandboxes again after a restart). Never an agent's
/// credentials.
fn daemon_needs(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "TZ",
        "TMPDIR",
        "TERM",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "DBUS_SESSION_BUS_ADDRESS",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "DOCKER_HOST",
        "NO_COLOR",
        "RUST_BACKTRACE",
        "DAYTONA_API_KEY",
        "DAYTONA_API_URL",
        "DAYTONA_TARGET",
        // Where the user's own Claude Code configuration is (their `claude` reads it).
        "CLAUDE_CONFIG_DIR",
    ];
    EXACT.contains(&name)
        || name.starts_with("LC_")
        || name.starts_with("XDG_")
        || (name.starts_with("HARVEST_") && !name.contains("TOKEN") && !name.contains("KEY"))
}

#[cfg(test)]
mod tests {
    use super::daemon_needs;

    #[test]
    fn credentials_stay_with_the_client() {
        for k in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "GH_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "HARVEST_API_KEY",
        ] {
            assert!(!daemon_needs(k), "{k} would reach the daemon");
        }
        for k in [
            "PATH",
            "HOME",
            "XDG_RUNTIME_DIR",
            "HARVEST_CLAUDE",
            "HARVEST_LOG",
            "LC_ALL",
        ] {
            assert!(daemon_needs(k), "{k} is needed");
        }
    }
}
