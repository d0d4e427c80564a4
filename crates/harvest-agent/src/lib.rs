//! Driving the real `claude` CLI in its stream-json mode (the protocol the official Agent
//! SDKs speak; see `shared/reference/claude-stream-json.md`).
//!
//! This crate is pure: it builds the command line and the stdin messages, and turns stdout
//! lines into [`harvest_protocol::EventBody`] values. Spawning the process belongs to a
//! sandbox provider, and storing the events to the daemon, so the same driver serves a
//! local jail, a container or a remote sandbox whose log lives on the far side.

pub mod command;
pub mod input;
pub mod locate;
pub mod parse;

pub use command::{AgentCommand, ClaudeOptions, Permissions};
pub use locate::{LocateError, locate_claude};
pub use parse::{AgentState, StreamParser};
