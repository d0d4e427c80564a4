//! Preview links (reference §4): `{base}/_preview/{port}-{id}/…` forwards plain GETs to
//! the port on this machine (the fake's sandboxes share its network) when the preview
//! token comes as `X-Daytona-Preview-Token`, `DAYTONA_SANDBOX_AUTH_KEY` or the API key;
//! without one it redirects to a login page (307), as Daytona does.

use crate::state::{Shared, lock};
use axum::extract::{Path, Query, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn forward_root(
    fake: Ext<Shared>,
    Path(target): Path<String>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    go(fake, target, String::new(), q, headers).await
}

pub async fn forward(
    fake: Ext<Shared>,
    Path((target, rest)): Path<(String, String)>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    go(fake, target, rest, q, headers).await
}

async fn go(
    Ext(fake): Ext<Shared>,
    target: String,
    rest: String,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some((port, id)) = target.split_once('-') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(port) = port.parse::<u16>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(sandbox) = fake.find(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = sandbox.life().preview_token.clone();
    let key = lock(&fake.opts).api_key.clone();
    let given = headers
        .get("x-daytona-preview-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| q.get("DAYTONA_SANDBOX_AUTH_KEY").cloned());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !(given.as_deref() == Some(token.as_str()) || bearer == Some(key.as_str()) || sandbox.public)
    {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", "/_fake/login")],
        )
            .into_response();
    }
    sandbox.life().last_activity = std::time::Instant::now();
    match get(port, &rest).await {
        Ok(raw) => raw_response(&raw),
        Err(_) => (StatusCode::BAD_GATEWAY, "nothing answers on that port").into_response(),
    }
}

async fn get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req =
        format!("GET /{path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(raw)
}

/// The upstream's status, content type and body.
fn raw_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], raw[i + 4..].to_vec()),
        None => (raw, Vec::new()),
    };
    let head = String::from_utf8_lossy(head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let ctype = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "application/octet-stream".into());
    (status, [("content-type", ctype)], body).into_response()
}
