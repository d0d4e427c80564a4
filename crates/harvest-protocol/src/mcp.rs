//! What the daemon, the sandboxes and the supervisor's relay say of an MCP server the
//! agent reaches over HTTP: where it is and the credentials added on the way out, which
//! never enter a sandbox.

use crate::Secret;
use serde::{Deserialize, Serialize};

/// A remote (HTTP or SSE) MCP server, reached by the agent through its supervisor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct McpTarget {
    /// The server's name in the user's configuration.
    pub server: String,
    /// Its URL as the user configured it.
    pub url: String,
    /// Headers put on every request on the way out (its credentials).
    pub headers: Vec<(String, Secret)>,
    /// The legacy SSE transport, whose server names the path messages are posted to:
    /// any path of the server's origin passes. Otherwise only the configured path does.
    pub any_path: bool,
}

/// The variable the agent's `--mcp-config` names for the `index`th relayed server's
/// address (`http://127.0.0.1:PORT`), set once the relay listens.
pub fn relay_address_var(index: usize) -> String {
    format!("HARVEST_MCP_{index}")
}

/// The variable holding the token the agent's requests present to the relays (in
/// [`RELAY_HEADER`]): worthless beyond this agent process.
pub const RELAY_TOKEN_VAR: &str = "HARVEST_MCP_TOKEN";
pub const RELAY_HEADER: &str = "x-harvest-relay";
