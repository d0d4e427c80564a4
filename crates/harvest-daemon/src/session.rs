//! Sessions: a handle per session (commands in, events out) and the actor behind it.

mod actor;
mod lines;

use crate::context::Daemon;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{Secret, SessionId, SessionState};
use harvest_sandbox::{AgentProcess, Sandbox};

use harvest_store::{StoreError, StoredEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use actor::Actor;

/// How many events a live subscriber may fall behind before it re-syncs from the store.
const LIVE_BUFFER: usize = 4096;
/// Commands queued for one session; callers wait when it is full (they are clients,
/// which can afford to), the agent's output never does.
const COMMANDS: usize = 64;

/// What a session was created with, minus secrets; stored as the session's `spec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSpec {
    pub workspace: PathBuf,
    #[serde(default)]
    pub repo: Option<String>,
    /// The workspace was cloned by Harvest and is removed with the session.
    #[serde(default)]
    pub owns_workspace: bool,
    #[serde(default)]
    pub model: Option<String>,
    /// The CLI's conversation id, chosen up front so it can always be resumed.
    pub agent_session_id: String,
    pub claude: PathBuf,
    #[serde(default)]
    pub permissions: harvest_agent::Permissions,
    /// A fork not started yet: its first agent resumes this conversation as a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_from: Option<String>,
}

pub enum Command {
    Send {
        text: String,
        env: BTreeMap<String, Secret>,
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
    Cancel {
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
    Stop {
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
    Resume {
        env: BTreeMap<String, Secret>,
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
    Approve {
        params: harvest_protocol::methods::ApproveParams,
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
    Remove {
        reply: oneshot::Sender<Result<(), RpcError>>,
    },
}

#[derive(Clone)]
pub struct SessionHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    state: Arc<std::sync::Mutex<SessionState>>,
}

impl SessionHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.events.subscribe()
    }

    pub fn is_running(&self) -> bool {
        matches!(
            *self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            SessionState::Running | SessionState::Cancelling
        )
    }

    pub async fn send(&self, text: String, env: BTreeMap<String, Secret>) -> Result<(), RpcError> {
        self.call(|reply| Command::Send { text, env, reply }).await
    }
    pub async fn cancel(&self) -> Result<(), RpcError> {
        self.call(|reply| Command::Cancel { reply }).await
    }
    pub async fn stop(&self) -> Result<(), RpcError> {
        self.call(|reply| Command::Stop { reply }).await
    }
    pub async fn resume(&self, env: BTreeMap<String, Secret>) -> Result<(), RpcError> {
        self.call(|reply| Command::Resume { env, reply }).await
    }
    pub async fn approve(
        &self,
        params: harvest_protocol::methods::ApproveParams,
    ) -> Result<(), RpcError> {
        self.call(|reply| Command::Approve { params, reply }).await
    }
    pub async fn remove(&self) -> Result<(), RpcError> {
        self.call(|reply| Command::Remove { reply }).await
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), RpcError>>) -> Command,
    ) -> Result<(), RpcError> {
        let gone = || {
            RpcError::new(
                codes::SESSION_NOT_FOUND,
                "the session has just been removed",
            )
        };
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// What an actor starts from.
pub struct Setup {
    pub id: SessionId,
    pub spec: SessionSpec,
    pub state: SessionState,
    /// Credentials for the agent, in memory only.
    pub secrets: BTreeMap<String, Secret>,
    /// The CLI has already created the conversation (so a restart resumes it).
    pub conversation_started: bool,
    /// What the session's turns have cost so far.
    pub spent_usd: f64,
}

/// The CLI's options for a session's agent: how it asks, its model, its limits. `spent` is
/// what the session has cost so far, so the CLI's own budget is what is left.
pub fn claude_options(
    daemon: &Daemon,
    spec: &SessionSpec,
    resume: bool,
    spent: f64,
) -> harvest_agent::ClaudeOptions {
    let cfg = &daemon.config.agent;
    let fork = !resume && spec.fork_from.is_some();
    harvest_agent::ClaudeOptions {
        permissions: spec.permissions,
        model: spec.model.clone(),
        resume: if fork {
            spec.fork_from.clone()
        } else {
            resume.then(|| spec.agent_session_id.clone())
        },
        fork,
        session_id: (!resume && !fork).then(|| spec.agent_session_id.clone()),
        max_retries: Some(cfg.max_retries),
        append_system_prompt: None,
        max_turns: (cfg.max_turns > 0).then_some(cfg.max_turns),
        max_budget_usd: (cfg.max_budget_usd > 0.0).then(|| (cfg.max_budget_usd - spent).max(0.0)),
    }
}

/// What a session's sandbox is made (or found again) from: the same for a new session, a
/// resumed one and a re-adopted one.
pub fn sandbox_spec(
    daemon: &Daemon,
    id: &SessionId,
    spec: &SessionSpec,
) -> harvest_sandbox::SandboxSpec {
    harvest_sandbox::SandboxSpec {
        state_dir: daemon.paths.session_state_dir(id.as_str()),
        workspace: spec.workspace.clone(),
        hidden: crate::create::hidden_paths(daemon, &spec.workspace),
        agent_binary: spec.claude.clone(),
        network: daemon.config.sandbox.network,
    }
}

/// A running agent handed to an actor: just started, or found again after a restart.
pub struct Live {
    pub sandbox: Box<dyn Sandbox>,
    pub process: AgentProcess,
    /// Where ingestion continues in the agent log.
    pub offset: u64,
    /// The parser's state for this process so far (tool names, running cost).
    pub parser: harvest_agent::StreamParser,
    /// Turns begun and not yet ended.
    pub pending_turns: u32,
    /// Permission requests the agent still waits on: (request id, tool, input).
    pub pending_permissions: Vec<(String, String, serde_json::Value)>,
}

/// Start the actor of a session; `live` is its sandbox and agent when it has them.
pub fn spawn(daemon: &Arc<Daemon>, setup: Setup, live: Option<Live>) -> SessionHandle {
    let (commands, rx) = mpsc::channel(COMMANDS);
    let (events, _) = broadcast::channel(LIVE_BUFFER);
    let shared_state = Arc::new(std::sync::Mutex::new(setup.state));
    let handle = SessionHandle {
        commands,
        events: events.clone(),
        state: shared_state.clone(),
    };
    daemon.register(setup.id.clone(), handle.clone());
    let actor = Actor::new(daemon.clone(), setup, events, shared_state);
    tokio::spawn(actor.run(rx, live));
    handle
}

/// At start: give every stored session an actor. A session whose agent still runs (the
/// last daemon died, the agent did not) is re-adopted: its log is read on from the stored
/// offset and the turn completes as if nothing happened. One whose agent is gone is marked
/// `interrupted` by its actor; the next message resumes the conversation.
pub async fn restore_all(daemon: &Arc<Daemon>) -> Result<(), StoreError> {
    let store = daemon.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.sessions())
        .await
        .map_err(|e| StoreError::Encode(serde_json::Error::io(std::io::Error::other(e))))??;
    for row in rows {
        let Ok(spec) = serde_json::from_value::<SessionSpec>(row.spec.clone()) else {
            tracing::warn!(session = %row.info.id, "session has an unreadable spec; skipped");
            continue;
        };
        let live = if row.info.state.is_terminal() {
            None
        } else {
            match adopt(daemon, &row, &spec).await {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(session = %row.info.id, error = %e, "cannot re-adopt the agent");
                    None
                }
            }
        };
        if live.is_some() {
            tracing::info!(session = %row.info.id, "re-adopted a running agent");
        }
        let setup = Setup {
            id: row.info.id.clone(),
            spec,
            state: row.info.state,
            secrets: BTreeMap::new(),
            conversation_started: row.info.agent_session_id.is_some(),
            spent_usd: row.info.cost_usd,
        };
        spawn(daemon, setup, live);
    }
    Ok(())
}

async fn adopt(
    daemon: &Arc<Daemon>,
    row: &harvest_store::SessionRow,
    spec: &SessionSpec,
) -> Result<Option<Live>, harvest_sandbox::SandboxError> {
    let sandbox_spec = sandbox_spec(daemon, &row.info.id, spec);
    let Some(found) = daemon
        .provider
        .adopt(&sandbox_spec, &row.sandbox_state)
        .await?
    else {
        return Ok(None);
    };
    // Rebuild what the parser knew about this process from its output so far.
    let mut parser = harvest_agent::StreamParser::new();
    let (start, end) = (found.process.log_start, row.log_offset);
    if start < end {
        let mut log = found.process.control.open_log(start)?;
        let mut lines = lines::LineBuffer::default();
        let mut pos = start;
        while pos < end {
            let chunk = log.next_chunk(std::time::Duration::from_millis(10)).await?;
            if chunk.is_empty() {
                break;
            }
            let take = chunk.len().min((end - pos) as usize);
            for line in lines.push(&chunk[..take]) {
                let _ = parser.parse_line(&line);
            }
            pos += take as u64;
        }
    }
    let (store, id) = (daemon.store.clone(), row.info.id.clone());
    let (balance, waiting) = tokio::task::spawn_blocking(move || {
        (store.turn_balance(&id), store.unanswered_permissions(&id))
    })
    .await
    .unwrap_or((Ok((0, 0)), Ok(Vec::new())));
    let (users, turns) = balance.unwrap_or((0, 0));
    let pending_permissions = waiting
        .unwrap_or_default()
        .iter()
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .map(|ev| {
            (
                ev["request_id"].as_str().unwrap_or("").to_owned(),
                ev["tool"].as_str().unwrap_or("").to_owned(),
                ev["input"].clone(),
            )
        })
        .collect();
    Ok(Some(Live {
        sandbox: found.sandbox,
        process: found.process,
        offset: end,
        parser,
        pending_turns: u32::try_from(users.saturating_sub(turns)).unwrap_or(u32::MAX),
        pending_permissions,
    }))
}

/// `daemon/stop`: every actor stops its agent and records why.
pub async fn shutdown_all(daemon: &Arc<Daemon>) {
    // The actors stop concurrently, each on the shutdown token; this only waits for all of
    // them to have finished (each closes its command channel), within a bound.
    let handles = daemon.handles();
    let all_closed = async {
        for h in &handles {
            h.commands.closed().await;
        }
    };
    let deadline =
        std::time::Duration::from_secs_f64(daemon.config.agent.cancel_grace_secs * 2.0 + 2.0);
    let _ = tokio::time::timeout(deadline, all_closed).await;
}
