//! Sessions: a handle per session (commands in, events out) and the actor behind it.

mod actor;
mod lines;

use crate::context::Daemon;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{Secret, SessionId, SessionState};
use harvest_sandbox::{AgentProcess, LogPosition, Provider, Sandbox, WorkspaceSource};

use harvest_store::StoredEvent;
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
    /// The workspace on this machine, when it is on this machine (for `ls` and hidden
    /// paths); what the sandbox works on is [`SessionSpec::workspace_source`].
    pub workspace: PathBuf,
    #[serde(default)]
    pub repo: Option<String>,
    /// The workspace was made by Harvest (a clone, a fork's copy) and goes with the session.
    #[serde(default)]
    pub owns_workspace: bool,
    /// Where the workspace comes from (absent in sessions stored before providers had
    /// sources; derived from the fields above then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<WorkspaceSource>,
    #[serde(default)]
    pub model: Option<String>,
    /// The CLI's conversation id, chosen up front so it can always be resumed.
    pub agent_session_id: String,
    /// The host's claude CLI, for providers that need one; `None` when the sandbox brings
    /// its own.
    #[serde(default)]
    pub claude: Option<PathBuf>,
    #[serde(default)]
    pub permissions: harvest_agent::Permissions,
    /// A fork not started yet: its first agent resumes this conversation as a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_from: Option<String>,
}

impl SessionSpec {
    pub fn workspace_source(&self) -> WorkspaceSource {
        match (&self.source, self.owns_workspace) {
            (Some(s), _) => s.clone(),
            (None, true) => WorkspaceSource::Owned {
                path: self.workspace.clone(),
            },
            (None, false) => WorkspaceSource::Folder {
                path: self.workspace.clone(),
            },
        }
    }
}

/// A permission request the agent waits on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingPermission {
    pub request_id: String,
    pub tool: String,
    pub input: serde_json::Value,
}

/// The ingestion checkpoint, committed with the events it covers (in the same
/// transaction): where in which log ingestion stands, and everything the actor derived from
/// the lines before that point. A restarted daemon starts from it as it is: nothing is
/// re-read and nothing is recounted from the session's history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub at: LogPosition,
    #[serde(default)]
    pub parser: harvest_agent::StreamParser,
    /// Turns the agent has begun and not yet ended.
    #[serde(default)]
    pub pending_turns: u32,
    #[serde(default)]
    pub pending_permissions: Vec<PendingPermission>,
    /// Tools the user allowed for the rest of the session.
    #[serde(default)]
    pub always_allowed: Vec<String>,
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
    ReadFile {
        path: PathBuf,
        limit: u64,
        reply: oneshot::Sender<Result<Vec<u8>, RpcError>>,
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
    /// A file as the agent sees it, read inside its sandbox (never from host paths).
    pub async fn read_file(&self, path: PathBuf, limit: u64) -> Result<Vec<u8>, RpcError> {
        self.call(|reply| Command::ReadFile { path, limit, reply })
            .await
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, RpcError>>) -> Command,
    ) -> Result<T, RpcError> {
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
    /// A stored session to find again (its sandbox and agent) before anything else.
    pub restore: Option<harvest_store::SessionRow>,
}

/// A running agent handed to an actor: just started, or found again after a restart.
pub struct Live {
    pub sandbox: Box<dyn Sandbox>,
    pub process: AgentProcess,
    pub checkpoint: Checkpoint,
}

/// Start the actor of a session; `live` is its sandbox and agent when it has them. The
/// session's provider is the one of the kind it was created with.
pub fn spawn(
    daemon: &Arc<Daemon>,
    provider: Arc<dyn Provider>,
    setup: Setup,
    live: Option<Live>,
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
    let actor = Actor::new(daemon.clone(), provider, setup, events, shared_state);
    tokio::spawn(actor.run(rx, live));
    handle
}

/// At start, once the socket answers: give every stored session an actor. Each actor finds
/// its own sandbox and agent again (concurrently with the others, and before it takes any
/// command), so a daemon with many sessions answers at once. A session whose agent still
/// runs, or left output unread, is re-adopted: its log is read on from the committed
/// checkpoint. One whose sandbox or agent is gone is marked `interrupted`.
///
/// `rows` are read before the socket is bound, so no session a client creates meanwhile is
/// among them (a `creating` row here is one a dead daemon left).
pub async fn restore_all(daemon: &Arc<Daemon>, rows: Vec<harvest_store::SessionRow>) {
    let known: std::collections::HashSet<String> =
        rows.iter().map(|r| r.info.id.as_str().to_owned()).collect();
    for row in rows {
        if row.info.state == SessionState::Creating {
            // Its creator was told it failed (the daemon died under the call), so nobody
            // knows this session: remove it with whatever sandbox it got.
            discard_half_made(daemon, &row).await;
            continue;
        }
        let Ok(spec) = serde_json::from_value::<SessionSpec>(row.spec.clone()) else {
            tracing::warn!(session = %row.info.id, "session has an unreadable spec; skipped");
            continue;
        };
        let setup = Setup {
            id: row.info.id.clone(),
            spec,
            state: row.info.state,
            secrets: BTreeMap::new(),
            conversation_started: row.info.agent_session_id.is_some(),
            spent_usd: row.info.cost_usd,
            restore: Some(row.clone()),
        };
        match daemon.providers.get(&row.info.sandbox) {
            Ok(provider) => {
                spawn(daemon, provider, setup, None);
            }
            Err(e) => {
                tracing::warn!(session = %row.info.id, error = %e.message, "session's sandbox kind is not available; not restored");
            }
        }
    }
    reconcile(daemon, &known).await;
}

async fn discard_half_made(daemon: &Arc<Daemon>, row: &harvest_store::SessionRow) {
    tracing::warn!(session = %row.info.id, "removing a session that was being created when the daemon stopped");
    if let Ok(provider) = daemon.providers.get(&row.info.sandbox)
        && let Err(e) = provider.remove_orphan(row.info.id.as_str()).await
    {
        tracing::warn!(session = %row.info.id, error = %e, "its sandbox was not removed");
    }
    let (store, id) = (daemon.store.clone(), row.info.id.clone());
    let _ = tokio::task::spawn_blocking(move || store.delete_session(&id)).await;
}

/// Sandboxes that no stored session owns (a crash between making one and recording it, a
/// removal cut short) are removed, and said so in the log.
async fn reconcile(daemon: &Arc<Daemon>, known: &std::collections::HashSet<String>) {
    for provider in daemon.providers.all() {
        let held = match provider.list().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(provider = provider.kind(), error = %e, "cannot list sandboxes");
                continue;
            }
        };
        for session in held.into_iter().filter(|s| !known.contains(s)) {
            // Asked again now: a session created since the list was read is stored before
            // its sandbox is made, so it is found here and left alone.
            let (store, sid) = (daemon.store.clone(), SessionId::from(session.as_str()));
            if !matches!(
                tokio::task::spawn_blocking(move || store.session(&sid)).await,
                Ok(Ok(None))
            ) {
                continue;
            }
            tracing::warn!(
                provider = provider.kind(),
                session,
                "removing a sandbox that no session owns"
            );
            if let Err(e) = provider.remove_orphan(&session).await {
                tracing::warn!(provider = provider.kind(), session, error = %e, "orphan sandbox not removed");
            }
        }
    }
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
