//! A value that must never reach disk or logs: API keys and tokens forwarded to the agent.

use serde::{Deserialize, Serialize};
use std::fmt;

/// In the variables a client sends with a session: the path of the user's Claude
/// subscription login (`.credentials.json`), when the environment holds no key or token.
/// A path, not a secret: the file stays in this machine's HOME, and only the model proxy
/// outside the sandbox reads it.
pub const LOGIN_VAR: &str = "HARVEST_CLAUDE_LOGIN";

/// Serialises as its plain value (it has to cross the socket once, from the client that
/// holds the key to the daemon), but prints as `***` in `Debug` and `Display`, so a
/// `tracing` field or an error message cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The plain value, for the one place that needs it: the agent's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("sk-ant-very-secret");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"sk-ant-very-secret\"");
    }
}
