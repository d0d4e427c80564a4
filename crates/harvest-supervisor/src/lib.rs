//! The per-session supervisor, in the shape of conmon and containerd's shims.
//!
//! One small process per agent process sits *outside* the sandbox, between the jail and
//! the daemon. It starts the jail (bubblewrap), holds the agent's stdin, stdout and stderr
//! as Unix socket pairs, writes stdout to the durable log itself, records the exit status
//! on disk, and serves input and control requests over a socket in the session's state
//! folder. Why each of those:
//!
//! - **Sockets, not pipes or FIFOs.** Inside the jail the agent runs with the CLI's uid
//!   and can open `/proc/<cli>/fd/0` and `/fd/1`. A FIFO or pipe reopens that way, so a
//!   prompt-injected tool could write the CLI's stdin (answer its own permission prompts)
//!   or its stdout (forge a `result`). A socket cannot be reopened through /proc (ENXIO).
//! - **The log is written by the supervisor**, in a folder the jail cannot see, so nothing
//!   inside can rewrite history, and every line is bounded ([`MAX_LINE`]): an endless line
//!   becomes one marker line instead of gigabytes in the daemon.
//! - **It outlives the daemon** (its own session, not the daemon's child once the daemon
//!   dies), so the agent keeps its stdin open and its output keeps landing on disk.
//! - **The exit status is a file** written after the last byte of the log, so "the agent
//!   ended while the daemon was down" is a recorded fact, and the log has a true end:
//!   a reader that sees the exit record and then EOF has everything.
//! - **Signals go through pidfds**, so a pid reused by an unrelated process after the jail
//!   ended is never signalled.
//! - **It runs the agent's model proxy** (`harvest-proxy`): the user's credential lives in
//!   this process's memory only, never in the jail, and keeps serving a re-adopted agent
//!   after the daemon dies.
//!
//! Files in the state folder (all 0600, the folder 0700):
//! `supervisor.json` ([`Record`]), `supervisor.sock`, `logs/<id>.log`, `logs/<id>.exit`
//! ([`ExitRecord`]), `logs/<id>.stderr` (a bounded tail).

pub mod client;
mod egress;
pub mod fds;
mod input;
mod lines;
pub mod pidfd;
mod proc;
pub use pidfd::PidFd;
pub use proc::same_process;
pub mod run;
mod sni;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use client::{Supervisor, SupervisorError, spawn};

/// The longest agent output line kept whole (the CLI prints a Write's whole file in one
/// line, so this is generous); a longer one is replaced by a marker line.
pub const MAX_LINE: usize = 32 * 1024 * 1024;
/// The most of the agent's stderr kept (the start of it, which is where the CLI says
/// what went wrong).
pub const MAX_STDERR: u64 = 1024 * 1024;
/// The longest request line the supervisor reads (an input line can hold a long prompt).
pub const MAX_REQUEST: usize = 64 * 1024 * 1024;

pub const RECORD_FILE: &str = "supervisor.json";
pub const SOCKET_FILE: &str = "supervisor.sock";
pub const LOGS_DIR: &str = "logs";

/// What to run, sent to the supervisor over its stdin (so credentials in `env` never
/// appear in its command line or its own environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The session's state folder (host path; the jail never sees it).
    pub state_dir: PathBuf,
    /// This agent process's log id: its output goes to `logs/<log_id>.log`.
    pub log_id: u64,
    /// The jail program (bwrap) and its arguments, as raw bytes (paths need not be UTF-8).
    pub program: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    /// The environment of the jail program. Never the user's credentials: those are in
    /// `proxy`, and the agent gets a token for it.
    pub env: Vec<(String, String)>,
    /// The model proxy this supervisor runs for its agent (the agent's
    /// `ANTHROPIC_BASE_URL` is set to it once it listens).
    #[serde(default)]
    pub proxy: Option<harvest_proxy::Upstream>,
    /// For a jail without a network: the proxy listens on this Unix socket (bound into
    /// the jail, where `harvest forward` relays to it) and the agent's base URL is
    /// `proxy_url`, the forwarder's address on the jail's own loopback.
    #[serde(default)]
    pub proxy_socket: Option<PathBuf>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Under `--network allow=…`: the egress proxy's socket (bound into the jail) and the
    /// hosts it lets through.
    #[serde(default)]
    pub egress: Option<Egress>,
    /// Remote MCP servers this supervisor relays for its agent (see
    /// `harvest_proxy::mcp`), in the order the agent's `--mcp-config` numbers them.
    #[serde(default)]
    pub mcp: Vec<McpLink>,
    /// The program is not a jail that forks the agent under an init of its own (bwrap)
    /// but the agent's stand-in on this machine (`harvest docker-exec`, which runs it in
    /// a container): signals go to the program itself, which passes them on.
    #[serde(default)]
    pub direct: bool,
    /// The jail is bubblewrap, whose PID-namespace init keeps its own stdin, stdout and
    /// stderr for its whole life and can be written through `/proc/1/mem` by anything of
    /// the agent's uid (bwrap does not make itself non-dumpable). So the agent's stdio do
    /// not go there: bwrap's own are `/dev/null` and the stderr file, and the agent's
    /// socket pairs are handed over as [`AGENT_STDIO_FDS`], which bwrap's init closes and
    /// the jail's first command (`harvest forward`, non-dumpable) makes the CLI's stdio.
    #[serde(default)]
    pub stdio_as_fds: bool,
    /// A seccomp program (classic BPF, `struct sock_filter[]`) handed to the jail program
    /// as [`SECCOMP_FD`] (bwrap's `--seccomp`).
    #[serde(default)]
    pub seccomp: Option<Vec<u8>>,
}

/// Where the agent's stdin, stdout and stderr sockets are in the jail program when
/// [`LaunchSpec::stdio_as_fds`] is set.
pub const AGENT_STDIO_FDS: [i32; 3] = [3, 4, 5];
/// Where the seccomp program is readable in the jail program.
pub const SECCOMP_FD: i32 = 6;

/// One relayed MCP server: on a Unix socket bound into a jail without a network (where
/// `harvest forward` listens on `url` and relays to it), or without `socket` on the host's
/// loopback, which the jail shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpLink {
    pub relay: harvest_proxy::mcp::Relay,
    pub socket: Option<PathBuf>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Egress {
    pub socket: PathBuf,
    pub allow: Vec<String>,
}

/// Written by the supervisor once the jail runs, before it answers: enough for a
/// restarted daemon to find it again and to prove the pids are still the same processes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub log_id: u64,
    pub supervisor_pid: i32,
    /// Start time of the supervisor (clock ticks since boot), against pid reuse.
    pub supervisor_start: u64,
    pub jail_pid: i32,
    /// PID 1 of the jail's PID namespace and its start time.
    pub init_pid: i32,
    pub init_start: u64,
}

/// How the agent process ended, written after the last byte of its log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// One request to the supervisor, one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Write one line to the agent's stdin; answered once it is written. With an `id`, a
    /// line already written under that id is not written again (a daemon that died before
    /// recording a delivery sends it again after its restart: exactly once).
    Write {
        line: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// SIGINT (`interrupt`) or SIGTERM (`terminate`) to the agent CLI.
    Signal { signal: SignalKind },
    /// SIGKILL to everything in the jail.
    Kill,
    /// Is the agent still running?
    Status,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Interrupt,
    Terminate,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

pub fn log_path(state_dir: &Path, log_id: u64) -> PathBuf {
    state_dir.join(LOGS_DIR).join(format!("{log_id}.log"))
}
pub fn exit_path(state_dir: &Path, log_id: u64) -> PathBuf {
    state_dir.join(LOGS_DIR).join(format!("{log_id}.exit"))
}
pub fn stderr_path(state_dir: &Path, log_id: u64) -> PathBuf {
    state_dir.join(LOGS_DIR).join(format!("{log_id}.stderr"))
}

/// The exit record of a log, if the supervisor wrote one.
pub fn read_exit(state_dir: &Path, log_id: u64) -> Option<ExitRecord> {
    let text = std::fs::read_to_string(exit_path(state_dir, log_id)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The record of the supervisor last started in a state folder.
pub fn read_record(state_dir: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(state_dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

impl Record {
    /// The supervisor still runs and is the same process (not a reused pid).
    pub fn supervisor_alive(&self) -> bool {
        proc::same_process(self.supervisor_pid, self.supervisor_start)
    }

    /// End the whole jail without its supervisor: SIGKILL to the namespace's init, through
    /// a pidfd opened before the start time proves it is still the jail this record names.
    pub fn kill_jail(&self) {
        if let Ok(fd) = PidFd::open(self.init_pid)
            && proc::same_process(self.init_pid, self.init_start)
        {
            let _ = fd.signal(libc::SIGKILL);
        }
    }
}

/// The highest log id in a state folder (0 when there is none).
pub fn last_log_id(state_dir: &Path) -> u64 {
    std::fs::read_dir(state_dir.join(LOGS_DIR))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name();
                    let name = name.to_str()?;
                    name.strip_suffix(".log")?.parse::<u64>().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Write a file atomically (a temporary beside it, then rename), mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
