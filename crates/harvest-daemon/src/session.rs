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
}

pub enum Command {
    /// The creator already sent the first prompt: count its turn.
    CountTurn,
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

    pub fn count_turn(&self) {
        let _ = self.commands.try_send(Command::CountTurn);
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
}

/// Start the actor of a session; `live` is its sandbox and agent when it has them.
pub fn spawn(
    daemon: &Arc<Daemon>,
    setup: Setup,
    live: Option<(Box<dyn Sandbox>, AgentProcess)>,
) -> SessionHandle {
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

/// At start: give every stored session an actor. A session that was live when the last
/// daemon died is marked `interrupted`; its conversation resumes with the next message.
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
        let id = row.info.id.clone();
        let state = row.info.state;
        if !state.is_terminal() {
            actor::end_orphan(&row.sandbox_state);
        }
        // The actor records an interruption itself when it starts.
        let setup = Setup {
            id,
            spec,
            state,
            secrets: BTreeMap::new(),
            conversation_started: row.info.agent_session_id.is_some(),
        };
        spawn(daemon, setup, None);
    }
    Ok(())
}

/// `daemon/stop`: every actor stops its agent and records why.
pub async fn shutdown_all(daemon: &Arc<Daemon>) {
    let waits: Vec<_> = daemon
        .handles()
        .into_iter()
        .map(|h| async move { h.commands.closed().await })
        .collect();
    let deadline =
        std::time::Duration::from_secs_f64(daemon.config.agent.cancel_grace_secs * 2.0 + 2.0);
    let _ = tokio::time::timeout(deadline, futures_join_all(waits)).await;
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    for f in futs {
        f.await;
    }
}
