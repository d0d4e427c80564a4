//! The toolbox under `/toolbox/{id}` (reference §3): one-shot execute, sessions with
//! async commands, their logs (JSON, or a WebSocket that replays from byte 0 and follows),
//! input, and delete. Paths and processes are the sandbox's own (see `jail`).

use crate::errors;
use crate::session::{Command, STDERR, STDOUT, Session};
use crate::state::{Fault, Sandbox, Shared, lock};
use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn not_found(path: &str, method: &str, what: &str) -> Response {
    errors::toolbox(
        StatusCode::NOT_FOUND,
        path,
        method,
        format!("not found: {what} not found"),
    )
}

fn session(s: &Sandbox, sid: &str) -> Option<Arc<Session>> {
    s.sessions().get(sid).cloned()
}

#[derive(Deserialize)]
pub struct ExecuteBody {
    command: String,
    cwd: Option<String>,
    envs: Option<std::collections::BTreeMap<String, String>>,
    timeout: Option<u64>,
}

pub async fn execute(sandbox: Arc<Sandbox>, body: ExecuteBody) -> Response {
    let path = "/process/execute";
    if body.command.trim().is_empty() {
        return errors::toolbox(StatusCode::BAD_REQUEST, path, "POST", "empty command");
    }
    let cwd = crate::jail::absolute(body.cwd.as_deref().unwrap_or(""));
    // stdout and stderr merged, as the daemon answers (§3.4).
    let script = format!("exec 2>&1\n{}", body.command);
    let envs = body.envs.unwrap_or_default();
    let mut child = match sandbox.jail.spawn(&cwd, &script, &[], &envs) {
        Ok(c) => c,
        Err(e) => return Json(json!({"exitCode": -1, "result": e.to_string()})).into_response(),
    };
    drop(child.stdin.take());
    let wait = async {
        let mut out = Vec::new();
        if let Some(mut so) = child.stdout.take() {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut so, &mut out).await;
        }
        let status = child.wait().await;
        (out, status)
    };
    let timeout = body.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, wait).await {
            Ok(r) => r,
            Err(_) => {
                return errors::toolbox(
                    StatusCode::REQUEST_TIMEOUT,
                    path,
                    "POST",
                    "command execution timeout",
                );
            }
        },
        None => wait.await,
    };
    let (out, status) = result;
    let code = status.ok().and_then(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().or_else(|| s.signal().map(|n| 128 + n))
    });
    Json(json!({"exitCode": code.unwrap_or(-1), "result": String::from_utf8_lossy(&out)}))
        .into_response()
}

pub async fn create_session(sandbox: Arc<Sandbox>, body: Value) -> Response {
    let path = "/process/session";
    let Some(sid) = body["sessionId"].as_str().filter(|s| !s.is_empty()) else {
        return errors::toolbox(
            StatusCode::BAD_REQUEST,
            path,
            "POST",
            "sessionId is required",
        );
    };
    if sid == "entrypoint" {
        return errors::toolbox(
            StatusCode::BAD_REQUEST,
            path,
            "POST",
            "session id entrypoint is reserved",
        );
    }
    let mut sessions = sandbox.sessions();
    if sessions.contains_key(sid) {
        return errors::toolbox(
            StatusCode::CONFLICT,
            path,
            "POST",
            "conflict: session already exists",
        );
    }
    sessions.insert(sid.to_owned(), Arc::new(Session::new(sid.to_owned())));
    StatusCode::CREATED.into_response()
}

fn command_json(c: &Command) -> Value {
    let mut v = json!({"id": c.id, "command": c.command});
    if let Some(code) = c.exit_code() {
        v["exitCode"] = json!(code);
    }
    v
}

fn session_json(s: &Session) -> Value {
    let commands: Vec<Value> = lock(&s.commands).iter().map(|c| command_json(c)).collect();
    json!({"sessionId": s.id, "commands": commands})
}

pub async fn list_sessions(sandbox: Arc<Sandbox>) -> Response {
    let all: Vec<Value> = sandbox
        .sessions()
        .values()
        .map(|s| session_json(s))
        .collect();
    Json(Value::Array(all)).into_response()
}

pub async fn get_session(sandbox: Arc<Sandbox>, sid: &str) -> Response {
    match session(&sandbox, sid) {
        Some(s) => Json(session_json(&s)).into_response(),
        None => not_found(&format!("/process/session/{sid}"), "GET", "session"),
    }
}

pub async fn session_exec(sandbox: Arc<Sandbox>, sid: &str, body: Value) -> Response {
    let path = format!("/process/session/{sid}/exec");
    let Some(sess) = session(&sandbox, sid) else {
        return not_found(&path, "POST", "session");
    };
    let Some(command) = body["command"].as_str().filter(|c| !c.trim().is_empty()) else {
        return errors::empty(StatusCode::BAD_REQUEST);
    };
    let run_async = body["runAsync"]
        .as_bool()
        .or(body["async"].as_bool())
        .unwrap_or(false);
    let suppress = body["suppressInputEcho"].as_bool().unwrap_or(false);
    let cmd = sess.exec(sandbox.jail.clone(), command.to_owned(), suppress);
    if run_async {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"cmdId": cmd.id, "output": null, "stdout": null, "stderr": null, "exitCode": null})),
        )
            .into_response();
    }
    while !cmd.finished.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if sess.deleted.load(Ordering::SeqCst) {
        return errors::toolbox(StatusCode::BAD_REQUEST, &path, "POST", "session cancelled");
    }
    let log = cmd.log_from(0, usize::MAX);
    let (out, err) = split(&log);
    Json(json!({
        "cmdId": cmd.id, "output": String::from_utf8_lossy(&log),
        "stdout": String::from_utf8_lossy(&out), "stderr": String::from_utf8_lossy(&err),
        "exitCode": cmd.exit_code(),
    }))
    .into_response()
}

/// The log split by its markers.
pub fn split(log: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for line in log.split_inclusive(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(STDOUT) {
            out.extend_from_slice(rest);
        } else if let Some(rest) = line.strip_prefix(STDERR) {
            err.extend_from_slice(rest);
        }
    }
    (out, err)
}

fn find_command(
    sandbox: &Sandbox,
    sid: &str,
    cid: &str,
) -> Result<(Arc<Session>, Arc<Command>), &'static str> {
    let sess = session(sandbox, sid).ok_or("session")?;
    let cmd = sess.command(cid).ok_or("command")?;
    Ok((sess, cmd))
}

pub async fn get_command(sandbox: Arc<Sandbox>, sid: &str, cid: &str) -> Response {
    match find_command(&sandbox, sid, cid) {
        Ok((_, c)) => Json(command_json(&c)).into_response(),
        Err(what) => not_found(
            &format!("/process/session/{sid}/command/{cid}"),
            "GET",
            what,
        ),
    }
}

#[derive(Deserialize, Default)]
pub struct LogsQuery {
    follow: Option<bool>,
}

pub async fn logs(
    fake: Shared,
    sandbox: Arc<Sandbox>,
    sid: &str,
    cid: &str,
    q: LogsQuery,
    headers: &HeaderMap,
    ws: Option<WebSocketUpgrade>,
) -> Response {
    let (sess, cmd) = match find_command(&sandbox, sid, cid) {
        Ok(found) => found,
        Err(what) => {
            return not_found(
                &format!("/process/session/{sid}/command/{cid}/logs"),
                "GET",
                what,
            );
        }
    };
    if let (Some(ws), Some(true)) = (ws, q.follow) {
        let drop_after = fake
            .take_fault(|f| matches!(f, Fault::DropWs { .. }))
            .and_then(|f| match f {
                Fault::DropWs { after_bytes, .. } => Some(after_bytes),
                _ => None,
            });
        let opts = fake.opts();
        let f = fake.clone();
        return ws
            .on_upgrade(move |socket| {
                follow(
                    f,
                    socket,
                    sess,
                    cmd,
                    (opts.frame_bytes, opts.close_after),
                    drop_after,
                )
            })
            .into_response();
    }
    let log = cmd.log_from(0, usize::MAX);
    if headers.get("x-daytona-sdk-version").is_none() {
        // Without the header the daemon strips markers and combines the streams (§3.3).
        let (out, err) = split(&log);
        let mut all = out;
        all.extend(err);
        return ([("content-type", "text/plain")], all).into_response();
    }
    let (out, err) = split(&log);
    Json(json!({
        "output": String::from_utf8_lossy(&log),
        "stdout": String::from_utf8_lossy(&out),
        "stderr": String::from_utf8_lossy(&err),
    }))
    .into_response()
}

/// The follow WebSocket (§3.5.1): the log from byte 0 in binary frames, then new bytes as
/// they come (polled every 20 ms); once the command has ended and nothing came for
/// `close_after`, Close 1000. A drop fault cuts the connection without a close frame.
async fn follow(
    fake: Shared,
    mut socket: WebSocket,
    sess: Arc<Session>,
    cmd: Arc<Command>,
    (frame, close_after): (usize, Duration),
    drop_after: Option<usize>,
) {
    let mut sent = 0usize;
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_millis(20);
    loop {
        if fake.out() {
            tracing::info!("fault: an outage cuts a log WebSocket");
            return;
        }
        let mut chunk = cmd.log_from(sent, frame.max(1));
        if let Some(limit) = drop_after {
            if sent >= limit {
                tracing::info!("fault: dropping a log WebSocket after {sent} bytes");
                return;
            }
            chunk.truncate(limit - sent);
        }
        if !chunk.is_empty() {
            sent += chunk.len();
            quiet = Duration::ZERO;
            if socket.send(Message::Binary(chunk.into())).await.is_err() {
                return;
            }
            continue;
        }
        let ended = cmd.finished.load(Ordering::SeqCst) || sess.deleted.load(Ordering::SeqCst);
        if ended && (quiet >= close_after || sess.deleted.load(Ordering::SeqCst)) {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => { if ended { quiet += tick; } }
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

pub async fn input(sandbox: Arc<Sandbox>, sid: &str, cid: &str, body: Value) -> Response {
    let path = format!("/process/session/{sid}/command/{cid}/input");
    let (_, cmd) = match find_command(&sandbox, sid, cid) {
        Ok(found) => found,
        Err(what) => return not_found(&path, "POST", what),
    };
    let Some(data) = body["data"].as_str() else {
        return errors::toolbox(StatusCode::BAD_REQUEST, &path, "POST", "data is required");
    };
    match cmd.input(data).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(code) => errors::toolbox(
            StatusCode::GONE,
            &path,
            "POST",
            format!(
                "command has already completed with exit code {}",
                code.unwrap_or(-1)
            ),
        ),
    }
}

pub async fn delete_session(sandbox: Arc<Sandbox>, sid: &str) -> Response {
    let Some(sess) = sandbox.sessions().remove(sid) else {
        return not_found(&format!("/process/session/{sid}"), "DELETE", "session");
    };
    sess.kill(Duration::from_secs(5)).await;
    StatusCode::NO_CONTENT.into_response()
}

/// `/toolbox/{id}/process/...` dispatched by path, so one auth and state check covers all.
pub async fn process(
    Ext(fake): Ext<Shared>,
    Path((id, rest)): Path<(String, String)>,
    method: axum::http::Method,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    body: axum::body::Bytes,
) -> Response {
    let ws = ws.ok();
    let sandbox = match crate::started(&fake, &id, &headers, &format!("/process/{rest}")) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let parts: Vec<&str> = rest.split('/').collect();
    let m = method.as_str();
    match (m, parts.as_slice()) {
        ("POST", ["execute"]) => match serde_json::from_slice::<ExecuteBody>(&body) {
            Ok(b) => execute(sandbox, b).await,
            Err(e) => errors::toolbox(
                StatusCode::BAD_REQUEST,
                "/process/execute",
                m,
                format!("invalid request body: {e}"),
            ),
        },
        ("POST", ["session"]) => create_session(sandbox, json_body()).await,
        ("GET", ["session"]) => list_sessions(sandbox).await,
        ("GET", ["session", sid]) => get_session(sandbox, sid).await,
        ("DELETE", ["session", sid]) => delete_session(sandbox, sid).await,
        ("POST", ["session", sid, "exec"]) => session_exec(sandbox, sid, json_body()).await,
        ("GET", ["session", sid, "command", cid]) => get_command(sandbox, sid, cid).await,
        ("GET", ["session", sid, "command", cid, "logs"]) => {
            logs(fake.clone(), sandbox, sid, cid, q, &headers, ws).await
        }
        ("POST", ["session", sid, "command", cid, "input"]) => {
            input(sandbox, sid, cid, json_body()).await
        }
        _ => errors::toolbox(
            StatusCode::NOT_FOUND,
            &format!("/process/{rest}"),
            m,
            "not found: no such route",
        ),
    }
}
