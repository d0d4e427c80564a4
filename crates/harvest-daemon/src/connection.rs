//! One client connection over the Unix socket: JSON-RPC line framing with a size limit,
//! the `hello` gate, calls decoded through the method table and handled in order
//! ([`crate::dispatch`]), and a writer task that frames replies and subscription
//! deliveries, fed by bounded queues.

use crate::context::Daemon;
use crate::dispatch::{self, Session};
use crate::subscription::Delivery;
use harvest_protocol::MAX_FRAME_BYTES;
use harvest_protocol::methods::{Call, CallError, NOTIFY_EVENT, NOTIFY_LAGGED};
use harvest_protocol::rpc::{Request, RequestId, Response, RpcError, codes};
use interprocess::local_socket::tokio::Stream;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

/// Lines queued for one client. A client that stops reading fills it; then only that
/// client's calls and subscriptions wait (subscriptions fall behind the live broadcast
/// and re-sync from the store), never an agent or another client.
const OUTBOX: usize = 1024;

pub async fn run(daemon: Arc<Daemon>, stream: Stream) {
    let n = daemon.client_connected();
    tracing::debug!(clients = n, "client connected");
    let (recv, send) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUTBOX);
    let (deliveries, delivered) = mpsc::channel(OUTBOX);
    let writer = tokio::spawn(write_lines(send, rx, delivered));
    let mut conn = Connection {
        out: tx,
        session: Session::new(daemon.clone(), deliveries),
    };
    conn.read_loop(recv).await;
    drop(conn);
    let _ = writer.await;
    daemon.client_gone();
}

struct Connection {
    out: mpsc::Sender<String>,
    session: Session,
}

enum Frame {
    Line(Vec<u8>),
    TooLarge,
    /// The daemon-wide budget for unfinished lines is spent.
    Busy,
    Closed,
}

impl Connection {
    async fn read_loop(&mut self, recv: ReadHalf<Stream>) {
        let mut reader = BufReader::new(recv);
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut reader) => f,
                _ = self.session.daemon().shutdown.cancelled() => Frame::Closed,
            };
            match frame {
                Frame::Closed => return,
                Frame::Busy => {
                    let err = RpcError::new(
                        codes::TOO_MANY_CONNECTIONS,
                        "the daemon holds too much unfinished input from other connections; \
                         this line is refused and the connection closed, try again",
                    );
                    let _ = self.send(Response::err(None, err)).await;
                    return;
                }
                Frame::TooLarge => {
                    let err = RpcError::new(
                        codes::FRAME_TOO_LARGE,
                        format!(
                            "line longer than {MAX_FRAME_BYTES} bytes refused; the connection is closed"
                        ),
                    );
                    let _ = self.send(Response::err(None, err)).await;
                    return;
                }
                Frame::Line(line) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if let Some(resp) = self.handle_line(&line).await
                        && self.send(resp).await.is_err()
                    {
                        return;
                    }
                    self.session.replied();
                }
            }
        }
    }

    async fn send(&self, resp: Response) -> Result<(), ()> {
        let line = serde_json::to_string(&resp).map_err(|_| ())?;
        self.out.send(line).await.map_err(|_| ())
    }

    async fn handle_line(&mut self, line: &[u8]) -> Option<Response> {
        let value: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Some(Response::err(
                    None,
                    RpcError::new(codes::PARSE_ERROR, format!("not JSON: {e}")),
                ));
            }
        };
        let has_id = value.get("id").is_some();
        let id = value
            .get("id")
            .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
        let request: Request = match serde_json::from_value(value) {
            Ok(r) => r,
            // A notification (no id at all) from a client needs no answer; a request
            // whose id is not a number or string gets one, with a null id.
            Err(_) if !has_id => return None,
            Err(e) => {
                return Some(Response::err(
                    id,
                    RpcError::new(
                        codes::INVALID_REQUEST,
                        format!(
                            "not a JSON-RPC 2.0 request: {e}; `id` must be a number or a string"
                        ),
                    ),
                ));
            }
        };
        let id = request.id.clone();
        tracing::debug!(method = %request.method, "call");
        let call = match Call::parse(&request.method, request.params) {
            Ok(call) => call,
            Err(CallError::UnknownMethod(m)) => {
                return Some(Response::err(
                    Some(id),
                    RpcError::new(
                        codes::METHOD_NOT_FOUND,
                        format!(
                            "no method {m:?}; the methods are: {}",
                            harvest_protocol::methods::ALL.join(", ")
                        ),
                    ),
                ));
            }
            Err(e @ CallError::InvalidParams { .. }) => {
                return Some(Response::err(
                    Some(id),
                    RpcError::new(codes::INVALID_PARAMS, e.to_string()),
                ));
            }
        };
        Some(match dispatch::call(&mut self.session, call).await {
            Ok(result) => Response::ok(id, result),
            Err(err) => Response::err(Some(id), err),
        })
    }
}

/// Bytes of unfinished lines all connections together may hold beyond their first MiB
/// each: a peer that sends 15 MiB and stops cannot make forty of them cost 600 MB.
const BUFFERED_BUDGET_MIB: usize = 64;
static BUFFERED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BUFFERED_BUDGET_MIB);
const MIB: usize = 1024 * 1024;

/// Read one line, refusing it as soon as it passes the limit rather than after buffering
/// whatever the peer sends. Past its first MiB a line takes a share of a daemon-wide
/// budget, MiB by MiB; when the budget is spent the line is refused (only that
/// connection is closed), so small calls (`ls`, `send`) always get through.
async fn read_frame(reader: &mut BufReader<ReadHalf<Stream>>) -> Frame {
    let mut buf = Vec::new();
    let mut held = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) => {
                return if buf.is_empty() {
                    Frame::Closed
                } else {
                    // EOF in the middle of a line: take what came.
                    Frame::Line(buf)
                };
            }
            Ok(c) => c,
            Err(_) => return Frame::Closed,
        };
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        buf.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if buf.len() > MAX_FRAME_BYTES {
            return Frame::TooLarge;
        }
        while buf.len() > (held.len() + 1) * MIB {
            match BUFFERED.try_acquire() {
                Ok(permit) => held.push(permit),
                Err(_) => return Frame::Busy,
            }
        }
        if done {
            return Frame::Line(buf);
        }
    }
}

/// Replies and deliveries become JSON-RPC lines here, and only here.
async fn write_lines(
    send: WriteHalf<Stream>,
    mut replies: mpsc::Receiver<String>,
    mut deliveries: mpsc::Receiver<Delivery>,
) {
    // Write whatever is queued in one go: a replay of thousands of events then costs a
    // few syscalls, not one per event. Flushed whenever the queues run dry.
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, send);
    let mut open = (true, true);
    while open.0 || open.1 {
        // Replies first: a subscription's events never overtake its subscribe reply.
        let first = tokio::select! {
            biased;
            line = replies.recv(), if open.0 => match line {
                Some(l) => l,
                None => { open.0 = false; continue; }
            },
            d = deliveries.recv(), if open.1 => match d {
                Some(d) => frame(&d),
                None => { open.1 = false; continue; }
            },
        };
        let mut next = Some(first);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).await.is_err() || out.write_all(b"\n").await.is_err()
            {
                return;
            }
            next = replies
                .try_recv()
                .ok()
                .or_else(|| deliveries.try_recv().ok().map(|d| frame(&d)));
        }
        if out.flush().await.is_err() {
            return;
        }
        // The connection's reader has gone: replies are over, and so is everything else.
        if !open.0 {
            break;
        }
    }
    let _ = out.shutdown().await;
}

/// A delivery as a JSON-RPC notification, built around the stored JSON so replay never
/// re-serialises an event.
fn frame(d: &Delivery) -> String {
    match d {
        Delivery::Event {
            subscription,
            event,
            include_raw,
        } => format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"{NOTIFY_EVENT}\",\"params\":{{\"subscription\":{subscription},\"event\":{}}}}}",
            event.to_json(*include_raw)
        ),
        Delivery::Lagged {
            subscription,
            next_seq,
        } => serde_json::json!({
            "jsonrpc": "2.0",
            "method": NOTIFY_LAGGED,
            "params": harvest_protocol::methods::LaggedNotification {
                subscription: *subscription,
                next_seq: *next_seq,
            },
        })
        .to_string(),
        Delivery::Progress { session, message } => serde_json::json!({
            "jsonrpc": "2.0",
            "method": harvest_protocol::methods::NOTIFY_PROGRESS,
            "params": harvest_protocol::methods::ProgressNotification {
                session: session.clone(),
                message: message.clone(),
            },
        })
        .to_string(),
    }
}
