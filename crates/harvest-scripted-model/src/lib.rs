//! A scripted model server: a local, Messages-API-compatible HTTP server that plays
//! scripted turns (text, thinking, tool calls, delays, HTTP errors, broken streams), so
//! the real `claude` CLI runs fully offline through `ANTHROPIC_BASE_URL`.
//!
//! It is a fake and says so: it serves the tests and `harvest demo`. It keeps no
//! conversation state: each request is answered from the prompt it carries and the number
//! of tool results after it, so one server serves any number of concurrent sessions. The
//! script format is described in this crate's README.

mod body;
mod request;
mod script;
mod server;
mod sse;

pub use request::RecordedRequest;
pub use script::{HttpError, Script, ScriptError, Step, ToolUse, Turn, Usage};
pub use server::{ModelServer, ServerError};
