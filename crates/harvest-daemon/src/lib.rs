//! The Harvest daemon: one per user. It owns sandboxes and agent sessions and serves
//! JSON-RPC over a private Unix socket.
//!
//! Data flow (DESIGN principle 1): the agent writes its stdout to a durable log; a session
//! actor reads the log by offset, parses lines into events, commits them to the store with
//! their seq and the new offset, and only then broadcasts them. Subscribers replay from the
//! store and continue live, so what a client sees is always what is stored.

mod connection;
mod context;
mod create;
mod dispatch;
mod failpoint;
mod fake_remote;
mod hook;
mod listener;
mod policy;
mod providers;
mod redact;
mod registry;
mod review;
mod session;
mod setup;
mod subscription;
mod user_config;

pub use context::Daemon;
pub use listener::{ListenError, private_files, serve};
