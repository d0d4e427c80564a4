//! The daemon's side: start a supervisor for one agent process, and talk to a running one
//! (found again after a restart through its record and socket).

use crate::{LaunchSpec, Record, Request, Response, SOCKET_FILE, SignalKind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// How long one control request may take. Writes are the slow ones: a large prompt into
/// an agent busy elsewhere; seconds at worst.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start the session supervisor {program}: {source}")]
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
    /// The supervisor ran but the jail did not start; carries what it said.
    #[error("{0}")]
    Launch(String),
    #[error("the session supervisor at {path} does not answer: {source}")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The supervisor answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// Start a supervisor (`program` with `args`, e.g. `harvest supervise`) and wait until
/// its jail runs. The supervisor is our child only until we die; it never dies with us.
pub async fn spawn(
    program: &Path,
    args: &[OsString],
    spec: &LaunchSpec,
) -> Result<Record, SupervisorError> {
    let start = |source| SupervisorError::Start {
        program: program.to_owned(),
        source,
    };
    let json = serde_json::to_vec(spec).map_err(|e| start(std::io::Error::other(e)))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.state_dir.join("supervisor.stderr"))
        .map_err(start)?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(stderr))
        .kill_on_drop(false)
        .spawn()
        .map_err(start)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).await.map_err(start)?;
        drop(stdin);
    }
    let Some(stdout) = child.stdout.take() else {
        return Err(SupervisorError::Launch(
            "the supervisor has no stdout".into(),
        ));
    };
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    // Reap it whenever it ends, so it never lingers as a zombie of ours.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    match read {
        Ok(Ok(n)) if n > 0 => {}
        _ => {
            return Err(SupervisorError::Launch(
                "the session supervisor ended before the jail started".into(),
            ));
        }
    }
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| SupervisorError::Launch(format!("supervisor said {line:?}: {e}")))?;
    if v["ok"] == true {
        serde_json::from_value(v["record"].clone())
            .map_err(|e| SupervisorError::Launch(format!("supervisor record: {e}")))
    } else {
        Err(SupervisorError::Launch(
            v["error"]
                .as_str()
                .unwrap_or("the jail did not start")
                .to_owned(),
        ))
    }
}

/// A handle on a running supervisor. Each call opens its own connection, so a handle is
/// cheap to clone and survives the supervisor's restarts of nothing: it simply fails once
/// the supervisor has gone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    socket: PathBuf,
}

impl Supervisor {
    pub fn at(state_dir: &Path) -> Supervisor {
        Supervisor {
            socket: state_dir.join(SOCKET_FILE),
        }
    }

    pub async fn write_line(&self, line: &str, id: Option<&str>) -> Result<(), SupervisorError> {
        self.call(&Request::Write {
            line: line.to_owned(),
            id: id.map(str::to_owned),
        })
        .await
        .map(|_| ())
    }

    pub async fn signal(&self, signal: SignalKind) -> Result<(), SupervisorError> {
        self.call(&Request::Signal { signal }).await.map(|_| ())
    }

    pub async fn kill(&self) -> Result<(), SupervisorError> {
        self.call(&Request::Kill).await.map(|_| ())
    }

    /// Whether the agent still runs; `false` also when the supervisor is gone.
    pub async fn running(&self) -> bool {
        matches!(
            self.call(&Request::Status).await,
            Ok(Response {
                running: Some(true),
                ..
            })
        )
    }

    /// One request, bounded in time: an agent that stops reading its input (a tool can
    /// SIGSTOP it) blocks a write in the supervisor, and the daemon's session must not
    /// wait with it; its kill, on another connection, still gets through.
    async fn call(&self, req: &Request) -> Result<Response, SupervisorError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_unbounded(req)).await {
            Ok(r) => r,
            Err(_) => Err(SupervisorError::Unreachable {
                path: self.socket.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s (is the agent stopped?)",
                        CALL_TIMEOUT.as_secs()
                    ),
                ),
            }),
        }
    }

    async fn call_unbounded(&self, req: &Request) -> Result<Response, SupervisorError> {
        let unreachable = |source| SupervisorError::Unreachable {
            path: self.socket.clone(),
            source,
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(unreachable)?;
        let (read, mut write) = stream.into_split();
        let mut line =
            serde_json::to_vec(req).map_err(|e| unreachable(std::io::Error::other(e)))?;
        line.push(b'\n');
        write.write_all(&line).await.map_err(unreachable)?;
        let mut answer = String::new();
        let n = tokio::io::BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(unreachable)?;
        if n == 0 {
            return Err(unreachable(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let r: Response =
            serde_json::from_str(&answer).map_err(|e| unreachable(std::io::Error::other(e)))?;
        if r.ok {
            Ok(r)
        } else {
            Err(SupervisorError::Refused(
                r.error.unwrap_or_else(|| "refused".into()),
            ))
        }
    }
}
