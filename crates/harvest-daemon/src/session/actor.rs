//! The session actor: one task owns a session's sandbox and agent. It finds them again
//! after a restart, takes commands, ingests the agent log (store first, then broadcast),
//! and runs the cancel ladder: interrupt request → the provider's interrupt → its stop →
//! killing everything in the sandbox.

mod ending;
mod ingest;
mod permissions;
mod pr;
mod progress;
mod restore;
mod turns;

use super::handle::Command;
use super::lines::LineBuffer;
use super::setup::{Live, Setup};
use super::spec::{Checkpoint, SessionSpec};
use crate::context::Daemon;
use crate::redact;
use harvest_agent::StreamParser;
use harvest_protocol::rpc::RpcError;
use harvest_protocol::{EventBody, Secret, SessionId, SessionState};
use harvest_sandbox::{
    AgentControl, AgentInput, AgentLog, AgentProcess, LogRead, Provider, Sandbox, SandboxError,
};
use harvest_store::StoredEvent;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// How long the log reader waits before checking on a quiet agent.
const IDLE_POLL: Duration = Duration::from_millis(500);

struct Agent {
    log_id: u64,
    input: Box<dyn AgentInput>,
    control: Box<dyn AgentControl>,
    log: Box<dyn AgentLog>,
    parser: StreamParser,
    lines: LineBuffer,
    /// The process had already ended when this daemon found it (it ended while no daemon
    /// was watching).
    ended_unseen: bool,
    /// Up to where the provider was last told the log is committed.
    compacted: u64,
}

/// Where a cancel (or stop) stands on the escalation ladder: the interrupt request, then
/// the provider's interrupt signal, then its stop, then killing everything in the
/// sandbox, each after the grace.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ladder {
    Interrupted,
    Signalled,
    Terminated,
    Killed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    Stop,
    /// Stopped after `agent.idle_timeout_secs` without work.
    Idle,
    Shutdown,
}

enum Wake {
    Command(Option<Command>),
    Log(Vec<u8>),
    LogIdle,
    LogEnded,
    LogBroken(SandboxError),
    Escalate,
    IdleTimeout,
    Slot(Option<tokio::sync::OwnedSemaphorePermit>),
    Previews,
    Progress,
    Shutdown,
}

pub struct Actor {
    daemon: Arc<Daemon>,
    provider: Arc<dyn Provider>,
    id: SessionId,
    spec: SessionSpec,
    state: SessionState,
    shared_state: Arc<Mutex<SessionState>>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    sandbox: Option<Box<dyn Sandbox>>,
    agent: Option<Agent>,
    secrets: BTreeMap<String, Secret>,
    redact_values: Vec<String>,
    pending_turns: u32,
    ladder: Option<(Ladder, Instant)>,
    ending: Option<Ending>,
    /// The CLI has started this conversation (its transcript exists), so the next start
    /// resumes it rather than creating it.
    conversation_started: bool,
    /// Callers of `stop` waiting for the agent to exit.
    stop_waiters: Vec<tokio::sync::oneshot::Sender<Result<(), RpcError>>>,
    /// Permission requests waiting for an answer: request id → (tool, input).
    pending_permissions: std::collections::HashMap<String, (String, serde_json::Value)>,
    /// Tools the user allowed for the rest of the session.
    always_allowed: std::collections::BTreeSet<String>,
    /// What the session's turns have cost, against `agent.max_budget_usd`.
    spent_usd: f64,
    /// Since when the session has been idle with its agent running (for the idle timeout).
    idle_since: Option<Instant>,
    /// Consecutive failures to read the agent's log (a remote sandbox out of reach), and
    /// when to try again: the retries back off, and a long outage is announced.
    log_failures: u32,
    log_retry_at: Option<Instant>,
    /// The running slot this session holds while it has turns (with a daemon-wide limit).
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Messages stored and not yet written to the agent (waiting for a slot, or for an
    /// agent to be started), committed with every checkpoint.
    undelivered: std::collections::VecDeque<super::spec::Undelivered>,
    /// Follow-ups sent while a turn runs, held until it ends (withdrawable until then),
    /// committed with every checkpoint.
    held: std::collections::VecDeque<super::spec::Undelivered>,
    /// A stored session to find again before taking commands.
    restore: Option<harvest_store::SessionRow>,
    /// The CLI reports its own running/idle state; turns are tracked by that, not by
    /// counting messages.
    cli_reports_state: bool,
    /// Streamed text held back to mask secrets split across deltas.
    deltas: redact::DeltaRedactor,
    /// Shared with the handle: why the store refuses our events right now.
    stalled: Arc<Mutex<Option<String>>>,
    /// Preview URLs announced (`preview` events) for this agent process, by port.
    previews: BTreeMap<u16, String>,
    /// When to look for the session's ports again.
    preview_check: Instant,
    /// Commands running now, whose output is followed (see `progress.rs`).
    live_tasks: progress::LiveTasks,
}

impl Actor {
    pub fn new(
        daemon: Arc<Daemon>,
        provider: Arc<dyn Provider>,
        setup: Setup,
        events: broadcast::Sender<Arc<StoredEvent>>,
        shared_state: Arc<Mutex<SessionState>>,
        stalled: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let Setup {
            id,
            spec,
            state,
            secrets,
            conversation_started,
            spent_usd,
            restore,
        } = setup;
        let redact_values = redact::values(&secrets);
        Actor {
            daemon,
            provider,
            id,
            spec,
            state,
            shared_state,
            events,
            sandbox: None,
            agent: None,
            secrets,
            redact_values,
            pending_turns: 0,
            ladder: None,
            ending: None,
            conversation_started,
            stop_waiters: Vec::new(),
            pending_permissions: Default::default(),
            always_allowed: Default::default(),
            spent_usd,
            idle_since: None,
            log_failures: 0,
            log_retry_at: None,
            slot: None,
            undelivered: Default::default(),
            held: Default::default(),
            restore,
            cli_reports_state: false,
            deltas: Default::default(),
            stalled,
            previews: BTreeMap::new(),
            preview_check: Instant::now(),
            live_tasks: Default::default(),
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, live: Option<Live>) {
        let span = tracing::info_span!("session", session = %self.id);
        let _enter = span.enter();
        drop(_enter);
        if let Some(live) = live {
            self.sandbox = Some(live.sandbox);
            self.undelivered = live.checkpoint.undelivered.iter().cloned().collect();
            self.held = live.checkpoint.held.iter().cloned().collect();
            if let Err(e) = self.attach(live.process, live.checkpoint, false).await {
                self.fail(format!("cannot read the agent log: {e}")).await;
            } else if let Err(e) = self.deliver_or_queue().await {
                self.emit(vec![EventBody::Error {
                    message: format!("the first message could not reach the agent: {}", e.message),
                }])
                .await;
            }
        }
        if let Some(row) = self.restore.take() {
            self.restore(row).await;
        }
        loop {
            let wake = self.next_wake(&mut commands).await;
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(cmd)) => {
                    if self.command(cmd).await {
                        return;
                    }
                }
                Wake::Log(chunk) => {
                    self.log_reached().await;
                    self.ingest(&chunk).await
                }
                Wake::LogIdle => self.log_reached().await,
                Wake::LogEnded => self.on_exit().await,
                Wake::LogBroken(e) => self.reopen_log(e).await,
                Wake::Escalate => self.escalate().await,
                Wake::Slot(Some(permit)) => self.start_queued(permit).await,
                Wake::Previews => self.announce_previews().await,
                Wake::Progress => self.report_progress().await,
                Wake::Slot(None) => {}
                Wake::IdleTimeout => {
                    tracing::info!("idle timeout: stopping the agent");
                    self.idle_since = None;
                    if let Some(agent) = self.agent.as_ref() {
                        self.ending = Some(Ending::Idle);
                        let _ = agent.control.stop().await;
                        self.ladder = Some((Ladder::Terminated, Instant::now() + self.grace()));
                    }
                }
                Wake::Shutdown => {
                    self.shutdown().await;
                    return;
                }
            }
        }
    }

    async fn next_wake(&mut self, commands: &mut mpsc::Receiver<Command>) -> Wake {
        let deadline = self.ladder.map(|(_, at)| at);
        let shutting_down = self.ending == Some(Ending::Shutdown);
        let timeout = self.daemon.config.agent.idle_timeout_secs;
        let idle_deadline = self
            .idle_since
            .filter(|_| timeout > 0 && self.ending.is_none() && self.agent.is_some())
            .map(|since| since + Duration::from_secs(timeout));
        let slots = self.daemon.running_slots.clone().filter(|_| {
            self.slot.is_none() && !self.undelivered.is_empty() && self.agent.is_some()
        });
        let preview_at =
            (!self.spec.ports.is_empty() && self.agent.is_some() && self.sandbox.is_some())
                .then_some(self.preview_check);
        let progress_at = self.progress_at().filter(|_| self.agent.is_some());
        let agent = self.agent.as_mut();
        let retry_at = self.log_retry_at;
        tokio::select! {
            _ = sleep_until(preview_at) => Wake::Previews,
            _ = sleep_until(progress_at) => Wake::Progress,
            cmd = commands.recv() => Wake::Command(cmd),
            permit = async {
                match slots {
                    Some(s) => s.acquire_owned().await.ok(),
                    None => std::future::pending().await,
                }
            } => Wake::Slot(permit),
            wake = async {
                if let Some(at) = retry_at {
                    tokio::time::sleep_until(at).await;
                }
                agent_wake(agent).await
            } => wake,
            _ = sleep_until(deadline) => Wake::Escalate,
            _ = sleep_until(idle_deadline) => Wake::IdleTimeout,
            _ = self.daemon.shutdown.cancelled(), if !shutting_down => Wake::Shutdown,
        }
    }

    /// Returns true when the actor is done (the session was removed).
    async fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Send { text, env, reply } => {
                let r = self.send(text, env).await;
                let _ = reply.send(r);
            }
            Command::Withdraw { message, reply } => {
                let r = self.withdraw(message).await;
                let _ = reply.send(r);
            }
            Command::SendNow { message, reply } => {
                let r = self.send_now(message).await;
                let _ = reply.send(r);
            }
            Command::Cancel { reply } => {
                let r = self.cancel().await;
                let _ = reply.send(r);
            }
            Command::Stop { reply } => match self.stop().await {
                // Answered when the agent has exited, so `harvest stop` means stopped.
                Ok(true) => self.stop_waiters.push(reply),
                Ok(false) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Approve { params, reply } => {
                let r = self.approve(params).await;
                let _ = reply.send(r);
            }
            Command::Resume { env, reply } => {
                let r = self.restart(env).await;
                let _ = reply.send(r);
            }
            Command::ReadFile { path, limit, reply } => {
                let r = self.read_file(&path, limit).await;
                let _ = reply.send(r);
            }
            Command::Changes { reply } => {
                let r = self.changes().await;
                let _ = reply.send(r);
            }
            Command::Diff { stat, reply } => {
                let r = self.diff(stat).await;
                let _ = reply.send(r);
            }
            Command::Pr { params, reply } => {
                let r = self.pull_request(*params).await;
                let _ = reply.send(r);
            }
            Command::Remove { reply } => {
                self.remove().await;
                let _ = reply.send(Ok(()));
                return true;
            }
        }
        false
    }

    /// Take an agent process: its log is read from the checkpoint's offset when the
    /// checkpoint is of this process's log, and from the start when the process is newer.
    async fn attach(
        &mut self,
        process: AgentProcess,
        checkpoint: Checkpoint,
        ended_unseen: bool,
    ) -> Result<(), SandboxError> {
        // Another agent process: the commands of the last one are not followed.
        self.live_tasks.clear();
        let same = checkpoint.at.log_id == process.log_id;
        let offset = if same { checkpoint.at.offset } else { 0 };
        let log = process.control.open_log(offset).await?;
        self.agent = Some(Agent {
            log_id: process.log_id,
            input: process.input,
            control: process.control,
            log,
            parser: if same {
                checkpoint.parser
            } else {
                StreamParser::new()
            },
            lines: LineBuffer::default(),
            ended_unseen,
            compacted: offset,
        });
        Ok(())
    }

    /// The log stream broke (a remote connection dropped): open it again where the last
    /// byte we received ends, so nothing is lost or doubled.
    async fn reopen_log(&mut self, why: SandboxError) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        tracing::warn!(error = %why, "agent log unreadable; reopening");
        // A dropped stream is tried again at once; then after 0.5 s, doubling to 8 s.
        self.log_failures += 1;
        let n = self.log_failures;
        self.log_retry_at = (n > 1)
            .then(|| Instant::now() + (Duration::from_millis(500) * 2u32.pow((n - 2).min(4))));
        let offset = agent.log.offset();
        match agent.control.open_log(offset).await {
            Ok(log) => agent.log = log,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reopen the agent log yet");
                self.log_retry_at
                    .get_or_insert_with(|| Instant::now() + IDLE_POLL);
            }
        }
        if n == RECONNECTING_AFTER {
            self.emit(vec![EventBody::Sandbox {
                message: format!("reconnecting to the sandbox ({why}); retrying with backoff"),
            }])
            .await;
        }
    }

    /// The log answered again. A routine drop (one retry) goes unannounced; a longer
    /// outage was announced as reconnecting, and its end is announced too.
    async fn log_reached(&mut self) {
        let was = std::mem::take(&mut self.log_failures);
        self.log_retry_at = None;
        if was >= RECONNECTING_AFTER {
            self.emit(vec![EventBody::Sandbox {
                message: "reconnected to the sandbox; nothing was lost".into(),
            }])
            .await;
        }
    }

    async fn changes(&mut self) -> Result<Vec<harvest_sandbox::WorkspaceChange>, RpcError> {
        use harvest_protocol::rpc::codes;
        self.ensure_sandbox().await?;
        let Some(sandbox) = self.sandbox.as_ref() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        sandbox
            .changes()
            .await
            .map_err(|e| RpcError::new(codes::SESSION_STATE, e.to_string()))
    }

    async fn diff(
        &mut self,
        stat: bool,
    ) -> Result<harvest_protocol::methods::DiffResult, RpcError> {
        use harvest_protocol::rpc::codes;
        let Some(base) = self.spec.base.clone() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "this session's workspace was not a git repository with a commit when it \
                 started, so there is nothing to diff against; for a remote sandbox's \
                 uploaded folder use `harvest pull ID --patch FILE`",
            ));
        };
        self.ensure_sandbox().await?;
        let Some(sandbox) = self.sandbox.as_ref() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        let patch = crate::review::diff(sandbox.as_ref(), &base, stat).await?;
        let source = self.spec.workspace_source();
        let local_repo = match &source {
            harvest_sandbox::WorkspaceSource::Clone { url } if url.starts_with('/') => {
                Some(url.clone())
            }
            _ => None,
        };
        Ok(harvest_protocol::methods::DiffResult {
            base,
            branch: self.spec.branch.clone(),
            local_repo,
            in_place: matches!(source, harvest_sandbox::WorkspaceSource::Folder { .. }),
            patch_b64: {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(patch)
            },
        })
    }

    /// The session's sandbox, found again (or made) if this daemon has none loaded.
    async fn ensure_sandbox(&mut self) -> Result<(), RpcError> {
        use harvest_protocol::rpc::codes;
        if self.sandbox.is_none() {
            let spec = crate::policy::sandbox_spec(&self.daemon, self.id.as_str(), &self.spec);
            let sandbox = self
                .provider
                .create(&spec)
                .await
                .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
            self.sandbox = Some(sandbox);
        }
        Ok(())
    }

    async fn read_file(&mut self, path: &std::path::Path, limit: u64) -> Result<Vec<u8>, RpcError> {
        use harvest_protocol::rpc::codes;
        if self.sandbox.is_none() {
            let spec = crate::policy::sandbox_spec(&self.daemon, self.id.as_str(), &self.spec);
            let sandbox = self
                .provider
                .create(&spec)
                .await
                .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
            self.sandbox = Some(sandbox);
        }
        let Some(sandbox) = self.sandbox.as_ref() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        // A relative path is the workspace's, as the agent's own tools take it.
        let path = if path.is_relative() {
            sandbox.workspace().join(path)
        } else {
            path.to_owned()
        };
        sandbox
            .read_file(&path, limit)
            .await
            .map_err(|e| RpcError::new(codes::SESSION_STATE, e.to_string()))
    }

    /// Say where this machine reaches the session's ports once it can (a container's
    /// published port at once; a local one when something listens), and again when that
    /// changes (a restarted container gets new host ports).
    async fn announce_previews(&mut self) {
        let found = match self.sandbox.as_ref() {
            Some(s) => s.previews(&self.spec.ports).await,
            None => Vec::new(),
        };
        let mut fresh = Vec::new();
        for (port, url) in found {
            if self.previews.get(&port) != Some(&url) {
                self.previews.insert(port, url.clone());
                fresh.push(EventBody::Preview { port, url });
            }
        }
        if !fresh.is_empty() {
            self.emit(fresh).await;
        }
        let all = self
            .spec
            .ports
            .iter()
            .all(|p| self.previews.contains_key(p));
        self.preview_check = Instant::now() + Duration::from_secs(if all { 10 } else { 1 });
    }

    fn persist_spec(&self) {
        let (store, id) = (self.daemon.store.clone(), self.id.clone());
        let spec = serde_json::to_value(&self.spec).unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.set_spec(&id, &spec) {
                tracing::warn!(error = %e, "cannot store the session's spec");
            }
        });
    }

    async fn fail(&mut self, message: String) {
        self.emit(vec![
            EventBody::Error {
                message: message.clone(),
            },
            status(SessionState::Failed, Some(message)),
        ])
        .await;
    }

    fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.daemon.config.agent.cancel_grace_secs.max(0.1))
    }

    async fn store_sandbox_state(&self, persisted: serde_json::Value) {
        let (store, id) = (self.daemon.store.clone(), self.id.clone());
        let _ = tokio::task::spawn_blocking(move || store.set_sandbox_state(&id, &persisted)).await;
    }
}

/// Failed log reads in a row before the session says it is reconnecting.
const RECONNECTING_AFTER: u32 = 3;

fn status(state: SessionState, reason: Option<String>) -> EventBody {
    EventBody::Status { state, reason }
}

async fn agent_wake(agent: Option<&mut Agent>) -> Wake {
    let Some(agent) = agent else {
        return std::future::pending().await;
    };
    match agent.log.next(IDLE_POLL).await {
        Ok(LogRead::Data(chunk)) => Wake::Log(chunk),
        Ok(LogRead::Idle) => Wake::LogIdle,
        Ok(LogRead::End) => Wake::LogEnded,
        Err(e) => Wake::LogBroken(e),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
