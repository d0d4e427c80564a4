//! JSON-RPC 2.0 envelope: one JSON object per line, in both directions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error codes on the wire. The JSON-RPC ones are standard; the rest are Harvest's and are
/// listed in `docs/protocol.md`.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// A call other than `hello` came before `hello`.
    pub const HELLO_REQUIRED: i64 = -32001;
    /// Client and daemon speak different protocol versions.
    pub const VERSION_MISMATCH: i64 = -32002;
    /// A line exceeded [`crate::MAX_FRAME_BYTES`]; the connection is closed after this.
    pub const FRAME_TOO_LARGE: i64 = -32003;
    pub const SESSION_NOT_FOUND: i64 = -32010;
    /// The session exists but cannot do that now (e.g. send to an exited session).
    pub const SESSION_STATE: i64 = -32011;
    /// An id prefix matched more than one session.
    pub const SESSION_AMBIGUOUS: i64 = -32012;
    /// The sandbox could not be made (bubblewrap missing, no user namespaces, bad workspace).
    pub const SANDBOX_UNAVAILABLE: i64 = -32020;
    /// The agent CLI could not be found or started.
    pub const AGENT_UNAVAILABLE: i64 = -32021;
    /// No API key, token or base URL was given for the agent.
    pub const CREDENTIALS_MISSING: i64 = -32022;
    /// The daemon's store failed (disk full, corrupt database).
    pub const STORE_FAILED: i64 = -32030;
    /// The daemon is shutting down.
    pub const SHUTTING_DOWN: i64 = -32040;
    /// The peer lives in another PID or mount namespace (a sandbox, a container).
    pub const PEER_REFUSED: i64 = -32041;
    /// The daemon has as many connections as it takes; try again.
    pub const TOO_MANY_CONNECTIONS: i64 = -32042;
}

/// A request id: JSON-RPC allows numbers and strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    String(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    pub id: RequestId,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// `null` only when the request could not be read far enough to find its id.
    pub id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: RequestId, result: Value) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id: Some(id),
            result: Some(result),
            error: None,
        }
    }
    pub fn err(id: Option<RequestId>, error: RpcError) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// Anything the daemon may send: a response to a call, or a notification (a frame with a
/// `method`).
#[derive(Debug, Clone)]
pub enum Incoming {
    Notification(Notification),
    Response(Response),
}

/// Read in one pass into the fields either kind may have, then told apart by `method`:
/// an untagged enum would buffer every frame into an intermediate tree and parse it again
/// for each variant, which doubled the cost of a long replay on the client.
impl<'de> Deserialize<'de> for Incoming {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Frame {
            jsonrpc: String,
            #[serde(default)]
            method: Option<String>,
            #[serde(default)]
            params: Value,
            #[serde(default)]
            id: Option<RequestId>,
            #[serde(default)]
            result: Option<Value>,
            #[serde(default)]
            error: Option<RpcError>,
        }
        let f = Frame::deserialize(d)?;
        Ok(match f.method {
            Some(method) => Incoming::Notification(Notification {
                jsonrpc: f.jsonrpc,
                method,
                params: f.params,
            }),
            None => Incoming::Response(Response {
                jsonrpc: f.jsonrpc,
                id: f.id,
                result: f.result,
                error: f.error,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_and_responses_are_told_apart() {
        let n: Incoming =
            serde_json::from_str(r#"{"jsonrpc":"2.0","method":"event/appended","params":{}}"#)
                .unwrap();
        assert!(matches!(n, Incoming::Notification(_)));
        let r: Incoming = serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert!(matches!(r, Incoming::Response(_)));
        let e: Incoming = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
        )
        .unwrap();
        assert!(matches!(e, Incoming::Response(_)));
    }
}
