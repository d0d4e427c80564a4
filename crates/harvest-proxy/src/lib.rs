//! The model proxy: the only way an agent reaches its model.
//!
//! An agent's environment never holds the user's credential. It holds the proxy's address
//! as `ANTHROPIC_BASE_URL` and a per-process token in the variable the user's credential
//! came in (`ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN` or `CLAUDE_CODE_OAUTH_TOKEN`, so
//! the CLI behaves as it would with the real one). The proxy listens on loopback, takes
//! the token off each request, puts the real credential on, and forwards to the session's
//! upstream (the user's `ANTHROPIC_BASE_URL`, or Anthropic's API), streaming the answer
//! back as it comes. So `env` in the agent's Bash, its transcript, its logs and anything
//! it sends elsewhere hold only a token that is worthless off this machine and dies with
//! the agent process.
//!
//! The proxy runs in the session's supervisor (`harvest-supervisor`), not in the daemon:
//! the credential then lives only in a process that outlives the daemon, so a re-adopted
//! agent keeps reaching its model after a daemon crash, and the daemon, which forgets
//! credentials when it dies, never has to hand them out again.

use bytes::Bytes;
use futures_util::TryStreamExt;
use harvest_protocol::Secret;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where requests go when the user gave no `ANTHROPIC_BASE_URL`.
pub const DEFAULT_UPSTREAM: &str = "https://api.anthropic.com";
/// The largest request body forwarded (a long conversation is resent whole each turn).
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Connections served at once. The proxy lives in the supervisor, outside the jail, so a
/// jailed process opening thousands of connections must not be able to exhaust it; the
/// CLI itself keeps a handful open.
const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request's headers: a slow-loris connection is
/// dropped rather than holding one of the slots above for ever.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The credential variables the proxy stands in for.
pub const CREDENTIAL_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot build the model proxy's HTTP client: {0}")]
    Client(String),
}

/// Where one agent process's requests go, and with which real credentials.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    pub base: String,
    pub api_key: Option<Secret>,
    pub bearer: Option<Secret>,
    /// The token the agent presents.
    pub token: Secret,
    /// What this agent process may still spend through the proxy (the session's budget
    /// less what it has cost); `None`: no limit.
    #[serde(default)]
    pub allowance_usd: Option<f64>,
    /// The user's subscription login (its `.credentials.json`), used and refreshed here
    /// when no key or token came in the environment.
    #[serde(default)]
    pub login: Option<std::path::PathBuf>,
    /// Where a login is refreshed (Claude Code's token endpoint; a fake in tests).
    #[serde(default)]
    pub token_url: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Split the user's variables into what the agent gets (credentials replaced by a fresh
/// token, the base URL left for the proxy to set once it listens) and what the proxy
/// keeps. Other variables pass through as they are.
pub fn split(env: &BTreeMap<String, Secret>) -> (BTreeMap<String, Secret>, Upstream) {
    let token = Secret::new(format!("hvp-{}", uuid::Uuid::new_v4().simple()));
    let get = |k: &str| env.get(k).filter(|v| !v.expose().is_empty()).cloned();
    let upstream = Upstream {
        base: get(BASE_URL_VAR)
            .map(|u| u.expose().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned()),
        api_key: get("ANTHROPIC_API_KEY"),
        bearer: get("ANTHROPIC_AUTH_TOKEN").or_else(|| get("CLAUDE_CODE_OAUTH_TOKEN")),
        token: token.clone(),
        allowance_usd: None,
        login: None,
        token_url: None,
    };
    let has_credential = CREDENTIAL_VARS.iter().any(|v| get(v).is_some());
    let mut upstream = upstream;
    let mut agent_env: BTreeMap<String, Secret> = env
        .iter()
        .filter(|(k, _)| {
            !CREDENTIAL_VARS.contains(&k.as_str())
                && k.as_str() != BASE_URL_VAR
                && k.as_str() != login::LOGIN_VAR
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !has_credential && let Some(path) = get(login::LOGIN_VAR) {
        // The subscription login: the CLI speaks as a subscriber with a placeholder the
        // proxy swaps for the login's current access token.
        upstream.login = Some(std::path::PathBuf::from(path.expose()));
        upstream.token_url = Some(
            std::env::var(login::TOKEN_URL_FOR_TESTS_VAR)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| login::TOKEN_URL.to_owned()),
        );
        agent_env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), token.clone());
        return (agent_env, upstream);
    }
    for var in CREDENTIAL_VARS {
        if get(var).is_some() {
            agent_env.insert((*var).to_owned(), token.clone());
        }
    }
    if !CREDENTIAL_VARS.iter().any(|v| get(v).is_some()) {
        // A gateway that needs no key: the token still identifies the agent.
        agent_env.insert("ANTHROPIC_API_KEY".into(), token);
    }
    (agent_env, upstream)
}

/// Serve one agent process's requests on `listener` (bound on loopback by the caller,
/// who puts `http://<addr>` in the agent's `ANTHROPIC_BASE_URL`), until the runtime ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: Upstream,
) -> Result<(), ProxyError> {
    serve_on(Listener::Tcp(listener), upstream, Arc::new(|_| {})).await
}

/// Where a proxy (the model's, an MCP relay) listens: the host's loopback, which a jail
/// with the host's network shares, or a Unix socket bound into a sandbox without one,
/// whose agent reaches it through [`forward`] inside the sandbox.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Conn>> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Conn>),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Conn>),
        }
    }
}

trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// [`serve`] on either kind of listener, telling `notify` what it refused.
pub async fn serve_on(
    listener: Listener,
    upstream: Upstream,
    notify: Notify,
) -> Result<(), ProxyError> {
    let client = upstream_client()?;
    let accounting = Arc::new(Accounting::new(upstream.allowance_usd, notify));
    let login = upstream.login.clone().map(|path| {
        Arc::new(login::Login::new(
            path,
            upstream
                .token_url
                .clone()
                .unwrap_or_else(|| login::TOKEN_URL.to_owned()),
            client.clone(),
        ))
    });
    let upstream = Arc::new(upstream);
    let handler: Handler = Arc::new(move |req| {
        let held = Held {
            upstream: upstream.clone(),
            client: client.clone(),
            accounting: accounting.clone(),
            login: login.clone(),
        };
        Box::pin(forward_request(req, held))
    });
    accept_loop(listener, handler).await;
    Ok(())
}

/// The client requests go upstream with.
fn upstream_client() -> Result<reqwest::Client, ProxyError> {
    // One process-wide TLS provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        // Never follow a redirect: the request carries the real credential, and reqwest
        // strips only `authorization` across hosts, not `x-api-key`. The agent sees the
        // redirect itself, with its own token in the request it made.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ProxyError::Client(e.to_string()))
}

/// What answers one request of a connection.
type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> futures_util::future::BoxFuture<
            'static,
            Result<Response<Body>, std::convert::Infallible>,
        > + Send
        + Sync,
>;

/// Serve connections from `accept` with `handler`, at most [`MAX_CONNECTIONS`] at once,
/// each dropped when it takes too long to send its headers.
async fn accept_loop(listener: Listener, handler: Handler) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| handler(req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "proxy connection ended");
            }
        });
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Headers that belong to one hop, not to the request. (`content-length` passes: the
/// body is streamed through unchanged, and hyper holds it to the declared length.)
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Headers the agent must not set on a request that carries the real credential: a
/// gateway that builds URLs (redirects, callbacks) from them would send the credential
/// where the agent chose.
fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-") || name == "forwarded" || name == "via" || name == "x-real-ip"
}

/// What one proxy holds for its requests.
struct Held {
    upstream: Arc<Upstream>,
    client: reqwest::Client,
    accounting: Arc<Accounting>,
    login: Option<Arc<login::Login>>,
}

async fn forward_request(
    req: Request<Incoming>,
    held: Held,
) -> Result<Response<Body>, std::convert::Infallible> {
    let Held {
        upstream: up,
        client,
        accounting,
        login,
    } = held;
    if session_token(&req).as_deref() != Some(up.token.expose()) {
        mcp::drain(req).await;
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "harvest model proxy: this token belongs to no live agent",
        ));
    }
    let (upstream, api_key, bearer) = (&up.base, &up.api_key, &up.bearer);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    if !allow::allowed(req.method().as_str(), &path) {
        tracing::warn!(method = %req.method(), %path, "model proxy refused a call the CLI never makes");
        accounting.tell(Notice::Refused {
            method: req.method().to_string(),
            path: path.clone(),
        });
        let method = req.method().clone();
        mcp::drain(req).await;
        return Ok(error(
            StatusCode::FORBIDDEN,
            "permission_error",
            &format!(
                "harvest model proxy: {method} {path} is not a call Claude Code makes, so it is \
                 not sent with the user's credential"
            ),
        ));
    }
    // Under a budget, few requests may be under way at once: each is charged when its
    // answer ends, so many in parallel could all pass the check below before any is
    // charged. The CLI itself keeps one or two open.
    let in_flight = match accounting.in_flight().await {
        Some(permit) => Some(permit),
        None if accounting.limited() => {
            mcp::drain(req).await;
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                "harvest model proxy: too many requests at once",
            ));
        }
        None => None,
    };
    if let Some((spent, allowance)) = accounting.exhausted() {
        accounting.tell(Notice::BudgetReached {
            spent_usd: spent,
            allowance_usd: allowance,
        });
        mcp::drain(req).await;
        // 400: the CLI does not retry it; its turn ends with this message.
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!(
                "harvest: the session reached its budget (${spent:.4} of ${allowance:.4} for \
                 this agent); raise agent.max_budget_usd in harvest.toml to go on"
            ),
        ));
    }
    let url = format!("{upstream}{path}");
    let method = req.method().clone();
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n == "x-api-key"
            || n == "authorization"
            || n == "accept-encoding"
            || is_forwarding_header(n)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    // The usage must be readable as the response passes: no compression (the client here
    // decodes none, and a compressed body would be charged nothing).
    headers.insert(
        reqwest::header::ACCEPT_ENCODING,
        reqwest::header::HeaderValue::from_static("identity"),
    );
    if let Some(key) = &api_key
        && let Ok(v) = reqwest::header::HeaderValue::from_str(key.expose())
    {
        headers.insert("x-api-key", v);
    }
    if let Some(token) = &bearer
        && let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
    {
        headers.insert("authorization", v);
    }
    let mut login_token = None;
    if let Some(login) = &login {
        match login.access_token().await {
            Ok(token) => {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
                    headers.insert("authorization", v);
                }
                login_token = Some(token);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the Claude login cannot be used");
                return Ok(error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    &format!("harvest model proxy: {e}"),
                ));
            }
        }
    }
    // Streamed to the upstream as it arrives, never held whole: many large uploads at
    // once must not grow the supervisor. Past the limit the upload is cut off.
    let body = reqwest::Body::wrap_stream(
        http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY).into_data_stream(),
    );
    tracing::debug!(%method, %path, "model request");
    let sent = client
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream_resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "model upstream unreachable");
            return Ok(error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                // Where the key goes is not the agent's to learn.
                "harvest model proxy: cannot reach the model's API (the daemon's log says why)",
            ));
        }
    };
    if upstream_resp.status() == reqwest::StatusCode::UNAUTHORIZED
        && let (Some(login), Some(token)) = (&login, &login_token)
    {
        login.rejected(token).await;
    }
    let mut resp = Response::builder().status(upstream_resp.status().as_u16());
    for (name, value) in upstream_resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            resp = resp.header(name.as_str(), value.as_bytes());
        }
    }
    // Streamed as it arrives: a turn's SSE reaches the agent chunk by chunk, its usage
    // read on the way and charged when the body ends (or the agent hangs up).
    let content_type = upstream_resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // The place among the requests under way is kept until the answer is charged.
    let mut meter = Meter::new(accounting, &content_type, in_flight);
    let stream = upstream_resp
        .bytes_stream()
        .map_ok(move |chunk| {
            meter.feed(&chunk);
            Frame::data(chunk)
        })
        .map_err(std::io::Error::other);
    Ok(resp
        .body(BoxBody::new(StreamBody::new(stream)))
        .unwrap_or_else(|_| {
            error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "harvest model proxy: bad upstream headers",
            )
        }))
}

/// The session token the agent sent, as an API key or a bearer token.
fn session_token(req: &Request<Incoming>) -> Option<String> {
    let h = req.headers();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok())
        && k.starts_with("hvp-")
    {
        return Some(k.to_owned());
    }
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| t.starts_with("hvp-"))
        .map(str::to_owned)
}

/// An error in the Messages API's own shape, so the CLI shows it as an API error.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        .to_string();
    let mut resp = Response::new(BoxBody::new(
        Full::new(Bytes::from(body)).map_err(|never| match never {}),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

mod allow;
pub mod forward;
pub mod login;
pub mod mcp;
mod scope;
mod usage;
use usage::Meter;
pub use usage::{Accounting, Notice, Notify, Usage, cost_usd};

#[cfg(test)]
mod tests;
