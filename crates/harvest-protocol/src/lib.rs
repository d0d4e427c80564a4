//! Harvest's wire contract, declared once: identities, the normalized event model that
//! every client renders, the JSON-RPC 2.0 envelope and the table of methods.
//!
//! This crate has no runtime and does no I/O, so any client (the TUI, scripts, an editor
//! plugin) can depend on it cheaply. `docs/protocol.md` documents the same contract for
//! tools that do not speak Rust; change both in the same commit.

pub mod event;
pub mod ids;
pub mod mcp;
pub mod methods;
pub mod rpc;
pub mod secret;

pub use event::{Event, EventBody, SessionState, ToolOutput};
pub use ids::{Seq, SessionId};
pub use secret::Secret;

/// A name for content on the wire: the first 16 hex digits of its SHA-256 (a reviewed
/// patch, a trusted `.mcp.json`), so that "the same bytes" is checked the same way on
/// both sides.
pub fn content_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Wire protocol version. A client and a daemon with different versions refuse to talk
/// (additive changes within a version only add optional fields and new event types).
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line either side accepts, in bytes including the newline. A line longer than
/// this is refused with [`rpc::codes::FRAME_TOO_LARGE`] and the connection is closed, since
/// the rest of an oversized line cannot be re-synchronised reliably. 16 MiB leaves room
/// for events that embed whole files (an Edit result carries the original file).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
