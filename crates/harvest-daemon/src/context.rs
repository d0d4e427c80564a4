//! What every connection and session actor shares.

use crate::registry::Registry;
use harvest_config::{Config, Paths};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_sandbox::Provider;
use harvest_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The daemon's shared services, and the registry of live sessions beside them.
pub struct Daemon {
    pub paths: Paths,
    pub config: Config,
    pub store: Arc<Store>,
    pub providers: Providers,
    pub started: Instant,
    /// Cancelled by `daemon/stop` or a signal: the accept loop and every actor stop.
    pub shutdown: CancellationToken,
    /// On shutdown, stop the agents too (`daemon stop --end-sessions`); otherwise they run
    /// on and the next daemon takes them up again.
    pub end_agents: std::sync::atomic::AtomicBool,
    /// The live sessions, by id.
    pub sessions: Registry,
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
            end_agents: std::sync::atomic::AtomicBool::new(false),
            sessions: Registry::default(),
            clients: AtomicU64::new(0),
            next_subscription: AtomicU64::new(1),
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
