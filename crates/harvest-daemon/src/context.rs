//! What every connection and session actor shares.

use crate::session::SessionHandle;
use harvest_config::{Config, Paths};
use harvest_protocol::SessionId;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_sandbox::Provider;
use harvest_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The sandbox providers of this daemon, by kind. Each session records its kind and is
/// created, adopted, stopped and removed by that provider.
#[derive(Default)]
pub struct Providers {
    by_kind: Vec<Arc<dyn Provider>>,
}

impl Providers {
    pub fn add(&mut self, provider: Arc<dyn Provider>) {
        self.by_kind.push(provider);
    }

    pub fn get(&self, kind: &str) -> Result<Arc<dyn Provider>, RpcError> {
        self.by_kind
            .iter()
            .find(|p| p.kind() == kind)
            .cloned()
            .ok_or_else(|| {
                RpcError::new(
                    codes::SANDBOX_UNAVAILABLE,
                    format!(
                        "sandbox {kind:?} is not available in this daemon; available: {}",
                        self.kinds().join(", ")
                    ),
                )
            })
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.by_kind.iter().map(|p| p.kind()).collect()
    }

    pub fn all(&self) -> Vec<Arc<dyn Provider>> {
        self.by_kind.clone()
    }
}

/// The daemon's shared services. The session registry lives beside them (`sessions`),
/// reached only through the methods below.
pub struct Daemon {
    pub paths: Paths,
    pub config: Config,
    pub store: Arc<Store>,
    pub providers: Providers,
    pub started: Instant,
    /// Cancelled by `daemon/stop` or a signal: the accept loop and every actor stop.
    pub shutdown: CancellationToken,
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
    /// Slots for running turns when `agent.max_running_sessions` is set.
    pub running_slots: Option<Arc<tokio::sync::Semaphore>>,
    clients: AtomicU64,
    next_subscription: AtomicU64,
}

impl Daemon {
    pub fn new(paths: Paths, config: Config, store: Arc<Store>, providers: Providers) -> Self {
        let running_slots = (config.agent.max_running_sessions > 0).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                config.agent.max_running_sessions,
            ))
        });
        Daemon {
            running_slots,
            paths,
            config,
            store,
            providers,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            sessions: Mutex::new(HashMap::new()),
            clients: AtomicU64::new(0),
            next_subscription: AtomicU64::new(1),
        }
    }

    pub fn register(&self, id: SessionId, handle: SessionHandle) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handle);
    }

    pub fn unregister(&self, id: &SessionId) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub fn handles(&self) -> Vec<SessionHandle> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Find a session by id or unambiguous id prefix.
    pub fn resolve(&self, key: &str) -> Result<(SessionId, SessionHandle), RpcError> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, h)) = sessions.get_key_value(&SessionId::from(key)) {
            return Ok((id.clone(), h.clone()));
        }
        let matches: Vec<_> = if key.is_empty() {
            Vec::new()
        } else {
            sessions
                .iter()
                .filter(|(id, _)| id.as_str().starts_with(key))
                .collect()
        };
        match matches.as_slice() {
            [(id, h)] => Ok(((*id).clone(), (*h).clone())),
            [] => Err(RpcError::new(
                codes::SESSION_NOT_FOUND,
                format!("no session {key:?}; `harvest ls` lists the sessions"),
            )),
            many => Err(RpcError::new(
                codes::SESSION_AMBIGUOUS,
                format!(
                    "{key:?} matches {} sessions ({}); give more of the id",
                    many.len(),
                    many.iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    pub fn client_connected(&self) -> u64 {
        self.clients.fetch_add(1, Ordering::Relaxed) + 1
    }
    pub fn client_gone(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn clients(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }
    pub fn next_subscription(&self) -> u64 {
        self.next_subscription.fetch_add(1, Ordering::Relaxed)
    }
}
