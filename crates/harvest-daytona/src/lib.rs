//! The Daytona client the `daytona` sandbox provider is built on (issue #13, in progress):
//! the control-plane API (create, wait for `started`, find by label, start, stop, delete,
//! preview links), the toolbox (one-shot and session commands, input, files, git), and
//! the session command's log followed over the WebSocket and split into stdout and
//! stderr, resumable by offset. Built from `../shared/reference/daytona-api.md` (Daytona
//! v0.190.0); every call carries the key and `X-Daytona-SDK-Version`, and a 429 waits for
//! the server's retry hint.

pub mod api;
pub mod demux;
pub mod error;
pub mod http;
pub mod keepalive;
pub mod logs;
pub mod provider;
pub mod remote;
pub mod toolbox;
pub mod workspace;

pub use error::DaytonaError;
pub use provider::{DaytonaOptions, DaytonaProvider};
