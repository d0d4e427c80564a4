//! Launch policy: what a session may be started with, and what its agent gets. Kept apart
//! from the RPC handlers so create, fork, resume and re-adoption all apply the same rules.

use crate::context::Daemon;
use crate::session::spec::SessionSpec;
use crate::user_config::ProjectMcp;
use harvest_agent::command::FORWARDED_ENV;
use harvest_agent::locate_claude;
use harvest_daytona::provider::CREDENTIAL_ENV as PROVIDER_ENV;
use harvest_protocol::Secret;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_sandbox::{AgentBinary, Network, SandboxSpec, WorkspaceSource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keep only the variables meant for the agent: the credential set and the config's list.
/// The providers take their own credentials (a remote service's key) first; those never
/// reach an agent, even when the config's list names them.
pub fn forwarded(daemon: &Daemon, env: BTreeMap<String, Secret>) -> BTreeMap<String, Secret> {
    for provider in daemon.providers.all() {
        provider.credentials(&env);
    }
    env.into_iter()
        .filter(|(k, v)| {
            !v.expose().is_empty()
                && !PROVIDER_ENV.contains(&k.as_str())
                && (FORWARDED_ENV.contains(&k.as_str())
                    || k == harvest_protocol::secret::LOGIN_VAR
                    || daemon.config.agent.forward_env.iter().any(|f| f == k))
        })
        .collect()
}

pub fn require_credentials(secrets: &BTreeMap<String, Secret>) -> Result<(), RpcError> {
    if FORWARDED_ENV
        .iter()
        .chain([&harvest_protocol::secret::LOGIN_VAR])
        .any(|k| secrets.contains_key(*k))
    {
        return Ok(());
    }
    Err(RpcError::new(
        codes::CREDENTIALS_MISSING,
        "no credential for the agent: log in with `claude` (a Pro or Max subscription: \
         Harvest finds that login and keeps it outside the sandbox), or make a long-lived \
         token with `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN, or set \
         ANTHROPIC_API_KEY (ANTHROPIC_BASE_URL for a gateway) in the environment of the \
         harvest command; `harvest auth` shows what Harvest finds, and `harvest demo` needs \
         none",
    ))
}

/// The host's `claude`, for providers that do not bring their own.
pub fn find_claude(daemon: &Daemon) -> Result<PathBuf, RpcError> {
    let env_path = std::env::var_os("HARVEST_CLAUDE").map(PathBuf::from);
    let explicit = match (&daemon.config.agent.claude_path, &env_path) {
        (Some(p), _) => Some((p.as_path(), "the config's agent.claude_path")),
        (None, Some(p)) if !p.as_os_str().is_empty() => Some((p.as_path(), "HARVEST_CLAUDE")),
        _ => None,
    };
    let path_var = std::env::var("PATH").ok();
    locate_claude(explicit, path_var.as_deref())
        .map_err(|e| RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()))
}

/// What the agent must not see even where a mount would show it: Harvest's own folders
/// and other sessions' workspaces (the local provider covers those that exist).
pub fn hidden_paths(
    paths: &harvest_config::Paths,
    store: &harvest_store::Store,
    own_workspace: &Path,
) -> Vec<PathBuf> {
    let mut hidden = harvest_folders(paths);
    if let Ok(workspaces) = store.workspaces() {
        hidden.extend(
            workspaces
                .into_iter()
                .map(PathBuf::from)
                .filter(|w| w != own_workspace && !own_workspace.starts_with(w)),
        );
    }
    hidden
}

fn harvest_folders(paths: &harvest_config::Paths) -> Vec<PathBuf> {
    vec![
        paths.data_dir.clone(),
        paths.state_dir.clone(),
        paths.config_dir.clone(),
        paths.socket_dir().to_owned(),
    ]
}

/// Folders whose contents a workspace must neither be nor sit inside.
const SYSTEM_INSIDE: &[&str] = &[
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
    "/sys", "/dev", "/run", "/nix",
];
/// Shared folders a workspace must not be (or contain), though a project may sit inside.
const SHARED_ROOTS: &[&str] = &[
    "/", "/home", "/root", "/tmp", "/var", "/var/tmp", "/opt", "/srv", "/mnt", "/media",
];

/// A user's folder may be a workspace unless binding it read-write would hand the agent
/// something that is not a project: the host root, the user's whole HOME, system folders,
/// or Harvest's own config, data, state and socket (whose config holds the notify hook
/// the daemon runs, and whose socket creates sessions).
pub fn check_workspace(daemon: &Daemon, path: &Path) -> Result<(), RpcError> {
    let refuse = |why: String| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "workspace {} refused: {why}. Give the folder of one project (for example \
                 `--workspace ~/src/myproject`), or `--repo URL` to work on a fresh clone",
                path.display()
            ),
        )
    };
    for root in SHARED_ROOTS {
        if path == Path::new(root) {
            return Err(refuse(format!("{root} is a shared system folder")));
        }
    }
    for sys in SYSTEM_INSIDE {
        let sys = Path::new(sys);
        if path.starts_with(sys) || sys.starts_with(path) {
            return Err(refuse(format!(
                "it is or holds the system folder {}",
                sys.display()
            )));
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && let Ok(home) = std::fs::canonicalize(&home)
        && home.starts_with(path)
    {
        return Err(refuse(format!(
            "it is or holds your home folder {}, with your keys and Harvest's own files",
            home.display()
        )));
    }
    for own in harvest_folders(&daemon.paths) {
        let own = std::fs::canonicalize(&own).unwrap_or(own);
        if own.starts_with(path) || path.starts_with(&own) {
            return Err(refuse(format!(
                "it is, holds or lies inside Harvest's own folder {}",
                own.display()
            )));
        }
    }
    Ok(())
}

/// The CLI's options for a session's agent: how it asks, its model, its limits. `spent` is
/// what the session has cost so far, so the CLI's own budget is what is left.
pub fn claude_options(
    daemon: &Daemon,
    spec: &SessionSpec,
    resume: bool,
    spent: f64,
    sandbox: &dyn harvest_sandbox::Sandbox,
) -> harvest_agent::ClaudeOptions {
    let cfg = &daemon.config.agent;
    let user = crate::user_config::collect_at(daemon, spec, reach(sandbox));
    let fork = !resume && spec.fork_from.is_some();
    harvest_agent::ClaudeOptions {
        permissions: spec.permissions,
        model: spec.model.clone(),
        resume: if fork {
            spec.fork_from.clone()
        } else {
            resume.then(|| spec.agent_session_id.clone())
        },
        fork,
        session_id: (!resume && !fork).then(|| spec.agent_session_id.clone()),
        max_retries: Some(cfg.max_retries),
        append_system_prompt: None,
        max_turns: (cfg.max_turns > 0).then_some(cfg.max_turns),
        max_budget_usd: (cfg.max_budget_usd > 0.0).then(|| (cfg.max_budget_usd - spent).max(0.0)),
        settings: user.settings,
        mcp_config: user.mcp,
        strict_mcp: crate::user_config::project_mcp(spec) == ProjectMcp::Untrusted,
        mcp_relays: user.relays,
        secret_env: user.secret_env,
        plugin_dirs: user.plugin_dirs,
    }
}

/// What `sandbox` can do for the user's configuration.
pub fn reach(sandbox: &dyn harvest_sandbox::Sandbox) -> crate::user_config::Reach<'_> {
    crate::user_config::Reach {
        agent_home: Some(sandbox.agent_home()),
        relays: sandbox.relays_mcp(),
    }
}

/// What a session's sandbox is made (or found again) from: the same for a new session, a
/// resumed one and a re-adopted one.
pub fn sandbox_spec(daemon: &Daemon, id: &str, spec: &SessionSpec) -> SandboxSpec {
    SandboxSpec {
        session: id.to_owned(),
        workspace: spec.workspace_source(),
        agent: match &spec.claude {
            Some(p) => AgentBinary::Host(p.clone()),
            None => AgentBinary::Image,
        },
        network: match spec.network.as_deref() {
            Some("none") => Network::None,
            Some(v) if v.starts_with("allow=") => Network::Allow(allow_list(v)),
            Some(_) => Network::Open,
            None if daemon.config.sandbox.network => Network::Open,
            None => Network::None,
        },
        ports: spec.ports.clone(),
        image: spec.image.clone(),
        progress: Default::default(),
        home_binds: crate::user_config::collect(daemon, spec).binds,
        // A new session's (see `create.rs`); a sandbox found again has run its setup.
        setup: None,
        workspace_at: spec.workspace_at.clone(),
    }
}

fn allow_list(v: &str) -> Vec<String> {
    v.trim_start_matches("allow=")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// A `--network` value, checked.
pub fn network(value: Option<&str>) -> Result<Option<String>, RpcError> {
    match value {
        None => Ok(None),
        Some(v @ ("open" | "none")) => Ok(Some(v.to_owned())),
        Some(v) if v.starts_with("allow=") => {
            let hosts = allow_list(v);
            let bad = hosts.iter().find(|h| {
                h.is_empty()
                    || !h
                        .trim_start_matches("*.")
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
            });
            match (hosts.is_empty(), bad) {
                (true, _) => Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    "--network allow= needs hosts: allow=pypi.org,*.github.com",
                )),
                (_, Some(h)) => Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    format!("--network {v}: {h:?} is not a host name (or *.domain)"),
                )),
                _ => Ok(Some(format!("allow={}", hosts.join(",")))),
            }
        }
        Some(v) => Err(RpcError::new(
            codes::INVALID_PARAMS,
            format!("--network {v:?}: use open, none or allow=HOST,…"),
        )),
    }
}

/// What the user asked for as a workspace source, checked.
pub fn workspace_source(
    daemon: &Daemon,
    workspace: &Option<String>,
    repo: &Option<String>,
) -> Result<WorkspaceSource, RpcError> {
    let bad = |m: String| RpcError::new(codes::INVALID_PARAMS, m);
    match (workspace, repo) {
        (Some(_), Some(_)) => Err(bad("give either --workspace or --repo, not both".into())),
        (None, None) => Err(bad(
            "no workspace: give --workspace DIR (a folder to work in) or --repo URL (to clone)"
                .into(),
        )),
        (Some(dir), None) => {
            let path = std::fs::canonicalize(dir)
                .map_err(|e| bad(format!("workspace {dir}: {e}; create it or fix the path")))?;
            if !path.is_dir() {
                return Err(bad(format!("workspace {dir} is not a folder")));
            }
            check_workspace(daemon, &path)?;
            Ok(WorkspaceSource::Folder { path })
        }
        (None, Some(url)) => Ok(WorkspaceSource::Clone { url: url.clone() }),
    }
}
