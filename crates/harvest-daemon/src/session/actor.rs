//! The session actor: one task owns a session's sandbox and agent. It takes commands,
//! ingests the agent log (store first, then broadcast), and runs the cancel ladder:
//! interrupt request → SIGTERM → kill everything in the sandbox.

mod ending;
mod permissions;

use super::lines::LineBuffer;
use super::{Command, Live, SessionSpec, Setup};
use crate::context::Daemon;
use crate::redact;
use harvest_agent::{AgentCommand, StreamParser, input};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, Secret, SessionId, SessionState};
use harvest_sandbox::{AgentControl, AgentExit, AgentInput, AgentLog, AgentProcess, Sandbox};
use harvest_store::{NewEvent, StoredEvent};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// How long the log reader waits before checking on a quiet agent.
const IDLE_POLL: Duration = Duration::from_millis(500);

struct Agent {
    input: Box<dyn AgentInput>,
    control: Box<dyn AgentControl>,
    exited: tokio::sync::oneshot::Receiver<AgentExit>,
    log: Box<dyn AgentLog>,
    parser: StreamParser,
    lines: LineBuffer,
}

/// Where a cancel (or stop) stands on the escalation ladder: the interrupt request, then
/// SIGINT, then SIGTERM, then killing everything in the sandbox, each after the grace.
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
    Log(Result<Vec<u8>, harvest_sandbox::SandboxError>),
    Exited(AgentExit),
    Escalate,
    IdleTimeout,
    Slot(Option<tokio::sync::OwnedSemaphorePermit>),
    Shutdown,
}

pub struct Actor {
    daemon: Arc<Daemon>,
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
    always_allowed: std::collections::HashSet<String>,
    /// What the session's turns have cost, against `agent.max_budget_usd`.
    spent_usd: f64,
    /// Since when the session has been idle with its agent running (for the idle timeout).
    idle_since: Option<Instant>,
    /// The running slot this session holds while it has turns (with a daemon-wide limit).
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Messages stored and waiting for a slot.
    queued: std::collections::VecDeque<String>,
}

impl Actor {
    pub fn new(
        daemon: Arc<Daemon>,
        setup: Setup,
        events: broadcast::Sender<Arc<StoredEvent>>,
        shared_state: Arc<Mutex<SessionState>>,
    ) -> Self {
        let Setup {
            id,
            spec,
            state,
            secrets,
            conversation_started,
            spent_usd,
        } = setup;
        let redact_values = redact::values(secrets.values());
        Actor {
            daemon,
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
            slot: None,
            queued: Default::default(),
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, live: Option<Live>) {
        let span = tracing::info_span!("session", session = %self.id);
        let _enter = span.enter();
        drop(_enter);
        match live {
            Some(live) => {
                self.pending_turns = live.pending_turns;
                if live.pending_turns > 0 {
                    // A turn under way keeps going; it takes a slot when there is one.
                    self.slot = self
                        .daemon
                        .running_slots
                        .clone()
                        .and_then(|s| s.try_acquire_owned().ok());
                }
                self.pending_permissions = live
                    .pending_permissions
                    .into_iter()
                    .map(|(id, tool, input)| (id, (tool, input)))
                    .collect();
                if self.state == SessionState::Cancelling {
                    // A cancel was under way when the last daemon died: carry it on.
                    self.ladder = Some((Ladder::Interrupted, Instant::now() + self.grace()));
                }
                if let Err(e) = self.attach(live.sandbox, live.process, live.offset, live.parser) {
                    self.fail(format!("cannot read the agent log: {e}")).await;
                }
            }
            None if !self.state.is_terminal() => {
                self.emit(vec![EventBody::Status {
                    state: SessionState::Interrupted,
                    reason: Some(
                        "the daemon stopped while this session was live; send a message to resume the conversation"
                            .into(),
                    ),
                }])
                .await;
            }
            None => {}
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
                Wake::Log(Ok(chunk)) => self.ingest(&chunk).await,
                Wake::Log(Err(e)) => {
                    tracing::error!(error = %e, "agent log unreadable");
                    tokio::time::sleep(IDLE_POLL).await;
                }
                Wake::Exited(exit) => self.on_exit(exit).await,
                Wake::Escalate => self.escalate().await,
                Wake::Slot(Some(permit)) => self.start_queued(permit).await,
                Wake::Slot(None) => {}
                Wake::IdleTimeout => {
                    tracing::info!("idle timeout: stopping the agent");
                    self.idle_since = None;
                    if let Some(agent) = self.agent.as_ref() {
                        self.ending = Some(Ending::Idle);
                        let _ = agent.control.terminate().await;
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
        let slots = self
            .daemon
            .running_slots
            .clone()
            .filter(|_| self.slot.is_none() && !self.queued.is_empty());
        let agent = self.agent.as_mut();
        tokio::select! {
            cmd = commands.recv() => Wake::Command(cmd),
            permit = async {
                match slots {
                    Some(s) => s.acquire_owned().await.ok(),
                    None => std::future::pending().await,
                }
            } => Wake::Slot(permit),
            wake = agent_wake(agent) => wake,
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
            Command::Remove { reply } => {
                self.remove().await;
                let _ = reply.send(Ok(()));
                return true;
            }
        }
        false
    }

    pub fn attach(
        &mut self,
        sandbox: Box<dyn Sandbox>,
        process: AgentProcess,
        offset: u64,
        parser: StreamParser,
    ) -> Result<(), harvest_sandbox::SandboxError> {
        let log = process.control.open_log(offset)?;
        self.sandbox = Some(sandbox);
        self.agent = Some(Agent {
            input: process.input,
            control: process.control,
            exited: process.exited,
            log,
            parser,
            lines: LineBuffer::default(),
        });
        Ok(())
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

    /// A slot freed up: the queued messages go to the agent.
    async fn start_queued(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.slot = Some(permit);
        self.emit(vec![status(SessionState::Running, None)]).await;
        while let Some(text) = self.queued.pop_front() {
            self.pending_turns += 1;
            if let Err(e) = self.write_to_agent(&input::user_message(&text)).await {
                self.emit(vec![EventBody::Error {
                    message: format!("a queued message could not reach the agent: {}", e.message),
                }])
                .await;
            }
        }
    }

    /// One line to the agent's stdin, or why it cannot take one.
    async fn write_to_agent(&mut self, line: &str) -> Result<(), RpcError> {
        let Some(agent) = self.agent.as_mut() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the agent is not running",
            ));
        };
        agent
            .input
            .write_line(line)
            .await
            .map_err(|e| RpcError::new(codes::SESSION_STATE, e.to_string()))
    }

    /// Why no further turn may run, when the session has spent its budget.
    fn over_budget(&self) -> Option<String> {
        let limit = self.daemon.config.agent.max_budget_usd;
        (limit > 0.0 && self.spent_usd >= limit).then(|| {
            format!(
                "the session reached its budget: ${:.4} of ${limit:.4}; raise agent.max_budget_usd in harvest.toml to go on",
                self.spent_usd
            )
        })
    }

    /// Start the agent again if it is not running (a finished, stopped or interrupted
    /// session), resuming its conversation; idle until the next message.
    async fn restart(&mut self, env: BTreeMap<String, Secret>) -> Result<(), RpcError> {
        if self.ending.is_some() {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the session is stopping",
            ));
        }
        if self.agent.is_some() {
            return Ok(());
        }
        if !env.is_empty() {
            self.redact_values = redact::values(env.values());
            self.secrets = env;
        }
        self.resume().await?;
        if self.state != SessionState::Idle {
            self.emit(vec![status(SessionState::Idle, None)]).await;
        }
        Ok(())
    }

    async fn send(&mut self, text: String, env: BTreeMap<String, Secret>) -> Result<(), RpcError> {
        if let Some(why) = self.over_budget() {
            return Err(RpcError::new(codes::SESSION_STATE, why));
        }
        if self.ending.is_some() {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the session is stopping",
            ));
        }
        if self.agent.is_none() {
            self.restart(env).await?;
        }
        let mut events = vec![EventBody::UserMessage { text: text.clone() }];
        if let Some(slots) = self.daemon.running_slots.clone()
            && self.slot.is_none()
        {
            match slots.try_acquire_owned() {
                Ok(permit) => self.slot = Some(permit),
                Err(_) => {
                    // Stored now; it reaches the agent when a slot frees up.
                    if self.state != SessionState::Queued {
                        events.push(status(
                            SessionState::Queued,
                            Some(format!(
                                "waiting for a free slot: at most {} sessions run at once (agent.max_running_sessions)",
                                self.daemon.config.agent.max_running_sessions
                            )),
                        ));
                    }
                    self.emit(events).await;
                    self.queued.push_back(text);
                    return Ok(());
                }
            }
        }
        if self.state != SessionState::Running {
            events.push(status(SessionState::Running, None));
        }
        self.emit(events).await;
        self.pending_turns += 1;
        self.write_to_agent(&input::user_message(&text)).await
    }

    /// Start the agent again in the same sandbox and workspace, resuming its conversation.
    async fn resume(&mut self) -> Result<(), RpcError> {
        crate::create::require_credentials(&self.secrets)?;
        if self.sandbox.is_none() {
            let spec = super::sandbox_spec(&self.daemon, &self.id, &self.spec);
            let sandbox = self
                .daemon
                .provider
                .create(&spec)
                .await
                .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
            self.sandbox = Some(sandbox);
        }
        let transcript_exists = self.conversation_started;
        let opts =
            super::claude_options(&self.daemon, &self.spec, transcript_exists, self.spent_usd);
        let Some(sandbox) = self.sandbox.as_mut() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        let cmd = AgentCommand::claude(sandbox.agent_program(), &opts);
        let process = sandbox
            .spawn_agent(&cmd, &self.secrets)
            .await
            .map_err(|e| RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()))?;
        let persisted = sandbox.persisted();
        let offset = process.log_start;
        let Some(sandbox) = self.sandbox.take() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        self.attach(sandbox, process, offset, StreamParser::new())
            .map_err(|e| RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()))?;
        self.store_sandbox_state(persisted).await;
        self.emit(vec![EventBody::Sandbox {
            message: if transcript_exists {
                "agent restarted; resuming the conversation".into()
            } else {
                "agent started".into()
            },
        }])
        .await;
        Ok(())
    }

    async fn cancel(&mut self) -> Result<(), RpcError> {
        let Some(agent) = self.agent.as_mut() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!("nothing to cancel: the session is {}", self.state.as_str()),
            ));
        };
        if !matches!(
            self.state,
            SessionState::Running | SessionState::Cancelling | SessionState::NeedsInput
        ) {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!("nothing to cancel: the session is {}", self.state.as_str()),
            ));
        }
        if self.ladder.is_some() {
            return Ok(()); // already on its way down
        }
        let request_id = format!("harvest-cancel-{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = agent.input.write_line(&input::interrupt(&request_id)).await {
            tracing::warn!(error = %e, "interrupt could not be written; escalating");
        }
        self.ladder = Some((Ladder::Interrupted, Instant::now() + self.grace()));
        self.emit(vec![status(SessionState::Cancelling, None)])
            .await;
        Ok(())
    }

    /// Returns whether an agent is on its way down (the caller waits for its exit).
    async fn stop(&mut self) -> Result<bool, RpcError> {
        let Some(agent) = self.agent.as_ref() else {
            return Ok(false);
        };
        if self.ending.is_none() {
            self.ending = Some(Ending::Stop);
            let _ = agent.control.terminate().await;
            self.ladder = Some((Ladder::Terminated, Instant::now() + self.grace()));
        }
        Ok(true)
    }

    async fn escalate(&mut self) {
        let Some((step, _)) = self.ladder else { return };
        let Some(agent) = self.agent.as_ref() else {
            self.ladder = None;
            return;
        };
        match step {
            Ladder::Interrupted => {
                tracing::warn!("the agent ignored the interrupt request; sending SIGINT");
                let _ = agent.control.interrupt().await;
                self.ladder = Some((Ladder::Signalled, Instant::now() + self.grace()));
            }
            Ladder::Signalled => {
                tracing::warn!("the agent ignored SIGINT; sending SIGTERM");
                let _ = agent.control.terminate().await;
                self.ladder = Some((Ladder::Terminated, Instant::now() + self.grace()));
            }
            Ladder::Terminated => {
                tracing::warn!("the agent ignored SIGTERM; killing everything in its sandbox");
                let _ = agent.control.kill_all().await;
                self.ladder = Some((Ladder::Killed, Instant::now() + Duration::from_secs(3600)));
            }
            Ladder::Killed => {}
        }
    }

    async fn ingest(&mut self, chunk: &[u8]) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let lines = agent.lines.push(chunk);
        let offset = agent.log.offset() - agent.lines.pending_len();
        // Parse first (the parser lives in the agent), then fold the events into the state.
        let mut parsed = Vec::with_capacity(lines.len());
        for line in lines {
            // Secrets are masked before the line goes anywhere: the store, a log, a client.
            let line = redact::redact(&line, &self.redact_values).unwrap_or(line);
            tracing::trace!(line = %line, "agent line");
            parsed.push(agent.parser.parse_line(&line));
        }
        let mut out = Vec::new();
        let mut auto_answers = Vec::new();
        let mut release_slot = false;
        for p in parsed {
            for body in p.events {
                if let EventBody::AgentInit {
                    agent_session_id, ..
                } = &body
                {
                    self.conversation_started = true;
                    if self.spec.fork_from.is_some() {
                        // The fork's own conversation exists now: resume that from here on.
                        self.spec.fork_from = None;
                        self.spec.agent_session_id = agent_session_id.clone();
                        self.persist_spec();
                    }
                }
                let follow = self.on_permission_event(&body, &mut auto_answers);
                let turn_ended = matches!(body, EventBody::TurnResult { .. });
                let was_over = self.over_budget().is_some();
                if let EventBody::TurnResult { cost_usd, .. } = &body {
                    self.spent_usd += cost_usd;
                }
                out.push(NewEvent {
                    body,
                    raw: Some(p.raw.clone()),
                });
                out.extend(follow.into_iter().map(NewEvent::new));
                if !was_over && let Some(why) = self.over_budget() {
                    out.push(NewEvent::new(EventBody::Error { message: why }));
                }
                if turn_ended {
                    self.pending_turns = self.pending_turns.saturating_sub(1);
                    if self.pending_turns == 0 && self.ending.is_none() {
                        self.ladder = None;
                        release_slot = true;
                        out.push(NewEvent::new(status(SessionState::Idle, None)));
                    }
                }
            }
        }
        self.commit(out, Some(offset)).await;
        if release_slot {
            // Only once the turn's end is stored may another session take the slot.
            self.slot = None;
        }
        // Requests for tools the user allowed "always" are answered at once.
        for line in auto_answers {
            if let Some(agent) = self.agent.as_mut()
                && let Err(e) = agent.input.write_line(&line).await
            {
                tracing::warn!(error = %e, "cannot answer a permission request");
            }
        }
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

    /// Store and broadcast events that the daemon itself originates.
    pub async fn emit(&mut self, events: Vec<EventBody>) {
        let offset = None;
        self.commit(events.into_iter().map(NewEvent::new).collect(), offset)
            .await;
    }

    /// Commit events (and the log offset they were read up to), then broadcast them. A
    /// failing store (a full disk) is retried rather than losing the events: the agent
    /// keeps writing to its own log meanwhile.
    async fn commit(&mut self, events: Vec<NewEvent>, offset: Option<u64>) {
        if events.is_empty() && offset.is_none() {
            return;
        }
        for ev in &events {
            if let EventBody::Status { state, .. } = &ev.body {
                self.state = *state;
            }
        }
        *self
            .shared_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.state;
        if self.state != SessionState::Idle {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
        let store = self.daemon.store.clone();
        let id = self.id.clone();
        let stored = {
            let mut events = Some(events);
            loop {
                let batch = events.take().unwrap_or_default();
                let (store, id) = (store.clone(), id.clone());
                let result = tokio::task::spawn_blocking(move || {
                    let r = store.append(&id, clone_events(&batch), offset);
                    (r, batch)
                })
                .await;
                match result {
                    Ok((Ok(stored), _)) => break stored,
                    Ok((Err(e), batch)) => {
                        tracing::error!(error = %e, "cannot store events; retrying");
                        events = Some(batch);
                        if self.daemon.shutdown.is_cancelled() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(_) => return,
                }
            }
        };
        for ev in stored {
            if let Some(hook) = &self.daemon.config.notify.hook
                && notable(&ev.json)
            {
                crate::hook::run(
                    hook.clone(),
                    self.daemon.clone(),
                    self.id.clone(),
                    ev.json.clone(),
                );
            }
            // No receivers is fine: nobody is attached.
            let _ = self.events.send(Arc::new(ev));
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.daemon.config.agent.cancel_grace_secs.max(0.1))
    }

    async fn store_sandbox_state(&self, persisted: serde_json::Value) {
        let (store, id) = (self.daemon.store.clone(), self.id.clone());
        let _ = tokio::task::spawn_blocking(move || store.set_sandbox_state(&id, &persisted)).await;
    }
}

fn clone_events(events: &[NewEvent]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            body: e.body.clone(),
            raw: e.raw.clone(),
        })
        .collect()
}

/// Events a user wants to hear about: a turn ended, the session failed or needs input.
fn notable(json: &str) -> bool {
    json.contains("\"type\":\"turn_result\"")
        || json.contains("\"state\":\"failed\"")
        || json.contains("\"state\":\"needs_input\"")
}

fn status(state: SessionState, reason: Option<String>) -> EventBody {
    EventBody::Status { state, reason }
}

async fn agent_wake(agent: Option<&mut Agent>) -> Wake {
    let Some(agent) = agent else {
        return std::future::pending().await;
    };
    tokio::select! {
        chunk = agent.log.next_chunk(IDLE_POLL) => Wake::Log(chunk),
        exit = &mut agent.exited => Wake::Exited(exit.unwrap_or(AgentExit { code: None, signal: None })),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
