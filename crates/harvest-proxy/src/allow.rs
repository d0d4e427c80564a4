//! Which requests the proxy forwards with the user's credential: only the calls the
//! pinned CLI makes (observed on 2.1.330 with `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`:
//! `POST /v1/messages?beta=true`, streamed or not, and `POST
//! /v1/messages/count_tokens?beta=true`). Everything else the key could do — the Files
//! API, Message Batches (spending no budget sees), models, admin endpoints — is refused:
//! a tool holding the agent's token must not borrow the key's whole authority.

const PATHS: &[&str] = &["/v1/messages", "/v1/messages/count_tokens"];

/// Whether `method` `path_and_query` is one of the CLI's own calls.
pub fn allowed(method: &str, path_and_query: &str) -> bool {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    method == "POST" && PATHS.contains(&path) && matches!(query, "" | "beta=true")
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn only_the_clis_calls_pass() {
        for ok in [
            "/v1/messages?beta=true",
            "/v1/messages",
            "/v1/messages/count_tokens?beta=true",
        ] {
            assert!(allowed("POST", ok), "{ok}");
        }
        for (m, p) in [
            ("GET", "/v1/files"),
            ("DELETE", "/v1/files/file_1"),
            ("PUT", "/v1/files/file_1"),
            ("POST", "/v1/messages/batches"),
            ("GET", "/v1/messages/batches/b1/results"),
            ("GET", "/v1/messages?beta=true"),
            ("POST", "/v1/messages/../files"),
            ("POST", "/v1/messages?beta=true&x=1"),
            ("POST", "/v1/models"),
            ("POST", "//v1/messages"),
        ] {
            assert!(!allowed(m, p), "{m} {p}");
        }
    }
}
