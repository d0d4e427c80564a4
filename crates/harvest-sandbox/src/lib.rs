//! Sandbox providers behind one trait.
//!
//! A provider makes a sandbox around a workspace and starts the agent in it so that the
//! agent does not share the daemon's fate: its stdin comes from something that stays open
//! when the daemon dies, and its stdout goes to a durable log that the daemon reads by byte
//! offset. The local provider keeps that log in a file in the session's state folder; a
//! container or remote provider keeps it on its own side (a `docker logs` stream, a remote
//! command log) and implements [`AgentLog`] over it, so the daemon's ingestion never
//! changes.

pub mod local;

use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use local::LocalProvider;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "bubblewrap (bwrap) is not installed or not on PATH; install it with \
         `sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap`"
    )]
    BwrapMissing,
    #[error(
        "bubblewrap cannot create a sandbox on this machine: {detail}. Unprivileged user \
         namespaces are probably disabled; enable them with \
         `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian) or \
         `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 24.04+)"
    )]
    NoUserNamespaces { detail: String },
    #[error("the workspace {path} is not a folder: {reason}")]
    BadWorkspace { path: PathBuf, reason: String },
    #[error("cannot start the agent in the sandbox: {0}")]
    Spawn(String),
    #[error("the agent's input is closed (the agent process has exited)")]
    InputClosed,
    #[error("sandbox I/O failed at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, SandboxError>;

/// What a sandbox is made for.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The session's private state folder on the host: the agent log, its HOME, ...
    pub state_dir: PathBuf,
    /// The workspace folder on the host; the agent sees it read-write at the same path.
    pub workspace: PathBuf,
    /// Host paths the agent must not see even if a system folder contains them (Harvest's
    /// own data and state folders, other sessions' workspaces).
    pub hidden: Vec<PathBuf>,
    /// The agent CLI on the host, made available inside the sandbox.
    pub agent_binary: PathBuf,
    /// Host network (true) or none.
    pub network: bool,
}

/// How an agent process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for AgentExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// `local`, `docker`, `daytona`.
    fn kind(&self) -> &'static str;
    /// Check that the provider can work here, with an error that names the fix.
    async fn check(&self) -> Result<()>;
    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>>;
    /// Find a sandbox again after a daemon restart, from what [`Sandbox::persisted`]
    /// returned. `Ok(None)` when its agent is no longer running (the sandbox can be made
    /// anew with `create` to resume the conversation).
    async fn adopt(
        &self,
        spec: &SandboxSpec,
        persisted: &serde_json::Value,
    ) -> Result<Option<Adopted>>;
}

/// A running agent found again by a restarted daemon.
pub struct Adopted {
    pub sandbox: Box<dyn Sandbox>,
    pub process: AgentProcess,
}

/// One sandbox, holding at most one agent process at a time.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The agent's working directory as the agent sees it.
    fn workspace(&self) -> &Path;
    /// Where the agent binary is inside the sandbox.
    fn agent_program(&self) -> &Path;
    /// Provider facts a restarted daemon needs to find this sandbox again, as JSON.
    fn persisted(&self) -> serde_json::Value;
    /// Start the agent. `secrets` reach its environment only.
    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess>;
    /// Stop everything in the sandbox and delete what the provider made (not the
    /// workspace of a `--workspace` session, which is the user's folder).
    async fn destroy(&mut self) -> Result<()>;
}

/// A running agent, split in parts the session actor can use concurrently.
pub struct AgentProcess {
    pub input: Box<dyn AgentInput>,
    pub control: Box<dyn AgentControl>,
    /// Resolves once when the agent has exited.
    pub exited: tokio::sync::oneshot::Receiver<AgentExit>,
    /// Where this process's output begins in the durable log (a resumed conversation
    /// appends to the same log).
    pub log_start: u64,
}

#[async_trait]
pub trait AgentInput: Send + Sync {
    /// Write one complete line (ending in '\n') to the agent's stdin.
    async fn write_line(&mut self, line: &str) -> Result<()>;
}

#[async_trait]
pub trait AgentControl: Send + Sync {
    /// SIGINT to the agent process: the CLI ends the turn as interrupted, then exits.
    async fn interrupt(&self) -> Result<()>;
    /// SIGTERM to the agent process (the CLI then stops its own tool children).
    async fn terminate(&self) -> Result<()>;
    /// The last resort: kill every process in the sandbox, including tool commands the
    /// CLI started in their own sessions.
    async fn kill_all(&self) -> Result<()>;
    /// The durable log of the agent's stdout, read from `offset`.
    fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>>;
    /// The end of what the agent printed on stderr, to explain an unexpected exit.
    fn diagnostics(&self) -> String;
}

/// The agent's stdout as a durable, append-only byte log.
#[async_trait]
pub trait AgentLog: Send + Sync {
    /// Wait for bytes past the current offset and return them (at most a bounded chunk).
    /// Returns an empty chunk only when `idle_poll` elapsed with nothing new, so the
    /// caller can check whether the agent is still alive.
    async fn next_chunk(&mut self, idle_poll: std::time::Duration) -> Result<Vec<u8>>;
    fn offset(&self) -> u64;
}
