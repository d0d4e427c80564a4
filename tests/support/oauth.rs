//! The FAKE OAuth token endpoint (tests/support/fake_oauth.py) as the tests use it: it
//! rotates refresh tokens as Claude's does, and counts the refreshes it served.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};

pub struct FakeOAuth {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl FakeOAuth {
    /// An endpoint that takes `first_refresh` once, then each token it hands out once.
    pub fn start(first_refresh: &str) -> FakeOAuth {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_oauth.py");
        let (child, url) = crate::spawn_listening(
            Command::new("python3")
                .arg(script)
                .args(["--first-refresh", first_refresh]),
            "the fake token endpoint (python3)",
        );
        FakeOAuth { child, url }
    }

    pub fn token_url(&self) -> String {
        format!("{}/v1/oauth/token", self.url)
    }

    /// How many refreshes it served.
    pub fn refreshes(&self) -> u64 {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("the fake answers");
        write!(s, "GET /_refreshes HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("{}");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        v["count"].as_u64().expect("count")
    }
}

impl Drop for FakeOAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
