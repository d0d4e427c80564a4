//! A FAKE Daytona, for Harvest's tests and for trying the daytona provider by hand:
//! the control-plane API under `/api` and the toolbox under `/toolbox/{id}`, as
//! ../shared/reference/daytona-api.md describes them (v0.190.0), on one loopback port.
//! Its sandboxes are real (see `jail`): the real `claude` CLI runs in them. Faults are
//! injected through `/_fake/faults`; `/_fake/requests` shows every request it received.
//! What it covers and what not: docs/fake-daytona.md. Its faithfulness is checked with
//! the official Python SDK (tests/daytona_sdk/).

pub mod api;
pub mod errors;
pub mod files;
pub mod jail;
mod locking;
mod preview;
pub mod session;
pub mod state;
pub mod toolbox;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, Query, Request, State as Ext};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use state::{Fake, Fault, Recorded, Sandbox, Shared, State, lock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub use state::Options;

/// Serve on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, opts: Options) -> std::io::Result<()> {
    let fake = Fake::new(opts);
    api::spawn_auto_stop(fake.clone());
    axum::serve(listener, router(fake)).await
}

pub fn router(fake: Shared) -> Router {
    let api = Router::new()
        .route("/api/sandbox", post(api::create).get(api::list))
        .route("/api/sandbox/{id}", get(api::get).delete(api::delete))
        .route("/api/sandbox/{id}/{action}", post(api::action))
        .route(
            "/api/sandbox/{id}/ports/{port}/preview-url",
            get(api::preview_url),
        )
        .route(
            "/api/sandbox/{id}/toolbox-proxy-url",
            get(api::toolbox_proxy_url),
        )
        .route("/toolbox/{id}/process/{*rest}", any(toolbox::process))
        .route("/toolbox/{id}/files/upload", post(upload))
        .route("/toolbox/{id}/files/bulk-upload", post(upload))
        .route("/toolbox/{id}/{*rest}", any(toolbox_other))
        .route_layer(middleware::from_fn_with_state(fake.clone(), gate));
    Router::new()
        .merge(api)
        .route("/_preview/{target}", any(preview::forward_root))
        .route("/_preview/{target}/{*rest}", any(preview::forward))
        .route("/_fake/faults", post(add_fault))
        .route("/_fake/requests", get(requests))
        .route("/_fake/sandboxes", get(sandboxes))
        .layer(middleware::from_fn_with_state(fake.clone(), record))
        .with_state(fake)
}

/// Every request but the fake's own control routes is recorded, body included.
async fn record(Ext(fake): Ext<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_fake/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    lock(&fake.requests).push(Recorded {
        at_ms,
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Which rate limiter a route counts against (reference §1.5).
fn throttler(method: &Method, path: &str) -> &'static str {
    let lifecycle = ["/start", "/stop", "/archive", "/recover"];
    if method == Method::POST && path == "/api/sandbox" {
        "sandbox-create"
    } else if (method == Method::DELETE && path.starts_with("/api/sandbox/"))
        || (method == Method::POST && lifecycle.iter().any(|l| path.ends_with(l)))
    {
        "sandbox-lifecycle"
    } else {
        "authenticated"
    }
}

/// Auth and injected faults, in the shape of the part of Daytona that would answer.
async fn gate(Ext(fake): Ext<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let is_api = path.starts_with("/api/");
    if fake.out() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream").into_response();
    }
    let key = fake.opts().api_key;
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == key);
    if !authorized {
        return if is_api {
            errors::api(StatusCode::UNAUTHORIZED, &path, "Invalid credentials")
        } else {
            errors::toolbox(
                StatusCode::UNAUTHORIZED,
                &path,
                method.as_str(),
                "authentication failed: Bearer token is invalid",
            )
        };
    }
    if let Some(Fault::ServerError { status, .. }) = fake.take_fault(
        |f| matches!(f, Fault::ServerError { path: p, .. } if path.contains(p.as_str())),
    ) {
        let status = status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return if is_api {
            errors::api(status, &path, "An unexpected error occurred.")
        } else {
            errors::toolbox(status, &path, method.as_str(), "injected failure")
        };
    }
    if is_api {
        let name = throttler(&method, &path);
        if let Some(Fault::RateLimit { retry_after, .. }) = fake
            .take_fault(|f| matches!(f, Fault::RateLimit { throttler, .. } if throttler == name))
        {
            let mut r = errors::api(
                StatusCode::TOO_MANY_REQUESTS,
                &path,
                "ThrottlerException: Too Many Requests",
            );
            let h = r.headers_mut();
            let mut set = |k: String, v: String| {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::try_from(k),
                    axum::http::HeaderValue::try_from(v),
                ) {
                    h.insert(k, v);
                }
            };
            let wait = retry_after.unwrap_or(1).to_string();
            set(format!("x-ratelimit-limit-{name}"), "300".into());
            set(format!("x-ratelimit-remaining-{name}"), "0".into());
            set(format!("x-ratelimit-reset-{name}"), wait.clone());
            if retry_after.is_some() {
                set(format!("retry-after-{name}"), wait);
            }
            return r;
        }
    }
    next.run(req).await
}

/// A toolbox call's sandbox: unknown → 401 (as the proxy answers), not started → 400.
/// A call counts as activity (pushing back auto-stop) unless it asks not to.
// The error is the answer itself, which every caller returns at once: boxing it would
// only add an allocation to each refused call.
#[allow(clippy::result_large_err)]
pub fn started(
    fake: &Shared,
    id: &str,
    headers: &HeaderMap,
    path: &str,
) -> Result<Arc<Sandbox>, Response> {
    let Some(s) = fake.find(id) else {
        return Err(errors::toolbox(
            StatusCode::UNAUTHORIZED,
            path,
            "",
            "authentication failed: Bearer token is invalid",
        ));
    };
    let mut life = s.life();
    if life.stored != State::Started || life.desired != State::Started {
        return Err(errors::toolbox(
            StatusCode::BAD_REQUEST,
            path,
            "",
            format!("bad request: no IP address found for sandbox {id}. Is the Sandbox started?"),
        ));
    }
    let skip = headers
        .get("x-daytona-skip-last-activity-update")
        .is_some_and(|v| v.as_bytes() == b"true");
    if !skip {
        life.last_activity = Instant::now();
    }
    drop(life);
    Ok(s)
}

async fn upload(
    Ext(fake): Ext<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let rest = uri
        .path()
        .rsplit("/files/")
        .next()
        .map(|r| format!("files/{r}"))
        .unwrap_or_default();
    let sandbox = match started(&fake, &id, &headers, &format!("/{rest}")) {
        Ok(s) => s,
        Err(r) => return r,
    };
    files::route(sandbox, "POST", &rest, &q, Bytes::new(), multipart.ok()).await
}

async fn toolbox_other(
    Ext(fake): Ext<Shared>,
    Path((id, rest)): Path<(String, String)>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sandbox = match started(&fake, &id, &headers, &format!("/{rest}")) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match (method.as_str(), rest.as_str()) {
        ("GET", "work-dir") | ("GET", "user-home-dir") => {
            axum::Json(json!({"dir": jail::HOME})).into_response()
        }
        ("GET", "version") => axum::Json(json!({"version": "fake-0.190.0"})).into_response(),
        (m, r) => files::route(sandbox, m, r, &q, body, None).await,
    }
}

async fn add_fault(Ext(fake): Ext<Shared>, axum::Json(fault): axum::Json<Fault>) -> Response {
    match fault {
        Fault::SandboxError {
            id: Some(id),
            reason,
        } => {
            let Some(s) = fake.find(&id) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let mut life = s.life();
            life.stored = State::Error;
            life.error_reason = Some(reason);
        }
        Fault::SandboxError { id: None, reason } => {
            lock(&fake.faults).error_next_create = Some(reason)
        }
        Fault::Transition { ms } => {
            lock(&fake.opts).transition = std::time::Duration::from_millis(ms)
        }
        Fault::Outage { ms } => {
            lock(&fake.faults).outage_until =
                Some(Instant::now() + std::time::Duration::from_millis(ms));
        }
        other => lock(&fake.faults).list.push(other),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(Ext(fake): Ext<Shared>) -> Response {
    axum::Json(lock(&fake.requests).clone()).into_response()
}

/// Every sandbox the fake holds, whatever its state, with what the API would list.
async fn sandboxes(Ext(fake): Ext<Shared>) -> Response {
    let url = fake.toolbox_proxy_url();
    let all: Vec<serde_json::Value> = lock(&fake.sandboxes)
        .values()
        .filter(|s| s.life().stored != State::Destroyed)
        .map(|s| {
            let mut v = s.to_json(&url, false);
            v["dir"] = json!(s.jail.dir);
            v
        })
        .collect();
    axum::Json(all).into_response()
}
