//! `harvest.toml`: the shipped default documents every key; a user's copy in the XDG
//! config folder overrides what it names.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid Harvest configuration: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    pub sandbox: SandboxConfig,
    pub docker: DockerConfig,
    pub daytona: DaytonaConfig,
    pub keys: KeysConfig,
    pub notify: NotifyConfig,
    pub github: GitHubConfig,
    pub mcp: McpConfig,
    pub setup: SetupConfig,
}

/// `[mcp]`: MCP servers the sandbox image brings (containers and Daytona sandboxes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Start the image's memory server (a knowledge graph the agent keeps in its HOME).
    pub memory: bool,
    /// A knowledge graph (JSON: `entities` and `relations`, or the server's own JSONL)
    /// the memory starts from in a new session.
    pub memory_seed: Option<PathBuf>,
    /// The secrets each of the user's stdio MCP servers may take into the sandbox, by
    /// server: `db = ["DB_TOKEN"]` (variables of its `env` in `~/.claude.json`). A server
    /// whose environment holds an unnamed secret is left out.
    pub secrets: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[setup]`: the repository's setup, run in a new session's sandbox before its first
/// turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetupConfig {
    /// The script, relative to the workspace.
    pub script: String,
    /// Keep the state a successful setup leaves (what it made in the workspace, and the
    /// agent's HOME) in containers, keyed by the script and the repository's lockfiles,
    /// so that the next session of that repository starts from it.
    pub cache: bool,
    /// The most one kept setup may take on disk, in MiB.
    pub cache_max_mb: u64,
}

impl Default for SetupConfig {
    fn default() -> Self {
        SetupConfig {
            script: ".harvest/setup".into(),
            cache: true,
            cache_max_mb: 4096,
        }
    }
}

/// `[github]`: where `harvest pr` opens pull requests. GITHUB_API_URL in the client's
/// environment wins; the token is only ever taken from GH_TOKEN, GITHUB_TOKEN or
/// `gh auth token`, never from a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitHubConfig {
    /// GitHub's REST API (`https://HOST/api/v3` for an Enterprise server); empty: the one
    /// for the remote's host (api.github.com for github.com).
    pub api_url: Option<String>,
}

/// `[docker]`: the containers of `--sandbox docker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The sandbox image (built by `sandbox-image/build.sh`).
    pub image: String,
    /// CPUs per container (0: no limit).
    pub cpus: f64,
    /// Memory per container in MiB (0: no limit).
    pub memory_mb: u64,
    /// Processes per container (0: no limit).
    pub pids: i64,
    /// Disk per session in MiB, its container's writable layer and HOME volume
    /// together (0: no limit).
    pub disk_mb: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: "harvest-sandbox:latest".into(),
            cpus: 0.0,
            memory_mb: 0,
            pids: 4096,
            disk_mb: 20480,
        }
    }
}

/// `[daytona]`: the remote sandboxes of `--sandbox daytona`. DAYTONA_API_URL and
/// DAYTONA_TARGET in the client's environment win over `api_url` and `target`; the key is
/// only ever taken from DAYTONA_API_KEY, never from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaytonaConfig {
    pub api_url: Option<String>,
    pub target: Option<String>,
    /// The snapshot sandboxes are made from (the image of sandbox-image/, pushed to Daytona).
    pub snapshot: String,
    /// Minutes without activity before Daytona stops a sandbox (0: never).
    pub auto_stop_minutes: u32,
    /// Minutes stopped before Daytona archives it.
    pub auto_archive_minutes: u32,
    /// Seconds to wait for a sandbox to start.
    pub create_timeout_secs: u64,
    /// Milliseconds between the activity calls an open turn makes so auto-stop does not
    /// stop it mid-turn (0: a third of `auto_stop_minutes`).
    pub keepalive_ms: u64,
}

impl Default for DaytonaConfig {
    fn default() -> Self {
        DaytonaConfig {
            api_url: None,
            target: None,
            snapshot: "harvest-sandbox".into(),
            auto_stop_minutes: 15,
            auto_archive_minutes: 10080,
            create_timeout_secs: 60,
            keepalive_ms: 0,
        }
    }
}

/// `[notify]`: what happens when a session finishes a turn, fails or needs input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// A shell command run by the daemon with the event as JSON on stdin (empty: none).
    pub hook: Option<String>,
}

/// `[keys]`: the terminal client's bindings. `prefix` is the tmux-like prefix key;
/// `[keys.bind]` maps an action to its keys (`"prefix d"` means after the prefix). The
/// client checks the names and says which actions and keys exist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    pub prefix: Option<String>,
    pub bind: std::collections::BTreeMap<String, Vec<String>>,
    /// Let the client take the mouse wheel (default); `false` leaves the mouse to the
    /// terminal (its own selection and copy).
    pub mouse: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Path of the `claude` CLI; empty means `HARVEST_CLAUDE`, then `PATH`.
    pub claude_path: Option<PathBuf>,
    /// Model alias or id passed to the CLI; empty means the CLI's default.
    pub model: Option<String>,
    /// API retries before a turn fails (`CLAUDE_CODE_MAX_RETRIES`).
    pub max_retries: u32,
    /// Extra environment variable names forwarded from the client to the agent, beside
    /// the credential variables that are always forwarded.
    pub forward_env: Vec<String>,
    /// Seconds to wait after an interrupt before escalating to SIGTERM, then to killing
    /// everything in the sandbox.
    pub cancel_grace_secs: f64,
    /// `bypass` (the sandbox is the boundary) or `ask` (tool calls wait for an answer).
    pub permissions: String,
    /// Most API round-trips in one turn (`--max-turns`); 0: no limit.
    pub max_turns: u32,
    /// Most a session may spend, in USD (passed to the CLI and enforced from each turn's
    /// cost); 0: no limit.
    pub max_budget_usd: f64,
    /// Stop an idle session's agent after this many seconds (its next message resumes it);
    /// 0: never.
    pub idle_timeout_secs: u64,
    /// Most sessions running a turn at once, daemon-wide; a message beyond that waits as
    /// `queued`. 0: no limit.
    pub max_running_sessions: usize,
    /// What of the user's own Claude Code configuration comes along into every session
    /// (read-only): any of `memory` (CLAUDE.md), `settings`, `commands`, `skills`,
    /// `agents`, `output-styles`, `plugins`, `mcp` (user-scope and this project's servers from
    /// `~/.claude.json`). Empty: nothing. `harvest new --no-user-config` runs one clean.
    pub user_config: Vec<String>,
}

/// Every part of the user's configuration `agent.user_config` can name.
pub const USER_CONFIG_PARTS: &[&str] = &[
    "memory",
    "settings",
    "commands",
    "skills",
    "agents",
    "output-styles",
    "plugins",
    "mcp",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `local` (bubblewrap), `docker` (a container from the sandbox image) or `daytona`
    /// (a remote Daytona sandbox).
    pub default: String,
    /// Give the agent the host's network (true) or none (false).
    pub network: bool,
    /// Path of `bwrap`; empty means `PATH`.
    pub bwrap_path: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            claude_path: None,
            model: None,
            max_retries: 4,
            forward_env: Vec::new(),
            cancel_grace_secs: 2.0,
            permissions: "bypass".into(),
            max_turns: 0,
            max_budget_usd: 0.0,
            idle_timeout_secs: 0,
            max_running_sessions: 0,
            user_config: USER_CONFIG_PARTS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            default: "local".into(),
            network: true,
            bwrap_path: None,
        }
    }
}

impl Config {
    /// The user's file if it exists, else the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        // An empty string in the file means "not set".
        if cfg.agent.claude_path.as_deref() == Some(Path::new("")) {
            cfg.agent.claude_path = None;
        }
        if cfg.agent.model.as_deref() == Some("") {
            cfg.agent.model = None;
        }
        if cfg.sandbox.bwrap_path.as_deref() == Some(Path::new("")) {
            cfg.sandbox.bwrap_path = None;
        }
        if cfg
            .notify
            .hook
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            cfg.notify.hook = None;
        }
        // The setup script is a path in the workspace, run by a shell: a plain relative one.
        let script = &cfg.setup.script;
        let plain = !script.is_empty()
            && !script.starts_with('/')
            && script
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
            && script
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !plain {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: format!(
                    "setup.script = {script:?} is not a plain path inside the workspace \
                     (letters, digits, `.`, `_`, `-` and `/`, no `..`): e.g. \".harvest/setup\""
                ),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_parses_to_the_built_in_defaults() {
        let cfg = Config::parse(crate::DEFAULT_CONFIG_TOML, Path::new("harvest.toml")).unwrap();
        let def = Config::default();
        assert_eq!(cfg.agent.max_retries, def.agent.max_retries);
        assert_eq!(cfg.agent.claude_path, None);
        assert_eq!(cfg.sandbox.default, "local");
        assert!(cfg.sandbox.network);
    }

    #[test]
    fn unknown_keys_are_named_in_the_error() {
        let err = Config::parse("[agent]\nmodle = \"x\"\n", Path::new("/c/harvest.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("modle") && err.contains("/c/harvest.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_setup_script_outside_the_workspace_is_refused() {
        for bad in ["../x", "/etc/passwd", "a b", "a/../b", ""] {
            let err = Config::parse(
                &format!("[setup]\nscript = {bad:?}\n"),
                Path::new("/c/harvest.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("setup.script"), "{bad}: {err}");
        }
        let ok = Config::parse("[setup]\nscript = \"scripts/boot.sh\"\n", Path::new("h"));
        assert_eq!(ok.unwrap().setup.script, "scripts/boot.sh");
    }

    #[test]
    fn missing_file_means_defaults() {
        let cfg = Config::load(Path::new("/nonexistent/harvest.toml")).unwrap();
        assert_eq!(cfg.agent.max_retries, 4);
    }
}
