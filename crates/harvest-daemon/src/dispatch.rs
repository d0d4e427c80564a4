//! The daemon's calls, transport aside: a [`Session`] is one client's state (greeted, its
//! subscriptions), and [`call`] serves one decoded call. The method table's `Call` enum is
//! matched exhaustively, and each answer is typed by its method's result. The socket
//! connection frames what comes out; another transport would frame the same.

use crate::context::Daemon;
use crate::create;
use crate::subscription::{self, Delivery};
use harvest_protocol::PROTOCOL_VERSION;
use harvest_protocol::methods::{self as m, Call, Method, result_of};
use harvest_protocol::rpc::{RpcError, codes};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// One client's side of the protocol.
pub struct Session {
    daemon: Arc<Daemon>,
    greeted: bool,
    subscriptions: HashMap<u64, AbortHandle>,
    deliveries: mpsc::Sender<Delivery>,
    /// Subscriptions whose reply is not yet queued: released by [`Session::replied`].
    waiting: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Session {
    pub fn new(daemon: Arc<Daemon>, deliveries: mpsc::Sender<Delivery>) -> Session {
        Session {
            daemon,
            greeted: false,
            subscriptions: HashMap::new(),
            deliveries,
            waiting: Vec::new(),
        }
    }

    /// The transport has queued the reply to the last call: subscriptions it started may
    /// deliver now.
    pub fn replied(&mut self) {
        for go in self.waiting.drain(..) {
            let _ = go.send(());
        }
    }

    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
    }
}

fn answer<M: Method>(r: M::Result) -> Result<Value, RpcError> {
    result_of::<M>(r).map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))
}

pub async fn call(s: &mut Session, call: Call) -> Result<Value, RpcError> {
    if let Call::Hello(p) = &call {
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
        s.greeted = true;
        return answer::<m::Hello>(m::HelloResult {
            protocol: PROTOCOL_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        });
    }
    if !s.greeted {
        return Err(RpcError::new(
            codes::HELLO_REQUIRED,
            format!(
                "call hello first: {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\
                 \"params\":{{\"protocol\":{PROTOCOL_VERSION},\"client\":\"me\",\"version\":\"0\"}}}}"
            ),
        ));
    }
    let d = &s.daemon.clone();
    if d.shutdown.is_cancelled() {
        return Err(RpcError::new(
            codes::SHUTTING_DOWN,
            "the daemon is shutting down; the next harvest command starts a new one",
        ));
    }
    let sessions = &d.sessions;
    match call {
        Call::Hello(_) => unreachable_hello(),
        Call::SessionCreate(p) => {
            // Progress of a long sandbox step goes to this connection only, as it waits;
            // dropped rather than waited for when the client reads nothing.
            let sink = s.deliveries.clone();
            let progress = move |session: &str| {
                let sink = sink.clone();
                let session = session.to_owned();
                harvest_sandbox::Progress::new(move |message: &str| {
                    let _ = sink.try_send(Delivery::Progress {
                        session: session.clone(),
                        message: message.to_owned(),
                    });
                })
            };
            answer::<m::SessionCreate>(create::create(d, p, &progress).await?)
        }
        Call::SessionList(_) => answer::<m::SessionList>(m::SessionListResult {
            sessions: create::list(d).await?,
        }),
        Call::SessionGet(p) => {
            let (id, _) = sessions.resolve(&p.session)?;
            answer::<m::SessionGet>(create::info(d, &id).await?)
        }
        Call::SessionSubscribe(p) => {
            let (go, wait) = tokio::sync::oneshot::channel();
            let (result, task) = subscription::start(d, p, s.deliveries.clone(), wait).await?;
            s.subscriptions.insert(result.subscription, task);
            s.waiting.push(go);
            answer::<m::SessionSubscribe>(result)
        }
        Call::SessionEvents(p) => {
            let (id, _) = sessions.resolve(&p.session)?;
            answer::<m::SessionEvents>(create::events(d, &id, p).await?)
        }
        Call::SessionUnsubscribe(p) => match s.subscriptions.remove(&p.subscription) {
            Some(task) => {
                task.abort();
                answer::<m::SessionUnsubscribe>(m::Empty {})
            }
            None => Err(RpcError::new(
                codes::INVALID_PARAMS,
                format!("no subscription {} on this connection", p.subscription),
            )),
        },
        Call::SessionSend(p) => {
            let (_, h) = sessions.resolve(&p.session)?;
            let queued = h.send(p.text, crate::policy::forwarded(d, p.env)).await?;
            answer::<m::SessionSend>(m::SendResult { queued })
        }
        Call::SessionWithdraw(p) => {
            let texts = sessions.resolve(&p.session)?.1.withdraw(p.message).await?;
            answer::<m::SessionWithdraw>(m::WithdrawResult { texts })
        }
        Call::SessionSendNow(p) => {
            let sent = sessions.resolve(&p.session)?.1.send_now(p.message).await?;
            answer::<m::SessionSendNow>(m::SendNowResult { sent })
        }
        Call::SessionCancel(p) => {
            sessions.resolve(&p.session)?.1.cancel().await?;
            answer::<m::SessionCancel>(m::Empty {})
        }
        Call::SessionStop(p) => {
            sessions.resolve(&p.session)?.1.stop().await?;
            answer::<m::SessionStop>(m::Empty {})
        }
        Call::SessionResume(p) => {
            sessions
                .resolve(&p.session)?
                .1
                .resume(crate::policy::forwarded(d, p.env))
                .await?;
            answer::<m::SessionResume>(m::Empty {})
        }
        Call::SessionFork(p) => answer::<m::SessionFork>(create::fork(d, p).await?),
        Call::SessionApprove(p) => {
            sessions.resolve(&p.session)?.1.approve(p).await?;
            answer::<m::SessionApprove>(m::Empty {})
        }
        Call::SessionRename(p) => {
            let (id, _) = sessions.resolve(&p.session)?;
            let name: String = p.name.trim().chars().take(create::NAME_CHARS).collect();
            if name.is_empty() {
                return Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    "a session name cannot be empty",
                ));
            }
            create::rename(d, &id, name).await?;
            answer::<m::SessionRename>(create::info(d, &id).await?)
        }
        Call::SessionRemove(p) => {
            sessions.resolve(&p.session)?.1.remove().await?;
            answer::<m::SessionRemove>(m::Empty {})
        }
        Call::SessionReadFile(p) => {
            let (_, h) = sessions.resolve(&p.session)?;
            let limit = p.limit.unwrap_or(m::READ_FILE_MAX).min(m::READ_FILE_MAX);
            // One byte more than asked tells whether the file goes on.
            let bytes = h.read_file(p.path.into(), limit + 1).await?;
            let truncated = bytes.len() as u64 > limit;
            let end = bytes
                .len()
                .min(usize::try_from(limit).unwrap_or(usize::MAX));
            answer::<m::SessionReadFile>(m::ReadFileResult {
                text: String::from_utf8_lossy(&bytes[..end]).into_owned(),
                truncated,
            })
        }
        Call::SessionChanges(p) => {
            let (id, h) = sessions.resolve(&p.session)?;
            let changes = h.changes().await?;
            answer::<m::SessionChanges>(crate::create::changes_result(d, &id, changes).await?)
        }
        Call::SessionDiff(p) => {
            let (_, h) = sessions.resolve(&p.session)?;
            answer::<m::SessionDiff>(h.diff(p.stat).await?)
        }
        Call::SessionPr(p) => {
            let (_, h) = sessions.resolve(&p.session)?;
            answer::<m::SessionPr>(h.pull_request(p).await?)
        }
        Call::DaemonStatus(_) => answer::<m::DaemonStatus>(create::status(d).await?),
        Call::DaemonStop(p) => {
            d.end_agents
                .store(p.end_sessions, std::sync::atomic::Ordering::SeqCst);
            d.shutdown.cancel();
            answer::<m::DaemonStop>(m::Empty {})
        }
    }
}

/// `hello` is answered before the match; reaching it there would be a bug, answered as one.
fn unreachable_hello() -> Result<Value, RpcError> {
    Err(RpcError::new(codes::INTERNAL, "hello handled twice"))
}
