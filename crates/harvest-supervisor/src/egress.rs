//! Egress under `--network allow=HOST,…`: an HTTP proxy (CONNECT, and plain requests in
//! absolute form) that the jail reaches through `harvest forward`, so the agent's tools
//! get out only to the listed hosts. Every refused connection is written into the agent's
//! log as a marker line, which the daemon turns into a `network_denied` event: the user
//! sees what was tried. The jail itself has no network; this is its only way out besides
//! the model proxy.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// The largest request head read before deciding.
const MAX_HEAD: usize = 16 * 1024;

/// Whether `host` is on the list: exact names (any case), or `*.domain` for its
/// subdomains.
pub fn allowed(host: &str, allow: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allow.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == a,
        }
    })
}

pub async fn serve(
    listener: UnixListener,
    allow: Arc<Vec<String>>,
    log: Arc<Mutex<std::fs::File>>,
) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (allow, log) = (allow.clone(), log.clone());
        tokio::spawn(async move {
            let _ = handle(conn, &allow, &log).await;
        });
    }
}

async fn handle(
    mut conn: tokio::net::UnixStream,
    allow: &[String],
    log: &Mutex<std::fs::File>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let authority = if connect {
        target.to_owned()
    } else {
        target
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or("")
            .to_owned()
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']).to_owned(),
            p.parse::<u16>().unwrap_or(0),
        ),
        _ => (authority.clone(), if connect { 443 } else { 80 }),
    };
    if host.is_empty() || port == 0 {
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    if !allowed(&host, allow) {
        deny(log, &host, port);
        conn.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nX-Harvest: not on the allow-list\r\n\r\n",
        )
        .await?;
        return Ok(());
    }
    let upstream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await;
    let Ok(Ok(mut upstream)) = upstream else {
        conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    if connect {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        // Bytes the client sent after its CONNECT head belong to the tunnel.
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            upstream.write_all(&head[at + 4..]).await?;
        }
    } else {
        upstream.write_all(&head).await?;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    Ok(())
}

/// A marker line in the agent's log (written by us, between complete lines: the log's
/// writers share its lock).
fn deny(log: &Mutex<std::fs::File>, host: &str, port: u16) {
    let mut line =
        serde_json::json!({"type": "harvest_network_denied", "host": host, "port": port})
            .to_string();
    line.push('\n');
    let mut f = log.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = f.write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_names_and_wildcard_subdomains_only() {
        let allow = vec!["pypi.org".to_owned(), "*.github.com".to_owned()];
        assert!(allowed("pypi.org", &allow));
        assert!(allowed("PyPI.org.", &allow));
        assert!(allowed("api.github.com", &allow));
        assert!(!allowed("github.com.evil.net", &allow));
        assert!(!allowed("evilpypi.org", &allow));
        assert!(
            !allowed("github.com", &allow),
            "*.github.com is its subdomains"
        );
    }
}
