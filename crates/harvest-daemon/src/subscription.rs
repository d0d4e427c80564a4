//! `session/subscribe`: stored events from `from_seq`, then live ones, with no gap and no
//! duplicate.
//!
//! The live receiver is taken *before* the store is read, so an event committed during the
//! replay is either in the replay or in the live queue (or both: live events at or below
//! the last sent seq are skipped). The live queue is a bounded broadcast: a subscriber that
//! falls behind is told (`subscription/lagged`) and re-reads the missed events from the
//! store, so a slow client costs only itself.

use crate::context::Daemon;
use harvest_protocol::methods::{self as m, SubscribeParams};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{Seq, SessionId};
use harvest_store::{Store, StoredEvent};
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Events read from the store per page of a replay.
const PAGE: usize = 2000;

/// What a subscription yields, for a transport to frame (JSON-RPC notifications on the
/// socket; SSE with `id:` = seq for a gateway).
#[derive(Debug)]
pub enum Delivery {
    Event {
        subscription: u64,
        event: Arc<StoredEvent>,
        include_raw: bool,
    },
    /// The subscriber fell behind; the events from `next_seq` follow from the store.
    Lagged { subscription: u64, next_seq: Seq },
    /// How far the making of a sandbox this connection asked for is.
    Progress { session: String, message: String },
}

/// Where deliveries go; bounded, so a client that stops reading holds back only itself.
pub type Sink = mpsc::Sender<Delivery>;

/// Start a subscription. Its deliveries begin once `go` fires: the transport fires it after
/// it has queued the subscribe reply, so a client always learns the subscription id before
/// the first event that carries it.
pub async fn start(
    daemon: &Arc<Daemon>,
    p: SubscribeParams,
    out: Sink,
    go: tokio::sync::oneshot::Receiver<()>,
) -> Result<(m::SubscribeResult, AbortHandle), RpcError> {
    let (id, handle) = daemon.sessions.resolve(&p.session)?;
    let live = handle.subscribe();
    let store = daemon.store.clone();
    let last_seq = {
        let (store, id) = (store.clone(), id.clone());
        tokio::task::spawn_blocking(move || store.session(&id))
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?
            .map_err(|e| RpcError::new(codes::STORE_FAILED, e.to_string()))?
            .map(|row| row.info.last_seq)
            .unwrap_or_default()
    };
    let subscription = daemon.next_subscription();
    let from = Seq(p.from_seq.0.max(1));
    let task = tokio::spawn(forward(
        Sub {
            id: subscription,
            session: id.clone(),
            include_raw: p.include_raw,
        },
        from,
        store,
        live,
        out,
        go,
    ));
    Ok((
        m::SubscribeResult {
            subscription,
            session: id,
            last_seq,
        },
        task.abort_handle(),
    ))
}

/// Who a forwarder sends to, and in which form.
struct Sub {
    id: u64,
    session: SessionId,
    include_raw: bool,
}

async fn forward(
    sub: Sub,
    mut next: Seq,
    store: Arc<Store>,
    mut live: broadcast::Receiver<Arc<StoredEvent>>,
    out: Sink,
    go: tokio::sync::oneshot::Receiver<()>,
) {
    // The live receiver exists already (no event is missed); sending waits for the reply.
    let _ = go.await;
    let session = sub.session.clone();
    loop {
        // Catch up from the store.
        loop {
            let page = {
                let (store, session) = (store.clone(), session.clone());
                tokio::task::spawn_blocking(move || store.read_from(&session, next, PAGE)).await
            };
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, %session, "replay failed");
                    return;
                }
                Err(_) => return,
            };
            let Some(last) = page.last() else { break };
            next = last.seq.next();
            let full = page.len() >= PAGE;
            for ev in page.into_iter() {
                if out.send(sub.event(Arc::new(ev))).await.is_err() {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        // Live, until a gap sends us back to the store.
        loop {
            match live.recv().await {
                Ok(ev) if ev.seq < next => continue,
                Ok(ev) if ev.seq == next => {
                    next = next.next();
                    if out.send(sub.event(ev)).await.is_err() {
                        return;
                    }
                }
                // A gap: events were committed that we have not seen; read them.
                Ok(_) => break,
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(%session, sub = sub.id, missed, "subscriber lagged; re-syncing from the store");
                    let notice = Delivery::Lagged {
                        subscription: sub.id,
                        next_seq: next,
                    };
                    if out.send(notice).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(RecvError::Closed) => {
                    // The session's actor ended (removed, daemon stopping): send what the
                    // store still has, then end the subscription.
                    if let Ok(Ok(rest)) = {
                        let (store, session) = (store.clone(), session.clone());
                        tokio::task::spawn_blocking(move || {
                            store.read_from(&session, next, usize::MAX)
                        })
                        .await
                    } {
                        for ev in rest {
                            let _ = out.send(sub.event(Arc::new(ev))).await;
                        }
                    }
                    return;
                }
            }
        }
    }
}

impl Sub {
    fn event(&self, event: Arc<StoredEvent>) -> Delivery {
        Delivery::Event {
            subscription: self.id,
            event,
            include_raw: self.include_raw,
        }
    }
}
