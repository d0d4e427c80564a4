//! The HTTP side: routes, recording, and the server's lifetime.

use crate::body::{ChannelBody, Chunk};
use crate::request::{Conversation, RecordedRequest};
use crate::script::Script;
use crate::sse;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the scripted model cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the scripted model's runtime failed to start: {0}")]
    Runtime(std::io::Error),
}

struct Shared {
    script: Script,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A running scripted model server. Dropping it stops the server.
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelServer {
    /// Serve on `addr` (port 0 picks a free port) on the current tokio runtime.
    pub async fn start(script: Script, addr: SocketAddr) -> Result<ModelServer, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(ModelServer {
            addr,
            shared,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Serve on 127.0.0.1 with a runtime of its own, for synchronous tests and benches.
    pub fn spawn_in_thread(script: Script) -> Result<ModelServer, ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                match ModelServer::start(script, ([127, 0, 0, 1], 0).into()).await {
                    Ok(server) => {
                        let _ = tx.send(Ok((server.addr, server.shared.clone())));
                        // Serve until the owner stops us or goes away; dropping `server`
                        // then stops its accept loop.
                        let _ = stopped.await;
                        drop(server);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, shared) = rx
            .recv()
            .map_err(|e| ServerError::Runtime(std::io::Error::other(e)))??;
        Ok(ModelServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "scripted model: accept failed");
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Reply = Response<http_body_util::Either<http_body_util::Full<Bytes>, ChannelBody>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = req.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let recorded = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        headers,
        body: body.clone(),
    };
    let is_get_requests = method == "GET" && path == "/_scripted/requests";
    if !is_get_requests {
        shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }

    if is_get_requests {
        let list: Vec<Value> = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| json!({"method": r.method, "path": r.path, "headers": r.headers, "body": r.body}))
            .collect();
        return Ok(full(
            StatusCode::OK,
            "application/json",
            Value::Array(list).to_string(),
        ));
    }
    let post = method == "POST";
    if post && path == "/v1/messages/count_tokens" {
        let estimate = bytes.len() / 4;
        return Ok(full(
            StatusCode::OK,
            "application/json",
            json!({"input_tokens": estimate}).to_string(),
        ));
    }
    if !(post && path == "/v1/messages") {
        return Ok(api_error(
            404,
            "not_found_error",
            &format!(
                "scripted model: no route {method} {path} (it serves POST /v1/messages, \
                 POST /v1/messages/count_tokens and GET /_scripted/requests)"
            ),
        ));
    }
    Ok(messages(&shared.script, &body).await)
}

async fn messages(script: &Script, body: &Value) -> Reply {
    let conv = Conversation::read(body);
    let model = body["model"]
        .as_str()
        .unwrap_or("scripted-model")
        .to_owned();
    let prompt = conv.prompt.clone().unwrap_or_default();
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let step = match script.step_for(&prompt, conv.tool_results_after_prompt) {
        Ok(step) => step.clone(),
        Err(explanation) => {
            tracing::warn!(%explanation, "scripted model: the script has no answer");
            crate::script::Step {
                text: Some(explanation),
                ..Default::default()
            }
        }
    };
    tracing::debug!(
        prompt = %prompt,
        tool_results = conv.tool_results_after_prompt,
        streaming,
        "scripted model: answering"
    );
    if step.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
    }
    if let Some(err) = &step.error {
        return api_error(err.status, &err.kind, &err.message);
    }
    let blocks = sse::blocks(&step, conv.cwd.as_deref());
    if !streaming {
        return full(
            StatusCode::OK,
            "application/json",
            sse::message(&model, &blocks, step.usage).to_string(),
        );
    }
    let events = sse::events(&model, &blocks, step.usage);
    let (tx, rx) = mpsc::channel(64);
    let delay = Duration::from_millis(step.chunk_delay_ms);
    let break_stream = step.break_stream;
    tokio::spawn(async move {
        for (name, data) in events {
            let is_delta = name == "content_block_delta";
            if is_delta && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let frame = format!("event: {name}\ndata: {data}\n\n");
            if tx.send(Chunk::Data(Bytes::from(frame))).await.is_err() {
                return; // the client went away (an interrupt)
            }
            if is_delta && break_stream {
                // Break after the first delta: message_start and part of the first block
                // are out. Let them reach the client first: hyper drops unflushed frames
                // when a body fails.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Chunk::Break).await;
                return;
            }
        }
    });
    let mut resp = Response::new(http_body_util::Either::Right(ChannelBody::new(rx)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

fn full(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut resp = Response::new(http_body_util::Either::Left(http_body_util::Full::new(
        Bytes::from(body),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn api_error(status: u16, kind: &str, message: &str) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    full(
        status,
        "application/json",
        json!({"type":"error","error":{"type":kind,"message":message}}).to_string(),
    )
}
