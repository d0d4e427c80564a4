//! Daytona's answers as errors a user understands. The API and the toolbox use two error
//! shapes (NestJS `{statusCode, error, message}` and Go `{statusCode, message, code}`),
//! and many file routes answer with an empty body: the message is taken from either
//! shape, and never required.

use harvest_sandbox::SandboxError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DaytonaError {
    #[error(
        "no Daytona API key: set DAYTONA_API_KEY in the environment of the harvest command \
         (create one at https://app.daytona.io/dashboard/keys)"
    )]
    NoKey,
    #[error("Daytona refused the API key ({0}); check DAYTONA_API_KEY and DAYTONA_API_URL")]
    Unauthorized(String),
    #[error("Daytona denied this ({0}); the API key may lack the needed permission")]
    Forbidden(String),
    #[error("not found on Daytona: {0}")]
    NotFound(String),
    #[error("Daytona: conflict ({0})")]
    Conflict(String),
    #[error("Daytona's rate limit or quota was hit ({message}); retried after {waited:?}")]
    RateLimited { message: String, waited: Duration },
    #[error("Daytona refused the request: {0}")]
    BadRequest(String),
    #[error("Daytona: the command has already finished ({0})")]
    Gone(String),
    #[error("Daytona answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("cannot reach Daytona at {url}: {message} (network down? DAYTONA_API_URL wrong?)")]
    Connection { url: String, message: String },
    #[error("Daytona timed out: {0}")]
    Timeout(String),
    #[error("the Daytona sandbox {id} failed: {reason}")]
    SandboxFailed { id: String, reason: String },
    #[error("unexpected answer from Daytona: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, DaytonaError>;

impl DaytonaError {
    /// From a non-2xx status and its body (possibly empty).
    pub fn from_status(status: u16, body: &[u8]) -> DaytonaError {
        let message = message_of(body).unwrap_or_else(|| reason(status).to_owned());
        match status {
            400 => DaytonaError::BadRequest(message),
            401 => DaytonaError::Unauthorized(message),
            403 => DaytonaError::Forbidden(message),
            404 => DaytonaError::NotFound(message),
            408 => DaytonaError::Timeout(message),
            409 => DaytonaError::Conflict(message),
            410 => DaytonaError::Gone(message),
            429 => DaytonaError::RateLimited {
                message,
                waited: Duration::ZERO,
            },
            _ => DaytonaError::Server { status, message },
        }
    }

    /// Worth trying again after a pause: the service is busy or unreachable for now.
    pub fn is_transient(&self) -> bool {
        match self {
            DaytonaError::RateLimited { .. } | DaytonaError::Connection { .. } => true,
            DaytonaError::Server { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<DaytonaError> for SandboxError {
    fn from(e: DaytonaError) -> SandboxError {
        match e {
            DaytonaError::Connection { .. } => SandboxError::Disconnected(e.to_string()),
            other => SandboxError::Spawn(other.to_string()),
        }
    }
}

/// `message` from either error shape (NestJS or Go), `error` from `{"error": …}` bodies;
/// several messages joined.
fn message_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let m = &v["message"];
    let text = match m {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => v["error"].as_str()?.to_owned(),
    };
    // What Daytona says is shown to the user: bounded, one line.
    let one_line: String = text.chars().filter(|c| !c.is_control()).take(500).collect();
    Some(one_line)
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        408 => "request timeout",
        409 => "conflict",
        410 => "gone",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_and_empty_bodies_give_a_message() {
        let nest = br#"{"path":"/api/sandbox/x","statusCode":404,"error":"Not Found","message":"Sandbox with ID or name x not found"}"#;
        assert_eq!(
            DaytonaError::from_status(404, nest).to_string(),
            "not found on Daytona: Sandbox with ID or name x not found"
        );
        let go = br#"{"statusCode":401,"message":"authentication failed: Bearer token is invalid","code":"UNAUTHORIZED"}"#;
        assert!(matches!(
            DaytonaError::from_status(401, go),
            DaytonaError::Unauthorized(m) if m.contains("Bearer token is invalid")
        ));
        assert!(matches!(
            DaytonaError::from_status(404, b""),
            DaytonaError::NotFound(m) if m == "not found"
        ));
        let pty = br#"{"error":"pty exists"}"#;
        assert!(
            DaytonaError::from_status(409, pty)
                .to_string()
                .contains("pty exists")
        );
        let many = br#"{"statusCode":400,"message":["cpu must not be less than 0","bad"]}"#;
        assert!(
            DaytonaError::from_status(400, many)
                .to_string()
                .contains("0, bad")
        );
        let esc = b"{\"message\":\"x\\u001b]0;OWNED\\u0007y\"}";
        assert!(
            !DaytonaError::from_status(500, esc)
                .to_string()
                .contains('\u{1b}')
        );
    }

    #[test]
    fn only_busy_or_unreachable_is_transient() {
        assert!(DaytonaError::from_status(429, b"").is_transient());
        assert!(DaytonaError::from_status(503, b"").is_transient());
        assert!(!DaytonaError::from_status(401, b"").is_transient());
        assert!(!DaytonaError::from_status(400, b"").is_transient());
    }
}
