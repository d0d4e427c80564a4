//! A session's handle: the commands its actor takes, and its live event broadcast. Cheap
//! to clone; everything that talks to a session goes through one.

use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{Secret, SessionState};
use harvest_store::StoredEvent;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

pub enum Command {
    Send {
        text: String,
        env: BTreeMap<String, Secret>,
        /// The queued message's id when it waits behind the running turn.
        reply: oneshot::Sender<Result<Option<String>, RpcError>>,
    },
    Withdraw {
        message: Option<String>,
        reply: oneshot::Sender<Result<Vec<String>, RpcError>>,
    },
    SendNow {
        message: Option<String>,
        reply: oneshot::Sender<Result<Vec<String>, RpcError>>,
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
    Changes {
        reply: oneshot::Sender<Result<Vec<harvest_sandbox::WorkspaceChange>, RpcError>>,
    },
    Pr {
        params: Box<harvest_protocol::methods::PrParams>,
        reply: oneshot::Sender<Result<harvest_protocol::methods::PrResult, RpcError>>,
    },
    Diff {
        stat: bool,
        reply: oneshot::Sender<Result<harvest_protocol::methods::DiffResult, RpcError>>,
    },
}

#[derive(Clone)]
pub struct SessionHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<Arc<StoredEvent>>,
    pub(super) state: Arc<std::sync::Mutex<SessionState>>,
    /// Why the actor cannot store right now (a full disk), while it retries.
    pub(super) stalled: Arc<std::sync::Mutex<Option<String>>>,
}

impl SessionHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.events.subscribe()
    }

    pub fn stalled(&self) -> Option<String> {
        self.stalled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

    /// Returns the queued message's id when it waits behind the running turn.
    pub async fn send(
        &self,
        text: String,
        env: BTreeMap<String, Secret>,
    ) -> Result<Option<String>, RpcError> {
        self.call(|reply| Command::Send { text, env, reply }).await
    }
    /// Take back queued messages (one by id, or all): their texts, oldest first.
    pub async fn withdraw(&self, message: Option<String>) -> Result<Vec<String>, RpcError> {
        self.call(|reply| Command::Withdraw { message, reply })
            .await
    }
    /// Queued messages (one by id, or all) to the running turn now: the ids sent.
    pub async fn send_now(&self, message: Option<String>) -> Result<Vec<String>, RpcError> {
        self.call(|reply| Command::SendNow { message, reply }).await
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
    /// What the agent changed in a remote workspace, against what was uploaded.
    pub async fn changes(&self) -> Result<Vec<harvest_sandbox::WorkspaceChange>, RpcError> {
        self.call(|reply| Command::Changes { reply }).await
    }
    /// Commit, push the branch and open its pull request.
    pub async fn pull_request(
        &self,
        params: harvest_protocol::methods::PrParams,
    ) -> Result<harvest_protocol::methods::PrResult, RpcError> {
        let params = Box::new(params);
        self.call(|reply| Command::Pr { params, reply }).await
    }
    /// The session's changes against the commit it started from.
    pub async fn diff(
        &self,
        stat: bool,
    ) -> Result<harvest_protocol::methods::DiffResult, RpcError> {
        self.call(|reply| Command::Diff { stat, reply }).await
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
        let stalled = |why: String| {
            RpcError::new(
                codes::STORE_FAILED,
                format!(
                    "the session cannot take this now: {why}. Nothing is lost (its agent's \
                     output waits in its log); free disk space and it goes on by itself"
                ),
            )
        };
        if let Some(why) = self.stalled() {
            return Err(stalled(why));
        }
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        // A caller never hangs on an actor that is stuck retrying a full store: it is told.
        let mut rx = rx;
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(500), &mut rx).await {
                Ok(r) => return r.map_err(|_| gone())?,
                Err(_) => {
                    if let Some(why) = self.stalled() {
                        return Err(stalled(why));
                    }
                }
            }
        }
    }
}
