//! One client connection: line framing with a size limit, the `hello` gate, dispatch of
//! calls in order, and a writer task fed by a bounded queue.

use crate::context::Daemon;
use crate::{create, subscription};
use harvest_protocol::methods::{self as m, Method};
use harvest_protocol::rpc::{Request, RequestId, Response, RpcError, codes};
use harvest_protocol::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use interprocess::local_socket::tokio::Stream;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Lines queued for one client. A client that stops reading fills it; then only that
/// client's calls and subscriptions wait (subscriptions fall behind the live broadcast
/// and re-sync from the store), never an agent or another client.
const OUTBOX: usize = 1024;

pub type Outbox = mpsc::Sender<String>;

pub async fn run(daemon: Arc<Daemon>, stream: Stream) {
    let n = daemon.client_connected();
    tracing::debug!(clients = n, "client connected");
    let (recv, send) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUTBOX);
    let writer = tokio::spawn(write_lines(send, rx));
    let mut conn = Connection {
        daemon: daemon.clone(),
        out: tx,
        greeted: false,
        subscriptions: HashMap::new(),
    };
    conn.read_loop(recv).await;
    for (_, task) in conn.subscriptions.drain() {
        task.abort();
    }
    drop(conn);
    let _ = writer.await;
    daemon.client_gone();
}

struct Connection {
    daemon: Arc<Daemon>,
    out: Outbox,
    greeted: bool,
    subscriptions: HashMap<u64, AbortHandle>,
}

enum Frame {
    Line(Vec<u8>),
    TooLarge,
    Closed,
}

impl Connection {
    async fn read_loop(&mut self, recv: ReadHalf<Stream>) {
        let mut reader = BufReader::new(recv);
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut reader) => f,
                _ = self.daemon.shutdown.cancelled() => Frame::Closed,
            };
            match frame {
                Frame::Closed => return,
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
        let id = value
            .get("id")
            .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
        let request: Request = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                // A notification (no id) from a client needs no answer.
                return id.map(|id| {
                    Response::err(
                        Some(id),
                        RpcError::new(
                            codes::INVALID_REQUEST,
                            format!("not a JSON-RPC 2.0 request: {e}"),
                        ),
                    )
                });
            }
        };
        let id = request.id.clone();
        tracing::debug!(method = %request.method, "call");
        Some(match self.dispatch(request).await {
            Ok(result) => Response::ok(id, result),
            Err(err) => Response::err(Some(id), err),
        })
    }

    async fn dispatch(&mut self, req: Request) -> Result<Value, RpcError> {
        if req.method == m::Hello::NAME {
            let p: m::HelloParams = params(req.params)?;
            if p.protocol != PROTOCOL_VERSION {
                return Err(RpcError::new(
                    codes::VERSION_MISMATCH,
                    format!(
                        "this daemon speaks protocol {PROTOCOL_VERSION}, the client {} ({} {}); \
                         restart the daemon with `harvest daemon stop` so the new one starts",
                        p.protocol, p.client, p.version
                    ),
                ));
            }
            self.greeted = true;
            return reply(m::HelloResult {
                protocol: PROTOCOL_VERSION,
                daemon_version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
            });
        }
        if !self.greeted {
            return Err(RpcError::new(
                codes::HELLO_REQUIRED,
                format!(
                    "call hello first: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\
                     \"params\":{{\"protocol\":{PROTOCOL_VERSION},\"client\":\"me\",\"version\":\"0\"}}}}"
                ),
            ));
        }
        let d = &self.daemon;
        if d.shutdown.is_cancelled() {
            return Err(RpcError::new(
                codes::SHUTTING_DOWN,
                "the daemon is shutting down; the next harvest command starts a new one",
            ));
        }
        match req.method.as_str() {
            m::SessionCreate::NAME => reply(create::create(d, params(req.params)?).await?),
            m::SessionList::NAME => reply(m::SessionListResult {
                sessions: create::list(d).await?,
            }),
            m::SessionGet::NAME => {
                let p: m::SessionRef = params(req.params)?;
                let (id, _) = d.resolve(&p.session)?;
                reply(create::info(d, &id).await?)
            }
            m::SessionSubscribe::NAME => {
                let p: m::SubscribeParams = params(req.params)?;
                let (result, task) = subscription::start(d, p, self.out.clone()).await?;
                self.subscriptions.insert(result.subscription, task);
                reply(result)
            }
            m::SessionEvents::NAME => {
                let p: m::EventsParams = params(req.params)?;
                let (id, _) = d.resolve(&p.session)?;
                reply(crate::create::events(d, &id, p).await?)
            }
            m::SessionUnsubscribe::NAME => {
                let p: m::UnsubscribeParams = params(req.params)?;
                match self.subscriptions.remove(&p.subscription) {
                    Some(task) => {
                        task.abort();
                        reply(m::Empty {})
                    }
                    None => Err(RpcError::new(
                        codes::INVALID_PARAMS,
                        format!("no subscription {} on this connection", p.subscription),
                    )),
                }
            }
            m::SessionSend::NAME => {
                let p: m::SendParams = params(req.params)?;
                let (_, h) = d.resolve(&p.session)?;
                h.send(p.text, p.env).await?;
                reply(m::Empty {})
            }
            m::SessionCancel::NAME => {
                let p: m::SessionRef = params(req.params)?;
                d.resolve(&p.session)?.1.cancel().await?;
                reply(m::Empty {})
            }
            m::SessionStop::NAME => {
                let p: m::SessionRef = params(req.params)?;
                d.resolve(&p.session)?.1.stop().await?;
                reply(m::Empty {})
            }
            m::SessionResume::NAME => {
                let p: m::ResumeParams = params(req.params)?;
                d.resolve(&p.session)?.1.resume(p.env).await?;
                reply(m::Empty {})
            }
            m::SessionFork::NAME => reply(create::fork(d, params(req.params)?).await?),
            m::SessionApprove::NAME => {
                let p: m::ApproveParams = params(req.params)?;
                d.resolve(&p.session)?.1.approve(p).await?;
                reply(m::Empty {})
            }
            m::SessionRename::NAME => {
                let p: m::RenameParams = params(req.params)?;
                let (id, _) = d.resolve(&p.session)?;
                let name = p.name.trim().to_owned();
                if name.is_empty() {
                    return Err(RpcError::new(
                        codes::INVALID_PARAMS,
                        "a session name cannot be empty",
                    ));
                }
                crate::create::rename(d, &id, name).await?;
                reply(crate::create::info(d, &id).await?)
            }
            m::SessionRemove::NAME => {
                let p: m::SessionRef = params(req.params)?;
                d.resolve(&p.session)?.1.remove().await?;
                reply(m::Empty {})
            }
            m::DaemonStatus::NAME => reply(create::status(d).await?),
            m::DaemonStop::NAME => {
                d.shutdown.cancel();
                reply(m::Empty {})
            }
            other => Err(RpcError::new(
                codes::METHOD_NOT_FOUND,
                format!(
                    "no method {other:?}; the methods are: {}",
                    m::ALL.join(", ")
                ),
            )),
        }
    }
}

fn params<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, RpcError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v)
        .map_err(|e| RpcError::new(codes::INVALID_PARAMS, format!("invalid params: {e}")))
}

fn reply<T: serde::Serialize>(v: T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))
}

/// Read one line, refusing it as soon as it passes the limit rather than after buffering
/// whatever the peer sends.
async fn read_frame(reader: &mut BufReader<ReadHalf<Stream>>) -> Frame {
    let mut buf = Vec::new();
    let limit = MAX_FRAME_BYTES as u64 + 1;
    match (&mut *reader).take(limit).read_until(b'\n', &mut buf).await {
        Ok(0) => Frame::Closed,
        Ok(_) if buf.last() == Some(&b'\n') => Frame::Line(buf),
        Ok(_) if buf.len() as u64 >= limit => Frame::TooLarge,
        // EOF in the middle of a line: take what came.
        Ok(_) => Frame::Line(buf),
        Err(_) => Frame::Closed,
    }
}

async fn write_lines(send: WriteHalf<Stream>, mut rx: mpsc::Receiver<String>) {
    // Write whatever is queued in one go: a replay of thousands of events then costs a
    // few syscalls, not one per event. Flushed whenever the queue runs dry.
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, send);
    while let Some(line) = rx.recv().await {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).await.is_err() || out.write_all(b"\n").await.is_err()
            {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}
