//! Sandbox providers behind one seam.
//!
//! A provider makes a sandbox for a session and starts agent processes in it so that they
//! do not share the daemon's fate. The contract every provider keeps (docs/providers.md):
//!
//! - **Each agent process has its own log**, identified by a log id, that starts at byte 0
//!   and only grows. The daemon commits `(log id, offset)` with the events it parsed, so a
//!   restarted daemon knows exactly where to go on, even when it died between starting a
//!   process and its first commit (a new log id reads from 0).
//! - **The log has an end.** [`AgentLog::next`] yields data, idle (nothing new within the
//!   poll) or end: every byte the process will ever write has been returned. Nothing is
//!   guessed from idle time, so a remote log whose last lines arrive after the exit is
//!   read to its true end.
//! - **Input and control are calls**, in terms a remote provider can implement: a line to
//!   the agent's input; `interrupt` (a signal where the provider has one, `Ok(false)`
//!   where it has none); `stop` (the provider's own stop); `kill` (everything in the
//!   sandbox). The stream-json interrupt request itself is input, sent by the daemon.
//! - **The session is recorded before its sandbox exists**, and every provider names its
//!   sandboxes by session id, so [`Provider::list`] finds them after any crash and the
//!   daemon removes those no session owns.
//! - **The spec says what to run, not where host files are** ([`SandboxSpec`]); host-only
//!   steps (state folders, hidden paths, clones) belong to the local provider.

pub mod local;
pub mod mcp;
pub mod seccomp;
pub mod setup_cache;
pub mod task_output;

use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use serde::{Deserialize, Serialize};
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
    #[error("bubblewrap cannot create a sandbox on this machine: {detail}. {fix}")]
    NoUserNamespaces { detail: String, fix: String },
    #[error("the workspace {path} cannot be used: {reason}")]
    BadWorkspace { path: PathBuf, reason: String },
    #[error("cannot start the agent in the sandbox: {0}")]
    Spawn(String),
    /// A step other than starting the agent, named so the user knows which one failed.
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("the agent's input is closed (the agent process has exited)")]
    InputClosed,
    #[error("the {kind} sandbox does not support {what}")]
    Unsupported { kind: &'static str, what: String },
    #[error("the sandbox's log stream broke ({0}); reconnecting")]
    Disconnected(String),
    #[error("sandbox I/O failed at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, SandboxError>;

/// Where a session's workspace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkspaceSource {
    /// A folder of the user's on this machine, worked on in place.
    Folder { path: PathBuf },
    /// A repository the sandbox clones into a workspace of its own.
    Clone { url: String },
    /// A folder Harvest made for this session on this machine (a fork's copy).
    Owned { path: PathBuf },
}

/// Where the agent binary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentBinary {
    /// The `claude` CLI on this machine, made available inside the sandbox.
    Host(PathBuf),
    /// The one the sandbox image brings.
    Image,
}

/// What the agent's tools may reach. The agent always reaches its model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Open,
    /// Loopback only.
    None,
    /// Only these hosts (names, or `*.domain`), through an egress proxy; each refused
    /// connection is a `network_denied` event.
    Allow(Vec<String>),
}

/// What a sandbox is made for: the same for a new session, a resumed and a re-adopted one.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The session id: every provider names (or labels) its sandbox by it.
    pub session: String,
    pub workspace: WorkspaceSource,
    pub agent: AgentBinary,
    pub network: Network,
    /// Ports the agent will serve on, to reach from this machine.
    pub ports: Vec<u16>,
    /// A provider's image for this sandbox (docker); `None`: the provider's default.
    pub image: Option<String>,
    /// Where a long step of making it (a large upload) reports how far it is.
    pub progress: Progress,
    /// Files and folders of this machine shown read-only in the agent's HOME, at these
    /// paths relative to it (the user's own Claude Code configuration).
    pub home_binds: Vec<(PathBuf, String)>,
    /// The repository's setup, when a new session runs one.
    pub setup: Option<SetupPlan>,
    /// Where the agent sees its workspace, when not where the workspace is on this
    /// machine: a fork's copy, shown where the conversation it continues saw it (the
    /// local provider; a container's is `/workspace` either way).
    pub workspace_at: Option<PathBuf>,
}

/// A new session's setup, as its sandbox is made for it.
#[derive(Debug, Clone)]
pub struct SetupPlan {
    /// The script, relative to the workspace (checked plain by the config).
    pub script: String,
    /// Keep a successful setup's state for the next sandbox of the same repository and
    /// script, and start from a kept one (providers that can: docker).
    pub cache: bool,
    /// The most a kept setup may take, in MiB.
    pub cache_max_mb: u64,
}

/// Where a provider tells the user how far a long step is ("uploading: 1200 of 5000
/// files"); the daemon passes it on to the client that is waiting. Silent by default.
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<SayProgress>>);

type SayProgress = dyn Fn(&str) + Send + Sync;

impl Progress {
    pub fn new(say: impl Fn(&str) + Send + Sync + 'static) -> Progress {
        Progress(Some(std::sync::Arc::new(say)))
    }

    pub fn say(&self, text: &str) {
        if let Some(f) = &self.0 {
            f(text);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}

/// How an agent process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when what held the agent died without recording how the agent ended (a
    /// supervisor killed): the turn under way is lost, and this says why.
    pub lost: Option<String>,
}

impl std::fmt::Display for AgentExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str(self.lost.as_deref().unwrap_or("unknown exit status")),
        }
    }
}

/// Where ingestion stands in a session's logs: the committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogPosition {
    pub log_id: u64,
    pub offset: u64,
    /// The daemon has read this log to its end and recorded how the process ended.
    #[serde(default)]
    pub ended: bool,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// `local`, `docker`, `daytona`.
    fn kind(&self) -> &'static str;
    /// Whether the sandbox brings its own agent binary (no host `claude` needed).
    fn brings_agent(&self) -> bool {
        false
    }
    /// The provider's own credentials from a client's environment (a remote service's
    /// key), taken before anything is filtered for the agent. Kept in memory only.
    fn credentials(&self, env: &BTreeMap<String, Secret>) {
        let _ = env;
    }
    /// Check that the provider can work here, with an error that names the fix.
    async fn check(&self) -> Result<()>;
    /// Make the sandbox. The session is already stored, so a crash from here on leaves
    /// something [`Provider::list`] finds.
    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>>;
    /// Find a session's sandbox again after a daemon restart, with its last agent process
    /// when that process's log has not been read to its end (`at` is the committed
    /// position). `Ok(None)`: the sandbox is gone.
    async fn adopt(
        &self,
        spec: &SandboxSpec,
        persisted: &serde_json::Value,
        at: LogPosition,
    ) -> Result<Option<Adopted>>;
    /// The sessions this provider holds sandboxes for, found by its own means (labels,
    /// folders), whatever the store says.
    async fn list(&self) -> Result<Vec<String>>;
    /// Remove the sandbox of a session the store does not know.
    async fn remove_orphan(&self, session: &str) -> Result<()>;
    /// The provider's own word on its sandboxes' states, by session (a remote sandbox:
    /// `started`, `stopped`, `archived`…), for listings. Empty when it has none to give.
    async fn states(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
    /// Make the sandbox of session `to` start as a copy of `from`'s: its workspace and the
    /// agent's HOME (transcripts). The copy treats `from`'s trees as hostile. Returns the
    /// new session's workspace source.
    async fn fork(&self, from: &SandboxSpec, to: &str) -> Result<WorkspaceSource> {
        let _ = (from, to);
        Err(SandboxError::Unsupported {
            kind: self.kind(),
            what: "fork".into(),
        })
    }
}

/// A sandbox found again by a restarted daemon.
pub struct Adopted {
    pub sandbox: Box<dyn Sandbox>,
    /// Its last agent process, still running or with log left to read.
    pub process: Option<AgentProcess>,
}

/// One sandbox, holding at most one agent process at a time.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The agent's working directory as the agent sees it.
    fn workspace(&self) -> &Path;
    /// Where the workspace is on this machine, when it is on this machine.
    fn host_workspace(&self) -> Option<&Path>;
    /// Where the agent binary is inside the sandbox.
    fn agent_program(&self) -> &Path;
    /// The agent's HOME inside the sandbox.
    fn agent_home(&self) -> &Path;
    /// Where this machine sees the agent's `CLAUDE_CODE_TMPDIR`, in which the CLI writes
    /// each running command's output (see `task_output.rs`): a folder Harvest made and
    /// the tmpdir relative to it; `None`: it cannot.
    fn task_outputs(&self) -> Option<(PathBuf, PathBuf)> {
        None
    }
    /// Whether the sandbox keeps a successful setup for later sandboxes of the same
    /// repository ([`SetupPlan::cache`]), so [`Sandbox::save_setup`] means something.
    fn keeps_setup(&self) -> bool {
        false
    }
    /// Put a kept setup in place of running it again: `Some(what)`, a line for the user
    /// (which setup, made when), once it is; `None`: there is none for this repository.
    async fn restore_setup(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Keep what a successful setup made: `made` are the workspace's paths it created
    /// (relative), the agent's HOME goes along. `Some(what)`: a line for the user.
    async fn save_setup(&self, made: &[String]) -> Result<Option<String>> {
        let _ = made;
        Ok(None)
    }
    /// Whether the sandbox's supervisor relays remote MCP servers for the agent (adding
    /// their credentials outside the sandbox): [`AgentCommand::mcp_relays`] is honoured.
    fn relays_mcp(&self) -> bool {
        false
    }
    /// Provider facts a restarted daemon needs to find this sandbox again, as JSON.
    fn persisted(&self) -> serde_json::Value;
    /// Start an agent process with a new log. `secrets` reach its environment only.
    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess>;
    /// Read a file the agent wrote, confined to the sandbox: a link or special file never
    /// leads outside it, and a FIFO cannot block the caller. At most `limit` bytes.
    async fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>>;
    /// Run a command once inside the sandbox, in its workspace, beside the agent (what the
    /// daemon needs of a sandbox's files: `git diff`, a status): bounded output, bounded
    /// time, nothing of the host's but what the agent sees.
    async fn exec(&self, argv: &[String], limits: ExecLimits) -> Result<ExecOutput>;
    /// Stop everything in the sandbox and delete what the provider made (not the
    /// workspace of a `--workspace` session, which is the user's folder).
    async fn destroy(&mut self) -> Result<()>;
    /// What the agent changed in a workspace that is not on this machine, against what was
    /// put there (for `harvest pull`). Providers whose workspace is a folder here have
    /// nothing to pull.
    async fn changes(&self) -> Result<Vec<WorkspaceChange>> {
        Err(SandboxError::Unsupported {
            kind: "this",
            what: "pull (the workspace is already this machine's folder)".into(),
        })
    }
    /// Where this machine reaches the ports the agent serves on: `(port, url)` for each
    /// that is reachable now (a container's published port; a local port once something
    /// listens on it).
    async fn previews(&self, ports: &[u16]) -> Vec<(u16, String)> {
        let _ = ports;
        Vec::new()
    }
}

/// A file the agent changed in a remote workspace. Paths are relative, as the sandbox
/// reported them: hostile until checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceChange {
    pub path: String,
    /// Its git blob hash when it was put in the sandbox; `None`: the agent made it.
    pub base: Option<String>,
    /// The agent's version; `None`: the agent deleted it.
    pub content: Option<Vec<u8>>,
    /// The version it started from, when the sandbox holds it and the user's machine
    /// does not (a repository cloned inside the sandbox).
    pub base_content: Option<Vec<u8>>,
}

/// Bounds of a one-shot command.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    pub output_bytes: usize,
    pub timeout: std::time::Duration,
    /// Give the command the session's network (a repository's setup installs things);
    /// otherwise none. A sandbox without a network gives none either way.
    pub network: bool,
    /// Each line of its standard output as it comes (a setup's output, streamed).
    pub lines: Progress,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            output_bytes: 4 * 1024 * 1024,
            timeout: std::time::Duration::from_secs(60),
            network: false,
            lines: Progress::default(),
        }
    }
}

/// What a one-shot command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output past the limit was dropped.
    pub truncated: bool,
}

/// A running (or finished, with log left to read) agent process.
pub struct AgentProcess {
    /// Identifies this process's log among the session's.
    pub log_id: u64,
    pub input: Box<dyn AgentInput>,
    pub control: Box<dyn AgentControl>,
}

#[async_trait]
pub trait AgentInput: Send + Sync {
    /// Write one complete line (ending in '\n') to the agent's input; returns once the
    /// agent's side has it.
    async fn write_line(&mut self, line: &str) -> Result<()>;
    /// Write a user message under an id. A provider that can should write a given id at
    /// most once, so a message re-sent after a daemon crash reaches the agent once; the
    /// default writes it again.
    async fn deliver(&mut self, id: &str, line: &str) -> Result<()> {
        let _ = id;
        self.write_line(line).await
    }
}

#[async_trait]
pub trait AgentControl: Send + Sync {
    /// A signal that makes the CLI end its turn as interrupted. `Ok(false)` when the
    /// provider has no such signal (the caller goes on to `stop`).
    async fn interrupt(&self) -> Result<bool>;
    /// The provider's own stop (SIGTERM to the CLI locally; deleting the command remotely).
    async fn stop(&self) -> Result<()>;
    /// The last resort: end every process in the sandbox.
    async fn kill(&self) -> Result<()>;
    /// This process's log, read from `offset`.
    async fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>>;
    /// How the process ended, once it has.
    async fn exit_status(&self) -> Option<AgentExit>;
    /// The end of what the agent printed on stderr, to explain an unexpected exit.
    async fn diagnostics(&self) -> String;
    /// Why the provider itself ended the process, when it did (a remote sandbox stopped
    /// after its idle interval): not a failure, the next message starts it again.
    async fn ended_by_provider(&self) -> Option<String> {
        None
    }
    /// Every byte of the log before `committed` is in the store: the provider may free
    /// them (offsets stay as they are; reading below `committed` is never asked again).
    async fn compact(&self, committed: u64) -> Result<()> {
        let _ = committed;
        Ok(())
    }
}

/// What a log read returns.
#[derive(Debug, PartialEq, Eq)]
pub enum LogRead {
    Data(Vec<u8>),
    /// Nothing new within the poll interval.
    Idle,
    /// Every byte the process will write has been returned.
    End,
}

/// One agent process's output as a durable, append-only byte log.
#[async_trait]
pub trait AgentLog: Send + Sync {
    /// Wait for bytes past the current offset (at most a bounded chunk), for `idle_poll`
    /// at most; or learn that the log has ended.
    async fn next(&mut self, idle_poll: std::time::Duration) -> Result<LogRead>;
    fn offset(&self) -> u64;
}
