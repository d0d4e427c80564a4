//! The client facade: every front end (the CLI commands, the TUI) reaches the daemon only
//! through [`Client`].
//!
//! Transport: one Unix-socket connection, JSON-RPC 2.0 lines. A reader task routes
//! responses to their callers and notifications (subscription events) to a bounded queue;
//! when the caller reads notifications slowly, the queue fills, the socket backs up, and
//! the daemon re-syncs that subscription from its store: nothing is lost and the daemon
//! never waits. Errors keep "could not reach", "the daemon said no" and "could not decode"
//! apart so callers can choose to retry, report, or treat it as a bug.

mod autostart;
pub mod mcp_trust;

use harvest_config::Paths;
use harvest_protocol::methods::{self as m, Method};
use harvest_protocol::rpc::{Incoming, Notification, RequestId, RpcError};
use harvest_protocol::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use interprocess::local_socket::GenericFilePath;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

pub use autostart::connect_or_start;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the harvest daemon at {socket} ({source}); start it with \
         `harvest daemon`, or see its log in {log_dir}"
    )]
    Connect {
        socket: PathBuf,
        log_dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the harvest daemon did not start: {0}")]
    Start(String),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the daemon sent something this client cannot read: {0}")]
    Decode(String),
    #[error("the connection to the daemon closed")]
    Closed,
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Result<serde_json::Value, RpcError>>>>>;
/// How the connection ended, once it has: `closed`, and what the daemon said if anything.
#[derive(Default)]
struct Ended {
    closed: bool,
    error: Option<RpcError>,
}
type Fatal = Arc<Mutex<Ended>>;

/// Notifications are queued up to this many; then the reader waits for the caller.
const NOTIFICATIONS: usize = 8192;

pub struct Client {
    writer: tokio::sync::Mutex<WriteHalf<Stream>>,
    pending: Pending,
    /// What the daemon said to the connection as a whole before closing it (refused,
    /// frame too large): told to calls that would otherwise only learn "closed".
    fatal: Fatal,
    next_id: AtomicI64,
    notifications: Option<mpsc::Receiver<Notification>>,
    pub daemon: m::HelloResult,
}

impl Client {
    /// Connect to a running daemon and say hello.
    pub async fn connect(paths: &Paths, client_name: &str) -> Result<Client, ClientError> {
        let connect_err = |source| ClientError::Connect {
            socket: paths.socket.clone(),
            log_dir: paths.log_dir(),
            source,
        };
        let name = paths
            .socket
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(connect_err)?;
        let stream = Stream::connect(name).await.map_err(connect_err)?;
        Self::handshake(stream, client_name).await
    }

    async fn handshake(stream: Stream, client_name: &str) -> Result<Client, ClientError> {
        let (recv, send) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let fatal: Fatal = Arc::default();
        let (tx, notifications) = mpsc::channel(NOTIFICATIONS);
        tokio::spawn(read_loop(recv, pending.clone(), fatal.clone(), tx));
        let mut client = Client {
            writer: tokio::sync::Mutex::new(send),
            pending,
            fatal,
            next_id: AtomicI64::new(1),
            notifications: Some(notifications),
            daemon: m::HelloResult {
                protocol: 0,
                daemon_version: String::new(),
                pid: 0,
            },
        };
        client.daemon = client
            .call::<m::Hello>(m::HelloParams {
                protocol: PROTOCOL_VERSION,
                client: client_name.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await?;
        Ok(client)
    }

    /// Call a method and wait for its result.
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": M::NAME, "params": params,
        });
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        // Checked after the insert: the reader marks the end before it clears the waiters,
        // so a waiter inserted after the clear sees the mark here.
        if self
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed
        {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return Err(self.ended());
        }
        let mut line = request.to_string();
        line.push('\n');
        let written = self.writer.lock().await.write_all(line.as_bytes()).await;
        if written.is_err() {
            // The daemon closed the connection; the reader may still be reading why.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rx).await;
            return Err(self.ended());
        }
        let value = rx.await.map_err(|_| self.ended())??;
        serde_json::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Why calls fail now that the connection is gone.
    fn ended(&self) -> ClientError {
        match &self
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error
        {
            Some(e) => ClientError::Rpc(e.clone()),
            None => ClientError::Closed,
        }
    }

    /// The next notification (subscription events); `None` when the connection closed
    /// (or the receiver was taken).
    pub async fn next_notification(&mut self) -> Option<Notification> {
        self.notifications.as_mut()?.recv().await
    }

    /// The next notification, decoded: a subscription's event, a lag notice, or another
    /// notification as it came. `None` when the connection closed.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        self.next_notification().await.map(Delivery::decode)
    }

    /// Take the notification queue, to read it in one task while calls go out from
    /// another (`call` needs only `&self`).
    pub fn take_notifications(&mut self) -> Option<mpsc::Receiver<Notification>> {
        self.notifications.take()
    }

    /// Give back a queue taken with [`Client::take_notifications`].
    pub fn restore_notifications(&mut self, queue: mpsc::Receiver<Notification>) {
        self.notifications = Some(queue);
    }
}

/// A notification as front ends use it: typed, so no front end parses the wire.
#[derive(Debug)]
pub enum Delivery {
    Event {
        subscription: u64,
        event: Box<harvest_protocol::Event>,
    },
    /// The subscription fell behind; events from `next_seq` follow from the store.
    Lagged {
        subscription: u64,
        next_seq: harvest_protocol::Seq,
    },
    /// A notification this client does not know (a newer daemon's), or an event it could
    /// not decode: kept as it came.
    Other(Notification),
}

impl Delivery {
    pub fn decode(n: Notification) -> Delivery {
        use harvest_protocol::methods::{
            EventNotification, LaggedNotification, NOTIFY_EVENT, NOTIFY_LAGGED,
        };
        use serde::Deserialize;
        match n.method.as_str() {
            // Read from the tree in place (no copy of the whole tree first).
            NOTIFY_EVENT => match EventNotification::deserialize(&n.params) {
                Ok(e) => Delivery::Event {
                    subscription: e.subscription,
                    event: Box::new(e.event),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable event");
                    Delivery::Other(n)
                }
            },
            NOTIFY_LAGGED => match LaggedNotification::deserialize(&n.params) {
                Ok(l) => Delivery::Lagged {
                    subscription: l.subscription,
                    next_seq: l.next_seq,
                },
                Err(_) => Delivery::Other(n),
            },
            _ => Delivery::Other(n),
        }
    }
}

async fn read_loop(
    recv: ReadHalf<Stream>,
    pending: Pending,
    fatal: Fatal,
    notifications: mpsc::Sender<Notification>,
) {
    let mut reader = BufReader::new(recv);
    loop {
        let mut buf = Vec::new();
        let limit = MAX_FRAME_BYTES as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.len() as u64 >= limit && buf.last() != Some(&b'\n') {
            // A reply this client cannot take: skip the rest of it, and tell every caller
            // still waiting (we cannot know whose it was) instead of leaving them hanging.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                match (&mut reader).take(limit).read_until(b'\n', &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if sink.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            let waiters: Vec<_> = pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .collect();
            for (_, w) in waiters {
                let _ = w.send(Err(RpcError::new(
                    harvest_protocol::rpc::codes::FRAME_TOO_LARGE,
                    format!(
                        "the daemon's reply was larger than {MAX_FRAME_BYTES} bytes and was dropped; \
                         ask for less (a page of events, one session)"
                    ),
                )));
            }
            continue;
        }
        match serde_json::from_slice::<Incoming>(&buf) {
            Ok(Incoming::Response(resp)) => {
                let Some(RequestId::Number(id)) = resp.id else {
                    if let Some(err) = resp.error {
                        // Said to the connection as a whole (refused, frame too large):
                        // every caller waiting hears it, rather than "closed".
                        tracing::warn!(%err, "daemon error without a request id");
                        fatal.lock().unwrap_or_else(PoisonError::into_inner).error =
                            Some(err.clone());
                        let waiters: Vec<_> = pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .drain()
                            .collect();
                        for (_, w) in waiters {
                            let _ = w.send(Err(err.clone()));
                        }
                    }
                    continue;
                };
                let waiter = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let result = match resp.error {
                        Some(e) => Err(e),
                        None => Ok(resp.result.unwrap_or(serde_json::Value::Null)),
                    };
                    let _ = waiter.send(result);
                }
            }
            Ok(Incoming::Notification(n)) => {
                if notifications.send(n).await.is_err() {
                    // Nobody reads notifications; responses still matter.
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "unreadable line from the daemon"),
        }
    }
    // Wake every caller still waiting: the connection is gone. Marked first (see `call`).
    fatal.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
