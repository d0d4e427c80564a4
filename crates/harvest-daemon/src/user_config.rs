//! The user's own Claude Code configuration, brought into a session read-only: what
//! their `claude` would load from `~/.claude` (or `$CLAUDE_CONFIG_DIR`) and
//! `~/.claude.json`, through the CLI's own ways in where it has them.
//!
//! - `CLAUDE.md`, `commands/`, `skills/`, `agents/`, `output-styles/`: bound read-only at
//!   the same place under the agent's HOME (the CLI has no flag for them; a bind is not
//!   a copy, and the agent cannot change the user's files through it);
//! - `settings.json`: `--settings`, its paths into the user's Claude folder rewritten to
//!   where the sandbox has it;
//! - installed plugins: `--plugin-dir`, each plugin's folder bound read-only (see
//!   `plugins.rs`);
//! - MCP servers, user scope and this project's (keyed in `~/.claude.json` by the
//!   project's absolute path here): `--mcp-config`, with no secret inside unless the user
//!   named it: remote servers through the supervisor's relay, which adds their
//!   credentials outside the sandbox (see `mcp.rs`).
//!
//! `agent.user_config` chooses the parts; `harvest new --no-user-config` takes none.

mod mcp;
mod plugins;

use crate::context::Daemon;
use crate::session::spec::SessionSpec;
use harvest_protocol::Secret;
use harvest_protocol::mcp::McpTarget;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folders and files bound into the agent's HOME, by config part.
const BOUND: &[(&str, &str)] = &[
    ("memory", "CLAUDE.md"),
    ("commands", "commands"),
    ("skills", "skills"),
    ("agents", "agents"),
    ("output-styles", "output-styles"),
];

#[derive(Debug, Default)]
pub struct Collected {
    /// (host path, path relative to the agent's HOME).
    pub binds: Vec<(PathBuf, String)>,
    pub settings: Option<String>,
    pub mcp: Option<String>,
    /// Remote MCP servers the supervisor relays, with their credentials.
    pub relays: Vec<McpTarget>,
    /// Secrets named for stdio servers (`[mcp.secrets]`), for the agent's environment.
    pub secret_env: BTreeMap<String, Secret>,
    /// `server: VAR` for each of them, to show.
    pub secrets_inside: Vec<String>,
    /// The plugin folders, as the agent sees them.
    pub plugin_dirs: Vec<String>,
    /// What was left out, and why (names only, never values).
    pub notes: Vec<String>,
}

/// What a session's sandbox can do for the user's configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// The agent's HOME inside the sandbox (for rewriting paths), when known.
    pub agent_home: Option<&'a Path>,
    /// The sandbox relays remote MCP servers (`Sandbox::relays_mcp`).
    pub relays: bool,
}

/// What a new session says of the user's configuration: what came along, and as errors
/// (for the user to act on: a secret to name, a file to fix) what was left out and why.
pub fn events(
    daemon: &Daemon,
    spec: &SessionSpec,
    reach: Reach<'_>,
) -> Vec<harvest_protocol::EventBody> {
    use harvest_protocol::EventBody;
    let user = collect_at(daemon, spec, reach);
    let mut brought: Vec<&str> = user
        .binds
        .iter()
        .filter_map(|(_, rel)| rel.strip_prefix(".claude/"))
        .collect();
    if user.settings.is_some() {
        brought.push("settings.json");
    }
    if !user.plugin_dirs.is_empty() {
        brought.push("plugins");
    }
    if user.mcp.is_some() && spec.user_config {
        brought.push("MCP servers");
    }
    let mut out = Vec::new();
    if project_mcp(spec) == ProjectMcp::Untrusted {
        out.push(EventBody::Error {
            message: "this project's .mcp.json is not trusted (or changed since it was), so \
                      its servers do not start: answer yes when `harvest new` asks, or start \
                      the session with --trust-project-mcp"
                .into(),
        });
    }
    if !brought.is_empty() {
        out.push(EventBody::Sandbox {
            message: format!(
                "your Claude Code configuration came along, read-only: {}",
                brought.join(", ")
            ),
        });
    }
    if !user.secrets_inside.is_empty() {
        out.push(EventBody::Sandbox {
            message: format!(
                "secrets you named enter the sandbox, for their MCP servers: {}",
                user.secrets_inside.join(", ")
            ),
        });
    }
    out.extend(
        user.notes
            .into_iter()
            .map(|message| EventBody::Error { message }),
    );
    out
}

/// The project's own `.mcp.json`, which Claude Code starts only once the user trusted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectMcp {
    None,
    Trusted,
    Untrusted,
}

/// Whether the workspace has a `.mcp.json` and the user trusted exactly these bytes.
pub fn project_mcp(spec: &SessionSpec) -> ProjectMcp {
    match std::fs::read(spec.workspace.join(".mcp.json")) {
        Err(_) => ProjectMcp::None,
        Ok(bytes)
            if spec.trusted_mcp.as_deref() == Some(&harvest_protocol::content_name(&bytes)) =>
        {
            ProjectMcp::Trusted
        }
        Ok(_) => ProjectMcp::Untrusted,
    }
}

/// The user's Claude folder and `.claude.json`, as their own `claude` finds them (the
/// daemon runs as the user, with their HOME and CLAUDE_CONFIG_DIR).
fn claude_paths() -> Option<(PathBuf, PathBuf)> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let json = dir.join(".claude.json");
        return Some((dir, json));
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    Some((home.join(".claude"), home.join(".claude.json")))
}

/// What a session's sandbox is made with (binds), before the sandbox exists.
pub fn collect(daemon: &Daemon, spec: &SessionSpec) -> Collected {
    collect_at(daemon, spec, Reach::default())
}

/// Everything a session takes of the user's configuration.
pub fn collect_at(daemon: &Daemon, spec: &SessionSpec, reach: Reach<'_>) -> Collected {
    let agent_home = reach.agent_home;
    let mut out = Collected::default();
    // The image's own servers are the sandbox's, not the user's: they come either way.
    let image_memory = image_memory(daemon, spec, agent_home, &mut out);
    let paths = claude_paths().filter(|_| spec.user_config);
    let Some((dir, claude_json)) = paths else {
        if let Some(memory) = image_memory {
            let config = serde_json::json!({"mcpServers": {"memory": memory}});
            out.mcp = Some(config.to_string());
        }
        return out;
    };
    let parts = &daemon.config.agent.user_config;
    let wants = |p: &str| parts.iter().any(|x| x == p);
    for (part, name) in BOUND {
        let path = dir.join(name);
        if wants(part) && path.exists() {
            out.binds.push((path, format!(".claude/{name}")));
        }
    }
    let projects = project_keys(spec);
    if wants("plugins") {
        for (index, path) in plugins::installed(&dir, &projects, &mut out.notes)
            .into_iter()
            .enumerate()
        {
            let rel = plugins::home_path(index);
            if let Some(home) = agent_home {
                out.plugin_dirs.push(home.join(&rel).display().to_string());
            }
            out.binds.push((path, rel));
        }
    }
    let home_claude = agent_home.map(|h| h.join(".claude").display().to_string());
    let rewrite = |text: String| match &home_claude {
        Some(inside) => text.replace(&dir.display().to_string(), inside),
        None => text,
    };
    if wants("settings")
        && let Ok(text) = std::fs::read_to_string(dir.join("settings.json"))
    {
        match serde_json::from_str::<Value>(&text) {
            Ok(mut v) if v.is_object() => {
                out.notes.extend(without_secrets(&mut v));
                out.settings = Some(rewrite(v.to_string()));
            }
            _ => out.notes.push(format!(
                "your {} is not a JSON object; it was left out",
                dir.join("settings.json").display()
            )),
        }
    }
    if wants("mcp") || image_memory.is_some() {
        let mut servers = Map::new();
        if wants("mcp") {
            let configured = mcp::configured(&claude_json, &projects, &mut out.notes);
            // The tokens of the user's own logins to remote servers (`/mcp`).
            let oauth = std::fs::read_to_string(dir.join(".credentials.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .map(|v| v["mcpOAuth"].clone())
                .unwrap_or(Value::Null);
            let env = |k: &str| std::env::var(k).ok();
            let how = mcp::Placing {
                relays: reach.relays,
                named: &daemon.config.mcp.secrets,
                env: &env,
                oauth: &oauth,
            };
            let placed = mcp::place(configured, &how, &mut out.notes);
            servers = placed.servers;
            out.relays = placed.relays;
            out.secret_env = placed.secret_env;
            out.secrets_inside = placed.secrets_inside;
        }
        if let Some(memory) = image_memory {
            servers.insert("memory".into(), memory);
        }
        if !servers.is_empty() {
            let config = serde_json::json!({ "mcpServers": Value::Object(servers) });
            out.mcp = Some(rewrite(config.to_string()));
        }
    }
    out
}

/// Settings that would put a credential in the sandbox or route the model's traffic
/// around the proxy, which outrank nothing here: the credential helpers (commands that
/// print a key), and in `env` the model's credential and address variables and anything
/// named like a secret. What was taken out is said, by name.
const HELPERS: &[&str] = &[
    "apiKeyHelper",
    "awsAuthRefresh",
    "awsCredentialExport",
    "otelHeadersHelper",
];

fn without_secrets(settings: &mut Value) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(o) = settings.as_object_mut() else {
        return notes;
    };
    for helper in HELPERS {
        if o.remove(*helper).is_some() {
            notes.push(format!(
                "your settings' {helper} was left out: it would make a credential inside the sandbox (the model proxy outside it holds yours)"
            ));
        }
    }
    if let Some(env) = o.get_mut("env").and_then(Value::as_object_mut) {
        let secret = |k: &str| {
            let k = k.to_ascii_uppercase();
            k.starts_with("ANTHROPIC_")
                || k.starts_with("CLAUDE_CODE_OAUTH")
                || mcp::looks_secret(&k)
        };
        let dropped: Vec<String> = env.keys().filter(|k| secret(k)).cloned().collect();
        for k in &dropped {
            env.remove(k);
        }
        if !dropped.is_empty() {
            notes.push(format!(
                "your settings' env {} left out: no credential enters the sandbox, and the model is reached through Harvest's proxy",
                if dropped.len() == 1 {
                    format!("{} was", dropped[0])
                } else {
                    format!("{} were", dropped.join(", "))
                }
            ));
        }
    }
    notes
}

/// Where a memory seed is shown in the agent's HOME.
const SEED: &str = ".harvest/memory-seed.json";

/// The image's memory server (`[mcp] memory`), for sessions whose sandbox brings it (an
/// image's CLI: docker, daytona); its graph lives in the agent's HOME, starting from the
/// seed (bound read-only) in a new session.
fn image_memory(
    daemon: &Daemon,
    spec: &SessionSpec,
    agent_home: Option<&Path>,
    out: &mut Collected,
) -> Option<Value> {
    let cfg = &daemon.config.mcp;
    if !cfg.memory || spec.claude.is_some() {
        return None;
    }
    if let Some(seed) = &cfg.memory_seed {
        if seed.is_file() {
            out.binds.push((seed.clone(), SEED.into()));
        } else {
            out.notes.push(format!(
                "the memory seed {} is not a file; the memory starts empty",
                seed.display()
            ));
        }
    }
    // The server keeps JSONL; a seed in the {entities, relations} shape is turned into it.
    // The HOME is spelled out: the CLI starts MCP servers with a pared-down environment.
    let home = agent_home.map_or("$HOME".to_owned(), |h| h.display().to_string());
    let start = format!(
        r#"f="{home}/.harvest-memory.jsonl"; s="{home}/{SEED}"; if [ ! -f "$f" ] && [ -f "$s" ]; then python3 -c 'import json,sys
t=open(sys.argv[1]).read()
try:
    g=json.loads(t)
except ValueError:
    g=None
o=open(sys.argv[2],"w")
if isinstance(g,dict):
    for e in g.get("entities",[]): o.write(json.dumps(dict(e,type="entity"))+chr(10))
    for r in g.get("relations",[]): o.write(json.dumps(dict(r,type="relation"))+chr(10))
else:
    o.write(t)' "$s" "$f"; fi; MEMORY_FILE_PATH="$f" exec mcp-server-memory"#
    );
    Some(serde_json::json!({"type": "stdio", "command": "sh", "args": ["-c", start]}))
}

/// The keys a project has in `~/.claude.json`: the session's folder here, and for a
/// clone of a folder here, that folder.
fn project_keys(spec: &SessionSpec) -> Vec<String> {
    let mut keys = vec![spec.workspace.display().to_string()];
    if let Some(repo) = &spec.repo
        && Path::new(repo).is_absolute()
    {
        keys.push(repo.clone());
    }
    keys
}
