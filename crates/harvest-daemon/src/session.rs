//! Sessions: a handle per session (commands in, events out) and the actor behind it.

mod actor;
pub mod handle;
mod lines;
mod setup;
pub mod spec;

use crate::context::Daemon;
use harvest_protocol::{SessionId, SessionState};
use harvest_sandbox::Provider;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

pub use actor::Actor;
pub use handle::SessionHandle;
pub use setup::{Live, Setup};
pub use spec::{Checkpoint, SessionSpec};

/// How many events a live subscriber may fall behind before it re-syncs from the store.
const LIVE_BUFFER: usize = 4096;
/// Commands queued for one session; callers wait when it is full (they are clients,
/// which can afford to), the agent's output never does.
const COMMANDS: usize = 64;

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
    let stalled = Arc::new(std::sync::Mutex::new(None));
    let handle = SessionHandle {
        commands,
        events: events.clone(),
        state: shared_state.clone(),
        stalled: stalled.clone(),
    };
    daemon.sessions.register(setup.id.clone(), handle.clone());
    if let Some(hook) = daemon.config.notify.hook.clone() {
        crate::hook::subscribe(hook, daemon.clone(), setup.id.clone(), handle.subscribe());
    }
    let actor = Actor::new(
        daemon.clone(),
        provider,
        setup,
        events,
        shared_state,
        stalled,
    );
    tokio::spawn(actor.run(rx, live));
    handle
}

/// At start, before the socket answers: give every stored session an actor, so every
/// session is known to the first call. Each actor then finds its own sandbox and agent
/// again on its own task (concurrently with the others, and before it takes any command),
/// so a daemon with many sessions answers at once. A session whose agent still runs, or
/// left output unread, is re-adopted: its log is read on from the committed checkpoint.
/// One whose sandbox or agent is gone is marked `interrupted`.
///
/// Returns what is left to do once the socket answers: removing sessions a dead daemon
/// left half-made (`creating`) and sandboxes that no session owns.
pub fn restore_all(daemon: &Arc<Daemon>, rows: Vec<harvest_store::SessionRow>) -> Cleanup {
    let known: std::collections::HashSet<String> =
        rows.iter().map(|r| r.info.id.as_str().to_owned()).collect();
    let mut half_made = Vec::new();
    for row in rows {
        if row.info.state == SessionState::Creating {
            // Its creator was told it failed (the daemon died under the call), so nobody
            // knows this session: remove it with whatever sandbox it got.
            half_made.push(row);
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
    Cleanup { known, half_made }
}

/// The part of the start that may run while clients are served.
pub struct Cleanup {
    known: std::collections::HashSet<String>,
    half_made: Vec<harvest_store::SessionRow>,
}

impl Cleanup {
    pub async fn run(self, daemon: &Arc<Daemon>) {
        for row in &self.half_made {
            discard_half_made(daemon, row).await;
        }
        reconcile(daemon, &self.known).await;
    }
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

/// `daemon/stop`: every actor ends (stopping its agent and recording why only with
/// `end_sessions`).
pub async fn shutdown_all(daemon: &Arc<Daemon>) {
    // The actors stop concurrently, each on the shutdown token; this only waits for all of
    // them to have finished (each closes its command channel), within a bound.
    let handles = daemon.sessions.handles();
    let all_closed = async {
        for h in &handles {
            h.commands.closed().await;
        }
    };
    let deadline =
        std::time::Duration::from_secs_f64(daemon.config.agent.cancel_grace_secs * 2.0 + 2.0);
    let _ = tokio::time::timeout(deadline, all_closed).await;
}
