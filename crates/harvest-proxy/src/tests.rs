// Tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use harvest_scripted_model::{ModelServer, Script};

fn upstream() -> ModelServer {
    let script =
        Script::from_toml_str("[[turn]]\n[[turn.step]]\ntext = \"hello from upstream\"\n").unwrap();
    ModelServer::spawn_in_thread(script).unwrap()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect()
}

/// A proxy for these variables; returns its URL and what the agent gets.
async fn proxy(vars: &[(&str, &str)]) -> (String, BTreeMap<String, Secret>) {
    // The tests' own client needs the TLS provider the proxy installs for itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (agent, up) = split(&env(vars));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, up));
    (url, agent)
}

const BODY: &str =
    r#"{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

async fn post(url: &str, key: &str) -> (u16, String) {
    // The test's own client follows no redirect, so only the proxy could.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn the_agent_gets_a_token_and_the_upstream_gets_the_key() {
    let model = upstream();
    let (url, agent) = proxy(&[
        ("ANTHROPIC_API_KEY", "sk-ant-real-key"),
        ("ANTHROPIC_BASE_URL", &model.base_url()),
        ("OTHER", "kept"),
    ])
    .await;
    let token = agent["ANTHROPIC_API_KEY"].expose().to_owned();
    assert!(token.starts_with("hvp-") && !token.contains("real"));
    assert!(
        !agent.contains_key("ANTHROPIC_BASE_URL"),
        "set by whoever binds the proxy"
    );
    assert_eq!(agent["OTHER"].expose(), "kept");
    assert!(
        !agent
            .values()
            .any(|v| v.expose().contains("sk-ant-real-key"))
    );

    let (status, body) = post(&url, &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("hello from upstream"),
        "streamed answer: {body}"
    );
    let seen = model.requests();
    let key = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "x-api-key")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        key,
        Some("sk-ant-real-key"),
        "the upstream got the real key"
    );
    assert_eq!(seen[0].path, "/v1/messages");
}

#[tokio::test]
async fn other_tokens_are_refused_before_the_upstream() {
    let model = upstream();
    let (url, _agent) = proxy(&[
        ("ANTHROPIC_API_KEY", "k"),
        ("ANTHROPIC_BASE_URL", &model.base_url()),
    ])
    .await;
    for wrong in ["sk-ant-real-key", "k", "hvp-0000"] {
        let (status, body) = post(&url, wrong).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("authentication_error"));
    }
    assert!(
        model.requests().is_empty(),
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn a_bearer_token_stays_a_bearer_token() {
    let model = upstream();
    let (url, agent) = proxy(&[
        ("CLAUDE_CODE_OAUTH_TOKEN", "oauth-real"),
        ("ANTHROPIC_BASE_URL", &model.base_url()),
    ])
    .await;
    assert!(!agent.contains_key("ANTHROPIC_API_KEY"));
    let token = agent["CLAUDE_CODE_OAUTH_TOKEN"].expose().to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("authorization", format!("Bearer {token}"))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let auth = model.requests()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer oauth-real"));
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_api_error_the_cli_understands() {
    let (url, agent) = proxy(&[
        ("ANTHROPIC_API_KEY", "k"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
    ])
    .await;
    let (status, body) = post(&url, agent["ANTHROPIC_API_KEY"].expose()).await;
    assert_eq!(status, 502);
    assert!(
        body.contains("\"type\":\"error\"") && body.contains("cannot reach"),
        "{body}"
    );
}

/// An upstream that answers every request with a redirect to `to`.
async fn redirecting_upstream(to: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = s.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_redirect_never_carries_the_real_key_elsewhere() {
    // The attacker's host: anything that reaches it is a leak.
    let thief = upstream();
    let gateway = redirecting_upstream(thief.base_url()).await;
    let (url, agent) = proxy(&[
        ("ANTHROPIC_API_KEY", "sk-ant-real-key"),
        ("ANTHROPIC_BASE_URL", &gateway),
    ])
    .await;
    let (status, _) = post(&url, agent["ANTHROPIC_API_KEY"].expose()).await;
    assert_eq!(status, 302, "the agent sees the redirect itself");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        thief.requests().is_empty(),
        "the proxy followed a redirect with the real key"
    );
}

#[tokio::test]
async fn forwarding_headers_from_the_agent_are_dropped() {
    let model = upstream();
    let (url, agent) = proxy(&[
        ("ANTHROPIC_API_KEY", "k"),
        ("ANTHROPIC_BASE_URL", &model.base_url()),
    ])
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", agent["ANTHROPIC_API_KEY"].expose())
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .header("anthropic-version", "2023-06-01")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = &model.requests()[0].headers;
    assert!(
        !seen
            .iter()
            .any(|(k, _)| k == "x-forwarded-host" || k == "forwarded"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(k, _)| k == "anthropic-version"));
}
