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

use crate::sni;

/// The largest request head read before deciding.
const MAX_HEAD: usize = 16 * 1024;

/// How a host is on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    No,
    /// Named exactly (`pypi.org`, `127.0.0.1`).
    Exactly,
    /// Only through a `*.domain` entry, whose DNS the agent may well control.
    ByWildcard,
}

/// Whether and how `host` is on the list: exact names (any case), or `*.domain` for its
/// subdomains.
pub fn listed(host: &str, allow: &[String]) -> Listed {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut found = Listed::No;
    for a in allow {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(domain) if host.ends_with(&format!(".{domain}")) => found = Listed::ByWildcard,
            None if host == a => return Listed::Exactly,
            _ => {}
        }
    }
    found
}

/// Whether a name that resolved to `ip` may be reached. A literal address the user listed
/// is always reachable (that is how a test or a local mirror is allowed); a *name* never
/// leads to this machine's loopback, link-local addresses (cloud metadata lives at
/// 169.254.169.254) or the unspecified address, whatever its DNS says; and a name allowed
/// only by a wildcard does not lead into private networks either. A name listed exactly
/// may (a company's package mirror on 10.x is common).
pub fn reachable(ip: std::net::IpAddr, how: Listed) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (local, private) = match ip {
        IpAddr::V4(v4) => (
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
            v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64),
        ),
        IpAddr::V6(v6) => (
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
            (v6.segments()[0] & 0xfe00) == 0xfc00,
        ),
    };
    match how {
        Listed::No => false,
        Listed::Exactly => !local,
        Listed::ByWildcard => !local && !private,
    }
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

/// How long a client may take to send its request head (short in tests).
const HEAD_TIMEOUT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(300)
} else {
    std::time::Duration::from_secs(30)
};

async fn handle(
    mut conn: tokio::net::UnixStream,
    allow: &[String],
    log: &Mutex<std::fs::File>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // A client that never finishes its request head is dropped, not served forever
    // (each held connection is a task and a descriptor of this supervisor's).
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
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
    let how = listed(&host, allow);
    if how == Listed::No {
        deny(log, &host, port);
        conn.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nX-Harvest: not on the allow-list\r\n\r\n",
        )
        .await?;
        return Ok(());
    }
    // Resolved here and connected to the vetted address itself, so the name cannot
    // resolve one way for the check and another for the connection.
    let targets: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => {
            let resolved = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await;
            let all: Vec<_> = match resolved {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => Vec::new(),
            };
            let vetted: Vec<_> = all
                .iter()
                .copied()
                .filter(|a| reachable(a.ip(), how))
                .collect();
            if vetted.is_empty() && !all.is_empty() {
                deny(log, &host, port);
                conn.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nX-Harvest: the name resolves to a local or private address\r\n\r\n",
                )
                .await?;
                return Ok(());
            }
            vetted
        }
    };
    let upstream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&targets[..]),
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
        // Bytes the client sent after its CONNECT head belong to the tunnel; a TLS
        // ClientHello among them must name an allowed host too (no fronting).
        let mut first = match head.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => head[at + 4..].to_vec(),
            None => Vec::new(),
        };
        match tls_name(&mut conn, &mut first).await {
            Some(sni::Hello::Tls(Some(name))) if listed(&name, allow) == Listed::No => {
                deny(log, &name, port);
                return Ok(());
            }
            Some(sni::Hello::Malformed) | None => {
                deny(log, &host, port);
                return Ok(());
            }
            _ => {}
        }
        upstream.write_all(&first).await?;
    } else {
        // One plain request, to the host it names: its Host header is set to that host
        // (a CDN routes by it), and nothing after its body is sent on (a second,
        // pipelined request could name another host).
        let Some((out, mut body_left)) = plain_request(&head, &authority) else {
            conn.write_all(
                b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nX-Harvest: a plain request needs a Content-Length (no chunked body)\r\n\r\n",
            )
            .await?;
            return Ok(());
        };
        upstream.write_all(&out).await?;
        let (mut from_client, mut to_client) = conn.into_split();
        let (mut from_upstream, mut to_upstream) = upstream.into_split();
        let mut buf = vec![0u8; 16 * 1024];
        while body_left > 0 {
            let want = buf
                .len()
                .min(usize::try_from(body_left).unwrap_or(usize::MAX));
            let n = from_client.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            to_upstream.write_all(&buf[..n]).await?;
            body_left -= n as u64;
        }
        let _ = tokio::io::copy(&mut from_upstream, &mut to_client).await;
        return Ok(());
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    Ok(())
}

/// A plain proxy request rewritten to go to `authority` only: its `Host` replaced,
/// `Connection: close` set. Returns the bytes to send (the head, and the part of the body
/// that came with it) and how many body bytes are still to come; `None` for a chunked
/// body, whose end we would have to parse.
fn plain_request(raw: &[u8], authority: &str) -> Option<(Vec<u8>, u64)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let mut out = format!(
        "{}\r\nHost: {authority}\r\nConnection: close\r\n",
        lines.next()?
    );
    let mut length = 0u64;
    for line in lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "host" | "connection" | "proxy-connection" | "keep-alive" => continue,
            "transfer-encoding" => return None,
            "content-length" => {
                length = line.split_once(':')?.1.trim().parse().ok()?;
            }
            _ => {}
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    let came = &raw[end + 4..];
    let take = came
        .len()
        .min(usize::try_from(length).unwrap_or(usize::MAX));
    bytes.extend_from_slice(&came[..take]);
    Some((bytes, length - take as u64))
}

/// Read the tunnel's first bytes until they show whether they are a TLS ClientHello and
/// which name it carries; `None` when the client went quiet or sent too much first.
async fn tls_name(conn: &mut tokio::net::UnixStream, first: &mut Vec<u8>) -> Option<sni::Hello> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match sni::parse(first) {
            sni::Hello::Incomplete if first.len() < MAX_HEAD + 5 => {}
            sni::Hello::Incomplete => return None,
            done => return Some(done),
        }
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        first.extend_from_slice(&buf[..n]);
    }
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

    fn allowed(host: &str, allow: &[String]) -> bool {
        listed(host, allow) != Listed::No
    }

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

    #[test]
    fn names_never_lead_to_loopback_or_metadata_and_wildcards_not_inward() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for local in [
            "127.0.0.1",
            "127.8.9.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
        ] {
            assert!(!reachable(ip(local), Listed::Exactly), "{local}");
            assert!(!reachable(ip(local), Listed::ByWildcard), "{local}");
        }
        for private in [
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(reachable(ip(private), Listed::Exactly), "{private}");
            assert!(!reachable(ip(private), Listed::ByWildcard), "{private}");
        }
        assert!(reachable(ip("93.184.216.34"), Listed::ByWildcard));
        assert!(!reachable(ip("93.184.216.34"), Listed::No));
    }

    /// The attack: connections that never finish their request head, to pile up tasks
    /// and descriptors in the supervisor. Each is dropped after the head timeout.
    #[tokio::test]
    async fn a_request_head_that_never_ends_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("egress.sock");
        let log = Arc::new(Mutex::new(
            std::fs::File::create(dir.path().join("log")).unwrap(),
        ));
        tokio::spawn(serve(
            UnixListener::bind(&sock).unwrap(),
            Arc::new(vec!["example.org".to_owned()]),
            log,
        ));
        let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
        c.write_all(b"CONNECT example.org:443 HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a half-sent head held the connection open");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test]
    async fn a_listed_name_that_resolves_to_loopback_is_refused_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("egress.sock");
        let log_path = dir.path().join("log");
        let log = Arc::new(Mutex::new(std::fs::File::create(&log_path).unwrap()));
        // A listener the agent must not reach, on the loopback `localhost` names.
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = target.local_addr().unwrap().port();
        let allow = Arc::new(vec!["localhost".to_owned()]);
        tokio::spawn(serve(UnixListener::bind(&sock).unwrap(), allow, log));
        let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
        c.write_all(format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
        let logged = std::fs::read_to_string(&log_path).unwrap();
        assert!(logged.contains("harvest_network_denied"), "{logged}");
    }

    /// The attack: a tunnel opened to an allowed host (a CDN's address serves many
    /// names) whose TLS asks for another. The tunnel is closed before a byte reaches the
    /// upstream, and the name is reported; a hello naming the allowed host goes through.
    #[tokio::test]
    async fn a_tunnel_whose_tls_names_another_host_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("egress.sock");
        let log_path = dir.path().join("log");
        let log = Arc::new(Mutex::new(std::fs::File::create(&log_path).unwrap()));
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let allow = Arc::new(vec!["127.0.0.1".to_owned()]);
        tokio::spawn(serve(UnixListener::bind(&sock).unwrap(), allow, log));
        for (name, passes) in [("blocked.example", false), ("127.0.0.1", true)] {
            let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
            c.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            c.write_all(&sni::hello_for(name)).await.unwrap();
            let (mut upstream, _) = target.accept().await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                upstream.read_to_end(&mut got),
            )
            .await;
            assert_eq!(!got.is_empty(), passes, "{name}: {got:?}");
        }
        let logged = std::fs::read_to_string(&log_path).unwrap();
        assert!(logged.contains("blocked.example"), "{logged}");
    }

    #[test]
    fn a_plain_request_goes_to_its_own_host_once() {
        let raw = b"GET http://pypi.org/simple/ HTTP/1.1\r\nHost: evil.example\r\nConnection: keep-alive\r\n\r\nGET http://pypi.org/ HTTP/1.1\r\nHost: other.example\r\n\r\n";
        let (out, left) = plain_request(raw, "pypi.org").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(left, 0);
        assert!(
            out.contains("Host: pypi.org\r\n") && out.contains("Connection: close"),
            "{out}"
        );
        assert!(
            !out.contains("evil.example") && !out.contains("other.example"),
            "{out}"
        );
        let chunked = b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(plain_request(chunked, "pypi.org").is_none());
        let post = b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcd";
        let (out, left) = plain_request(post, "pypi.org").unwrap();
        assert_eq!(left, 6);
        assert!(out.ends_with(b"\r\n\r\nabcd"));
    }
}
