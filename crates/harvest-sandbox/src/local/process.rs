//! Starting the jailed agent so that it does not share the daemon's fate, and ending it.

use super::{LOG_FILE, STDERR_FILE, STDIN_FIFO, bwrap};
use crate::{AgentControl, AgentExit, AgentInput, AgentLog, AgentProcess, Result, SandboxError};
use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Host pids of a running jail.
#[derive(Debug, Clone, Copy)]
pub struct JailPids {
    /// The outer bwrap process (our child while the daemon that spawned it lives).
    pub bwrap: i32,
    /// PID 1 of the jail's PID namespace: killing it ends every process inside.
    pub init: i32,
    /// The init's start time (clock ticks since boot), to recognise it after a restart.
    pub init_start: u64,
}

impl JailPids {
    pub fn from_persisted(v: &serde_json::Value) -> Option<JailPids> {
        Some(JailPids {
            bwrap: i32::try_from(v["bwrap_pid"].as_i64()?).ok()?,
            init: i32::try_from(v["init_pid"].as_i64()?).ok()?,
            init_start: v["init_start"].as_u64()?,
        })
    }

    /// The jail's init still runs and is the same process (not a reused pid).
    pub fn same_jail_alive(&self) -> bool {
        alive(self.init) && start_time(self.init) == Some(self.init_start)
    }

    pub fn kill_all(&self) {
        // SIGKILL to a PID namespace's init makes the kernel kill the whole namespace.
        signal(self.init, libc::SIGKILL);
        signal(self.bwrap, libc::SIGKILL);
    }
}

pub struct Spawned {
    pub pids: JailPids,
    pub process: AgentProcess,
}

pub fn spawn(
    bwrap_bin: &Path,
    policy: &bwrap::JailPolicy,
    state_dir: &Path,
    cmd: &AgentCommand,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Spawned> {
    let fifo = state_dir.join(STDIN_FIFO);
    make_fifo(&fifo)?;
    // O_RDWR: the agent itself holds a writer on its stdin, so it never reads EOF, even
    // after the daemon (the other writer) dies. Linux never blocks on an O_RDWR FIFO open.
    let stdin = open(&fifo, std::fs::OpenOptions::new().read(true).write(true))?;
    let log_path = state_dir.join(LOG_FILE);
    let append = || {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true).mode(0o600);
        o
    };
    let stdout = open(&log_path, &append())?;
    let log_start = stdout.metadata().map(|m| m.len()).unwrap_or(0);
    let stderr = open(&state_dir.join(STDERR_FILE), &append())?;

    let mut command = tokio::process::Command::new(bwrap_bin);
    command
        .args(bwrap::bwrap_args(policy, &bwrap::host_system_entries()))
        .arg("--")
        .arg(Path::new(bwrap::AGENT_BIN_DIR).join("claude"))
        .args(&cmd.args)
        .env_clear()
        .envs(bwrap::base_env())
        .envs(&cmd.env)
        .envs(secrets.iter().map(|(k, v)| (k, v.expose())))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own process group: a Ctrl-C or hang-up aimed at the daemon's group does
        // not reach the agent. Dropping the handle does not kill it either.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command
        .spawn()
        .map_err(|e| SandboxError::Spawn(format!("{}: {e}", bwrap_bin.display())))?;
    let bwrap_pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| SandboxError::Spawn("bwrap exited at once".into()))?;
    let init = find_namespace_init(bwrap_pid)
        .ok_or_else(|| SandboxError::Spawn(stderr_tail(state_dir)))?;
    let pids = JailPids {
        bwrap: bwrap_pid,
        init,
        init_start: start_time(init).unwrap_or(0),
    };

    let (exit_tx, exited) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => AgentExit {
                code: status.code(),
                signal: status.signal(),
            },
            Err(_) => AgentExit {
                code: None,
                signal: None,
            },
        };
        let _ = exit_tx.send(exit);
    });

    let sender = open_input(&fifo)?;
    Ok(Spawned {
        pids,
        process: AgentProcess {
            input: Box::new(FifoInput { sender }),
            control: Box::new(LocalControl {
                pids,
                log_path,
                state_dir: state_dir.to_owned(),
            }),
            exited,
            log_start,
        },
    })
}

/// Reconnect to a jail that a previous daemon started: its stdin FIFO (which the agent
/// still holds open), its log, and an exit signal. Not our child any more, so its end is
/// noticed by watching the jail's init.
pub fn adopt(state_dir: &Path, pids: JailPids, log_start: u64) -> Result<AgentProcess> {
    let fifo = state_dir.join(STDIN_FIFO);
    let sender = open_input(&fifo)?;
    let (exit_tx, exited) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while pids.same_jail_alive() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = exit_tx.send(AgentExit {
            code: None,
            signal: None,
        });
    });
    Ok(AgentProcess {
        input: Box::new(FifoInput { sender }),
        control: Box::new(LocalControl {
            pids,
            log_path: state_dir.join(LOG_FILE),
            state_dir: state_dir.to_owned(),
        }),
        exited,
        log_start,
    })
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Our writer on the agent's stdin FIFO. Read-write, so opening never fails for want of a
/// reader; the agent holds its own end open anyway.
fn open_input(fifo: &Path) -> Result<tokio::net::unix::pipe::Sender> {
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(fifo)
        .map_err(|source| SandboxError::Io {
            path: fifo.to_owned(),
            source,
        })
}

struct FifoInput {
    sender: tokio::net::unix::pipe::Sender,
}

#[async_trait]
impl AgentInput for FifoInput {
    async fn write_line(&mut self, line: &str) -> Result<()> {
        self.sender
            .write_all(line.as_bytes())
            .await
            .map_err(|_| SandboxError::InputClosed)
    }
}

struct LocalControl {
    pids: JailPids,
    log_path: PathBuf,
    state_dir: PathBuf,
}

#[async_trait]
impl AgentControl for LocalControl {
    async fn interrupt(&self) -> Result<()> {
        for pid in children(self.pids.init) {
            signal(pid, libc::SIGINT);
        }
        Ok(())
    }

    async fn terminate(&self) -> Result<()> {
        // The CLI is the namespace init's child (the init is bwrap's reaper).
        for pid in children(self.pids.init) {
            signal(pid, libc::SIGTERM);
        }
        Ok(())
    }

    async fn kill_all(&self) -> Result<()> {
        self.pids.kill_all();
        Ok(())
    }

    fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>> {
        Ok(Box::new(super::FileLog::open(&self.log_path, offset)?))
    }

    fn diagnostics(&self) -> String {
        stderr_tail(&self.state_dir)
    }
}

fn make_fifo(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if path.exists() {
        return Ok(());
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Io {
        path: path.to_owned(),
        source: std::io::Error::other("path contains a NUL byte"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    if rc != 0 {
        return Err(SandboxError::Io {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn open(path: &Path, opts: &std::fs::OpenOptions) -> Result<std::fs::File> {
    opts.open(path).map_err(|source| SandboxError::Io {
        path: path.to_owned(),
        source,
    })
}

/// bwrap forks the namespace's init right after it starts; wait briefly for it.
fn find_namespace_init(bwrap_pid: i32) -> Option<i32> {
    for _ in 0..400 {
        if let Some(pid) = children(bwrap_pid).into_iter().next() {
            return Some(pid);
        }
        if !alive(bwrap_pid) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie still "exists" for kill(0); look at its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill(2) with a positive pid has no memory effects.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn stderr_tail(state_dir: &Path) -> String {
    let text = std::fs::read_to_string(state_dir.join(STDERR_FILE)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
    if tail.is_empty() {
        "nothing on stderr".to_owned()
    } else {
        format!("stderr: {tail}")
    }
}
