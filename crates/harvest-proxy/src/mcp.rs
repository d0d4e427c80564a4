//! The MCP relay: how an agent reaches a remote (HTTP or SSE) MCP server without holding
//! its credentials, and without a network of its own.
//!
//! One relay per server runs in the session's supervisor, beside the model proxy. The
//! agent's `--mcp-config` names the relay's address (`${HARVEST_MCP_<i>}`, which the CLI
//! expands) and a per-process token in [`RELAY_HEADER`]; the relay checks and takes the
//! token off, puts the server's credentials on (the headers the user configured, or the
//! token of their own `claude`'s login to it), and streams the request to the server and
//! the answer back (an SSE stream as it comes). It lends the credentials to that server's
//! MCP endpoint only: another path of the same host is refused (the legacy SSE transport,
//! whose server names its own message path, may use any path of the origin), and a
//! redirect is handed to the agent, never followed.

use crate::{
    Body, HOP_BY_HOP, Handler, Listener, Notice, Notify, ProxyError, is_forwarding_header,
};
use bytes::Bytes;
use futures_util::TryStreamExt;
use harvest_protocol::Secret;
use harvest_protocol::mcp::{McpTarget, RELAY_HEADER};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// The largest request body relayed (JSON-RPC messages are small; a tool's arguments
/// may carry a file).
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// One relayed server, as the supervisor serves it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Relay {
    pub target: McpTarget,
    /// The token the agent presents.
    pub token: Secret,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("server", &self.target.server)
            .finish_non_exhaustive()
    }
}

/// The server's origin (`scheme://host[:port]`) and its endpoint's path.
fn split_url(url: &str) -> Option<(String, String)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return None;
    }
    let origin = parsed.origin().ascii_serialization();
    Some((origin, parsed.path().to_owned()))
}

/// The path and query the agent asks the relay for, when `url` is one the relay can serve
/// (an http or https URL with a host).
pub fn relayed_path(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    split_url(url)?;
    Some(match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    })
}

struct Held {
    relay: Relay,
    origin: String,
    path: String,
    client: reqwest::Client,
    notify: Notify,
}

/// Relay one server for one agent process on `listener`, until the runtime ends.
pub async fn serve(listener: Listener, relay: Relay, notify: Notify) -> Result<(), ProxyError> {
    let Some((origin, path)) = split_url(&relay.target.url) else {
        return Err(ProxyError::Client(format!(
            "the MCP server {} has no http(s) URL",
            relay.target.server
        )));
    };
    let held = Arc::new(Held {
        relay,
        origin,
        path,
        client: crate::upstream_client()?,
        notify,
    });
    let handler: Handler = Arc::new(move |req| Box::pin(relay_request(req, held.clone())));
    crate::accept_loop(listener, handler).await;
    Ok(())
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(BoxBody::new(
        Full::new(Bytes::from(message.to_owned())).map_err(|never| match never {}),
    ));
    *resp.status_mut() = status;
    resp
}

/// Read (and drop) a refused request's body, at most a little of it, so the refusal is
/// answered on a connection that is not reset under it.
pub(crate) async fn drain(req: Request<Incoming>) {
    let limited = http_body_util::Limited::new(req.into_body(), 1 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), limited.collect()).await;
}

/// Whether the agent may send `path` with the server's credentials.
fn allowed_path(held: &Held, path: &str) -> bool {
    held.relay.target.any_path
        || path == held.path
        || path.trim_end_matches('/') == held.path.trim_end_matches('/')
}

async fn relay_request(
    req: Request<Incoming>,
    held: Arc<Held>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let presented = req
        .headers()
        .get(RELAY_HEADER)
        .and_then(|v| v.to_str().ok());
    if presented != Some(held.relay.token.expose()) {
        drain(req).await;
        return Ok(plain(
            StatusCode::UNAUTHORIZED,
            "harvest MCP relay: this token belongs to no live agent",
        ));
    }
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let server = &held.relay.target.server;
    if !allowed_path(&held, &path) {
        tracing::warn!(%server, method = %req.method(), %path, "MCP relay refused a path beside the server's endpoint");
        (held.notify)(Notice::Refused {
            method: req.method().to_string(),
            path: format!("{path} (MCP server {server})"),
        });
        drain(req).await;
        return Ok(plain(
            StatusCode::FORBIDDEN,
            &format!(
                "harvest MCP relay: {path} is not the MCP endpoint of {server}, so it is not \
                 sent with the server's credentials"
            ),
        ));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == RELAY_HEADER || is_forwarding_header(n) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    // The configured credentials outrank whatever the agent sent under the same names.
    for (name, value) in &held.relay.target.headers {
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value.expose()),
        ) {
            headers.insert(n, v);
        }
    }
    let url = format!("{}{path_and_query}", held.origin);
    let method = req.method().clone();
    let body = reqwest::Body::wrap_stream(
        http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY).into_data_stream(),
    );
    tracing::debug!(%server, %method, %path, "MCP request");
    let answer = match held
        .client
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%server, error = %e, "MCP server unreachable");
            return Ok(plain(
                StatusCode::BAD_GATEWAY,
                &format!("harvest MCP relay: cannot reach the MCP server {server}"),
            ));
        }
    };
    let mut resp = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            resp = resp.header(name.as_str(), value.as_bytes());
        }
    }
    let stream = answer
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    Ok(resp
        .body(BoxBody::new(StreamBody::new(stream)))
        .unwrap_or_else(|_| {
            plain(
                StatusCode::BAD_GATEWAY,
                "harvest MCP relay: bad headers from the server",
            )
        }))
}

/// The relays for one agent process's servers, and the token they all take from it.
pub fn relays(targets: &[McpTarget]) -> (Secret, Vec<Relay>) {
    let token = Secret::new(format!("hvm-{}", uuid::Uuid::new_v4().simple()));
    let relays = targets
        .iter()
        .map(|target| Relay {
            target: target.clone(),
            token: token.clone(),
        })
        .collect();
    (token, relays)
}
