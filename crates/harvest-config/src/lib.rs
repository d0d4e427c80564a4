//! Where Harvest keeps things, and the user's configuration.
//!
//! Every path honours the XDG variables (through `directories`), so a test isolates the
//! whole product in a temporary folder by setting `XDG_*` and `HOME`.

mod config;
mod paths;

pub use config::{AgentConfig, Config, ConfigError, KeysConfig, NotifyConfig, SandboxConfig};
pub use paths::{Paths, PathsError};

/// The documented default configuration, as shipped in `config/harvest.toml`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/harvest.toml");
