//! The CLI's command line and environment for one long-lived conversation process.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// Environment variables the CLI reads for credentials and the API origin. They are taken
/// from the client's environment at session creation and reach only the agent. Without
/// any of them the CLI fails every turn with "Not logged in"; a base URL alone counts, as
/// it may front a gateway that needs no key.
pub const FORWARDED_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// Who decides whether a tool call may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permissions {
    /// The sandbox is the boundary: every call runs (the default).
    #[default]
    Bypass,
    /// The CLI asks the host (`can_use_tool` control requests) and waits for an answer.
    Ask,
}

#[derive(Debug, Clone, Default)]
pub struct ClaudeOptions {
    pub permissions: Permissions,
    pub model: Option<String>,
    /// Resume this CLI session id instead of starting a new conversation.
    pub resume: Option<String>,
    /// Start a new conversation with this id (a UUID), so the id is known before the first
    /// line of output and the transcript can be found later.
    pub session_id: Option<String>,
    /// `CLAUDE_CODE_MAX_RETRIES`; a small number makes a dead API visible quickly.
    pub max_retries: Option<u32>,
    pub append_system_prompt: Option<String>,
    /// With `resume`: continue in a new conversation that starts as a copy (`--fork-session`).
    pub fork: bool,
    /// `--max-turns`: API round-trips per turn.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd`: what this process may still spend.
    pub max_budget_usd: Option<f64>,
    /// `--settings`: the user's own settings, as JSON.
    pub settings: Option<String>,
    /// `--mcp-config`: MCP servers, as JSON.
    pub mcp_config: Option<String>,
    /// `--strict-mcp-config`: only those; the project's `.mcp.json` is not started.
    pub strict_mcp: bool,
    /// The remote MCP servers `mcp_config` reaches through the supervisor's relays.
    pub mcp_relays: Vec<harvest_protocol::mcp::McpTarget>,
    /// Secrets the user named for their stdio MCP servers: in the agent's environment,
    /// where `mcp_config` refers to them (never on its command line).
    pub secret_env: BTreeMap<String, harvest_protocol::Secret>,
    /// `--plugin-dir`: the user's plugins, as the sandbox shows them.
    pub plugin_dirs: Vec<String>,
}

/// What to run inside the sandbox: the program, its arguments and environment.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Plain (non-secret) variables.
    pub env: BTreeMap<String, String>,
    /// What this process may still spend: the model proxy holds it to this, whoever in
    /// the sandbox sends the request (the CLI's own `--max-budget-usd` sees only its own).
    pub budget_usd: Option<f64>,
    /// Remote MCP servers the sandbox relays for the agent (see `ClaudeOptions`).
    pub mcp_relays: Vec<harvest_protocol::mcp::McpTarget>,
    /// Secret variables of the agent's environment (see `ClaudeOptions::secret_env`).
    pub secret_env: BTreeMap<String, harvest_protocol::Secret>,
}

impl AgentCommand {
    /// The stream-json conversation process, as the Agent SDK starts it, minus the SDK's
    /// `--system-prompt ""` (which would drop Claude Code's own system prompt).
    pub fn claude(program: impl Into<OsString>, opts: &ClaudeOptions) -> AgentCommand {
        let mut args: Vec<OsString> = [
            "--output-format",
            "stream-json",
            "--verbose",
            "--input-format",
            "stream-json",
            "--include-partial-messages",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        match opts.permissions {
            // The sandbox is the boundary; inside it the agent does not ask.
            Permissions::Bypass => args.push("--dangerously-skip-permissions".into()),
            // Questions come to the host as control requests on stdout.
            Permissions::Ask => {
                args.push("--permission-prompt-tool=stdio".into());
                args.push("--permission-mode=default".into());
                // The settings files the CLI would read (its HOME's, the workspace's
                // `.claude/settings*.json`) are the agent's to write, and the CLI reads
                // them live: a tool could add allow rules and hooks, and later calls
                // would run without asking. None is read; the user's own settings come
                // on the command line (`--settings`), where no tool can change them.
                args.push("--setting-sources=".into());
            }
        }
        // `--flag=value` keeps a value that starts with '-' from being read as a flag.
        if let Some(model) = &opts.model {
            args.push(format!("--model={model}").into());
        }
        if let Some(id) = &opts.resume {
            args.push(format!("--resume={id}").into());
            if opts.fork {
                args.push("--fork-session".into());
            }
        } else if let Some(id) = &opts.session_id {
            args.push(format!("--session-id={id}").into());
        }
        if let Some(n) = opts.max_turns {
            args.push(format!("--max-turns={n}").into());
        }
        if let Some(usd) = opts.max_budget_usd {
            args.push(format!("--max-budget-usd={usd:.4}").into());
        }
        if let Some(s) = &opts.settings {
            args.push(format!("--settings={s}").into());
        }
        if let Some(m) = &opts.mcp_config {
            args.push(format!("--mcp-config={m}").into());
        }
        if opts.strict_mcp {
            args.push("--strict-mcp-config".into());
        }
        for dir in &opts.plugin_dirs {
            args.push(format!("--plugin-dir={dir}").into());
        }
        if let Some(p) = &opts.append_system_prompt {
            args.push(format!("--append-system-prompt={p}").into());
        }
        let mut env = BTreeMap::new();
        // Only Messages-API traffic: no telemetry or update checks from a daemon's agent.
        env.insert(
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".to_owned(),
        );
        // The uid inside the jail is not root, but a container may run as root; the CLI
        // refuses to skip permissions as root unless told it is sandboxed, which it is.
        env.insert("IS_SANDBOX".into(), "1".to_owned());
        env.insert("CLAUDE_CODE_ENTRYPOINT".into(), "sdk-harvest".to_owned());
        // The CLI reports `running`/`idle` itself (`system/session_state_changed`), as it
        // does for the SDKs: how the daemon knows a turn ended, folded messages and all.
        env.insert("CLAUDE_CODE_SDK_READS_SESSION_STATE".into(), "1".to_owned());
        env.insert(
            "CLAUDE_CODE_MAX_RETRIES".into(),
            opts.max_retries.unwrap_or(4).to_string(),
        );
        AgentCommand {
            program: program.into(),
            args,
            env,
            budget_usd: opts.max_budget_usd,
            mcp_relays: opts.mcp_relays.clone(),
            secret_env: opts.secret_env.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_json_flags_are_complete_and_values_use_equals_form() {
        let cmd = AgentCommand::claude(
            "/opt/claude",
            &ClaudeOptions {
                model: Some("-weird".into()),
                resume: Some("abc".into()),
                ..Default::default()
            },
        );
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for needed in [
            "--output-format",
            "--verbose",
            "--input-format",
            "--include-partial-messages",
        ] {
            assert!(
                args.iter().any(|a| a == needed),
                "missing {needed}: {args:?}"
            );
        }
        assert!(args.contains(&"--model=-weird".to_owned()));
        assert!(args.contains(&"--resume=abc".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--system-prompt")));
    }
}
