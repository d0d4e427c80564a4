//! The server over real HTTP: the non-streaming form, count_tokens, errors and broken
//! streams. (The streaming form is exercised by the real CLI in the workspace's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_scripted_model::{ModelServer, Script};
use std::io::{Read, Write};
use std::net::TcpStream;

const SCRIPT: &str = r#"
[[turn]]
prompt = "overload"
[[turn.step]]
error = { status = 529, type = "overloaded_error", message = "Overloaded" }
[[turn]]
prompt = "broken short"
[[turn.step]]
text = "hi"
break_stream = true
[[turn]]
prompt = "broken"
[[turn.step]]
text = "this stream breaks off somewhere in the middle"
break_stream = true
[[turn]]
[[turn.step]]
text = "plain answer"
"#;

fn post(server: &ModelServer, path: &str, body: &str) -> String {
    let addr = server.base_url().trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until the server closes or breaks the connection, keeping what arrived.
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn request(prompt: &str, stream: bool) -> String {
    serde_json::json!({"model":"m","stream":stream,
        "messages":[{"role":"user","content":[{"type":"text","text":prompt}]}]})
    .to_string()
}

#[test]
fn non_streaming_count_tokens_errors_and_recording() {
    let server = ModelServer::spawn_in_thread(Script::from_toml_str(SCRIPT).unwrap()).unwrap();
    let plain = post(&server, "/v1/messages?beta=true", &request("hi", false));
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(
        plain.contains("\"plain answer\"") && plain.contains("\"end_turn\""),
        "{plain}"
    );

    let count = post(
        &server,
        "/v1/messages/count_tokens?beta=true",
        &request("hi", false),
    );
    assert!(count.contains("\"input_tokens\""), "{count}");

    let err = post(
        &server,
        "/v1/messages?beta=true",
        &request("overload now", true),
    );
    assert!(err.starts_with("HTTP/1.1 529"), "{err}");
    assert!(err.contains("overloaded_error"), "{err}");

    let missing = post(&server, "/v2/other", "{}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    let prompts: Vec<Option<String>> = server.requests().iter().map(|r| r.prompt()).collect();
    assert_eq!(prompts[0].as_deref(), Some("hi"));
    assert_eq!(prompts[2].as_deref(), Some("overload now"));
}

#[test]
fn a_broken_stream_ends_without_message_stop() {
    let server = ModelServer::spawn_in_thread(Script::from_toml_str(SCRIPT).unwrap()).unwrap();
    let out = post(
        &server,
        "/v1/messages?beta=true",
        &request("broken please", true),
    );
    assert!(out.contains("event: message_start"), "{out}");
    assert!(out.contains("content_block_delta"), "{out}");
    assert!(
        !out.contains("message_stop"),
        "the stream should break off: {out}"
    );
    assert_eq!(
        out.matches("event: content_block_delta").count(),
        1,
        "{out}"
    );

    // A text short enough for one delta still breaks off.
    let short = post(
        &server,
        "/v1/messages?beta=true",
        &request("broken short", true),
    );
    assert!(short.contains("event: content_block_delta"), "{short}");
    assert!(!short.contains("message_stop"), "{short}");

    let whole = post(&server, "/v1/messages?beta=true", &request("hello", true));
    assert!(whole.contains("event: message_stop"), "{whole}");
}
