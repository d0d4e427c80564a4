//! `session/create` and the read-only calls (`session/list`, `session/get`,
//! `daemon/status`). Creation checks everything that can be checked before a sandbox is
//! made: credentials, the agent CLI, the sandbox provider, the workspace.

use crate::context::Daemon;
use crate::session::{self, SessionSpec};
use harvest_agent::command::FORWARDED_ENV;
use harvest_agent::{AgentCommand, locate_claude};
use harvest_protocol::methods::{CreateParams, DaemonStatusResult, SessionInfo};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, PROTOCOL_VERSION, Secret, SessionId, SessionState};
use harvest_store::{NewEvent, NewSession};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn create(daemon: &Arc<Daemon>, p: CreateParams) -> Result<SessionInfo, RpcError> {
    let sandbox_kind = p
        .sandbox
        .clone()
        .unwrap_or_else(|| daemon.config.sandbox.default.clone());
    if sandbox_kind != daemon.provider.kind() {
        return Err(RpcError::new(
            codes::SANDBOX_UNAVAILABLE,
            format!("sandbox {sandbox_kind:?} is not available in this build; use --sandbox local"),
        ));
    }
    let secrets = forwarded(daemon, p.env);
    require_credentials(&secrets)?;
    let claude = find_claude(daemon)?;
    daemon
        .provider
        .check()
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;

    let permissions = match p
        .permissions
        .as_deref()
        .unwrap_or(&daemon.config.agent.permissions)
    {
        "bypass" => harvest_agent::Permissions::Bypass,
        "ask" => harvest_agent::Permissions::Ask,
        other => {
            return Err(RpcError::new(
                codes::INVALID_PARAMS,
                format!("permissions {other:?}: use \"bypass\" or \"ask\""),
            ));
        }
    };
    let id = new_id(daemon);
    let (workspace, owns_workspace) = workspace(daemon, &id, &p.workspace, &p.repo).await?;
    let name = p
        .name
        .clone()
        .unwrap_or_else(|| default_name(&workspace, p.prompt.as_deref()));
    let spec = SessionSpec {
        workspace: workspace.clone(),
        repo: p.repo.clone(),
        owns_workspace,
        model: p
            .model
            .clone()
            .or_else(|| daemon.config.agent.model.clone()),
        agent_session_id: uuid::Uuid::new_v4().to_string(),
        claude: claude.clone(),
        permissions,
        fork_from: None,
    };
    store_call(daemon, {
        let new = NewSession {
            id: id.clone(),
            name,
            sandbox: sandbox_kind.clone(),
            workspace: workspace.display().to_string(),
            spec: serde_json::to_value(&spec).unwrap_or_default(),
        };
        move |store| store.create_session(&new)
    })
    .await?;

    match start(daemon, &id, &spec, &secrets, p.prompt.as_deref()).await {
        Ok(()) => info(daemon, &id).await,
        Err(e) => {
            discard(daemon, &id, owns_workspace.then_some(workspace.as_path())).await;
            Err(e)
        }
    }
}

async fn start(
    daemon: &Arc<Daemon>,
    id: &SessionId,
    spec: &SessionSpec,
    secrets: &BTreeMap<String, Secret>,
    prompt: Option<&str>,
) -> Result<(), RpcError> {
    let sandbox_spec = session::sandbox_spec(daemon, id, spec);
    let mut sandbox = daemon
        .provider
        .create(&sandbox_spec)
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
    let opts = session::claude_options(daemon, spec, false, 0.0);
    let cmd = AgentCommand::claude(sandbox.agent_program(), &opts);
    let process = match sandbox.spawn_agent(&cmd, secrets).await {
        Ok(p) => p,
        Err(e) => {
            let _ = sandbox.destroy().await;
            return Err(RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()));
        }
    };
    let persisted = sandbox.persisted();
    let events = vec![
        NewEvent::new(EventBody::Sandbox {
            message: format!(
                "{} sandbox ready; workspace {}",
                daemon.provider.kind(),
                sandbox.workspace().display()
            ),
        }),
        NewEvent::new(EventBody::Status {
            state: SessionState::Idle,
            reason: None,
        }),
    ];
    store_call(daemon, {
        let id = id.clone();
        move |store| {
            store.set_sandbox_state(&id, &persisted)?;
            store.append(&id, events, None)
        }
    })
    .await?;
    let offset = process.log_start;
    let handle = session::spawn(
        daemon,
        session::Setup {
            id: id.clone(),
            spec: spec.clone(),
            state: SessionState::Idle,
            secrets: secrets.clone(),
            conversation_started: false,
            spent_usd: 0.0,
        },
        Some(session::Live {
            sandbox,
            process,
            offset,
            parser: harvest_agent::StreamParser::new(),
            pending_turns: 0,
            pending_permissions: Vec::new(),
        }),
    );
    // The first message goes the way every message goes: through the actor, which stores
    // it before the agent sees it and waits for a running slot when there is a limit.
    if let Some(prompt) = prompt {
        handle.send(prompt.to_owned(), BTreeMap::new()).await?;
    }
    Ok(())
}

/// `session/fork`: a new session with a copy of the workspace and of the agent's HOME (its
/// transcripts), whose first agent resumes the conversation with `--fork-session`.
pub async fn fork(
    daemon: &Arc<Daemon>,
    p: harvest_protocol::methods::ForkParams,
) -> Result<SessionInfo, RpcError> {
    let (source, _) = daemon.resolve(&p.session)?;
    let src = {
        let id = source.clone();
        store_call(daemon, move |store| store.session(&id)).await?
    }
    .ok_or_else(|| RpcError::new(codes::SESSION_NOT_FOUND, format!("no session {source}")))?;
    let src_spec: SessionSpec = serde_json::from_value(src.spec.clone())
        .map_err(|e| RpcError::new(codes::INTERNAL, format!("session {source}: {e}")))?;
    let Some(conversation) = src.info.agent_session_id.clone() else {
        return Err(RpcError::new(
            codes::SESSION_STATE,
            format!("session {source} has no conversation to fork yet; send it a message first"),
        ));
    };
    let secrets = forwarded(daemon, p.env);
    require_credentials(&secrets)?;
    let claude = find_claude(daemon)?;
    daemon
        .provider
        .check()
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;

    let id = new_id(daemon);
    let workspace = daemon.paths.workspaces_dir().join(id.as_str());
    let home = daemon
        .paths
        .session_state_dir(id.as_str())
        .join(harvest_sandbox::local::HOME_DIR);
    let src_home = daemon
        .paths
        .session_state_dir(source.as_str())
        .join(harvest_sandbox::local::HOME_DIR);
    let copied = async {
        copy_tree(&src_spec.workspace, &workspace).await?;
        copy_tree(&src_home, &home).await
    }
    .await;
    if let Err(e) = copied {
        discard(daemon, &id, Some(&workspace)).await;
        return Err(e);
    }
    let spec = SessionSpec {
        workspace: workspace.clone(),
        repo: src_spec.repo.clone(),
        owns_workspace: true,
        model: src_spec.model.clone(),
        agent_session_id: uuid::Uuid::new_v4().to_string(),
        claude,
        permissions: src_spec.permissions,
        fork_from: Some(conversation),
    };
    let new = NewSession {
        id: id.clone(),
        name: p
            .name
            .unwrap_or_else(|| format!("{} (fork)", src.info.name)),
        sandbox: src.info.sandbox.clone(),
        workspace: workspace.display().to_string(),
        spec: serde_json::to_value(&spec).unwrap_or_default(),
    };
    store_call(daemon, move |store| store.create_session(&new)).await?;
    if let Err(e) = start(daemon, &id, &spec, &secrets, None).await {
        discard(daemon, &id, Some(&workspace)).await;
        return Err(e);
    }
    let message = format!("forked from session {source}: a copy of its workspace and conversation");
    let _ = {
        let id = id.clone();
        store_call(daemon, move |store| {
            store.append(
                &id,
                vec![NewEvent::new(EventBody::Sandbox { message })],
                None,
            )
        })
        .await
    };
    info(daemon, &id).await
}

/// Undo a session that failed to come up, so nothing half-made stays behind: its row (if
/// stored), its state folder, and the workspace Harvest made for it (a clone or a fork's
/// copy; never a user's own folder).
async fn discard(daemon: &Arc<Daemon>, id: &SessionId, owned_workspace: Option<&Path>) {
    let _ = {
        let id = id.clone();
        store_call(daemon, move |store| store.delete_session(&id)).await
    };
    let _ = std::fs::remove_dir_all(daemon.paths.session_state_dir(id.as_str()));
    if let Some(w) = owned_workspace {
        let _ = std::fs::remove_dir_all(w);
    }
}

/// `cp -a`: files, modes, links and times, as they are.
async fn copy_tree(from: &Path, to: &Path) -> Result<(), RpcError> {
    let fail = |e: String| {
        RpcError::new(
            codes::INTERNAL,
            format!("cannot copy {} to {}: {e}", from.display(), to.display()),
        )
    };
    std::fs::create_dir_all(to).map_err(|e| fail(e.to_string()))?;
    if !from.exists() {
        return Ok(());
    }
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Keep only the variables meant for the agent: the credential set and the config's list.
fn forwarded(daemon: &Daemon, env: BTreeMap<String, Secret>) -> BTreeMap<String, Secret> {
    env.into_iter()
        .filter(|(k, v)| {
            !v.expose().is_empty()
                && (FORWARDED_ENV.contains(&k.as_str())
                    || daemon.config.agent.forward_env.iter().any(|f| f == k))
        })
        .collect()
}

pub fn require_credentials(secrets: &BTreeMap<String, Secret>) -> Result<(), RpcError> {
    if FORWARDED_ENV.iter().any(|k| secrets.contains_key(*k)) {
        return Ok(());
    }
    Err(RpcError::new(
        codes::CREDENTIALS_MISSING,
        "no API key for the agent: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN or \
         CLAUDE_CODE_OAUTH_TOKEN; ANTHROPIC_BASE_URL for a gateway) in the environment of the \
         harvest command, or try `harvest demo`, which needs none",
    ))
}

fn find_claude(daemon: &Daemon) -> Result<PathBuf, RpcError> {
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

/// What the agent must not see even where a system mount would show it.
pub fn hidden_paths(daemon: &Daemon, own_workspace: &Path) -> Vec<PathBuf> {
    let mut hidden = vec![
        daemon.paths.data_dir.clone(),
        daemon.paths.state_dir.clone(),
        daemon.paths.config_dir.clone(),
        daemon.paths.socket_dir().to_owned(),
    ];
    if let Ok(workspaces) = daemon.store.workspaces() {
        hidden.extend(
            workspaces
                .into_iter()
                .map(PathBuf::from)
                .filter(|w| w != own_workspace && !own_workspace.starts_with(w)),
        );
    }
    hidden
}

async fn workspace(
    daemon: &Daemon,
    id: &SessionId,
    workspace: &Option<String>,
    repo: &Option<String>,
) -> Result<(PathBuf, bool), RpcError> {
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
            Ok((path, false))
        }
        (None, Some(url)) => {
            let target = daemon.paths.workspaces_dir().join(id.as_str());
            std::fs::create_dir_all(daemon.paths.workspaces_dir())
                .map_err(|e| bad(format!("cannot create the workspaces folder: {e}")))?;
            let out = tokio::process::Command::new("git")
                .args(["clone", "--quiet", "--", url])
                .arg(&target)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .await
                .map_err(|e| bad(format!("cannot run git to clone {url}: {e}; install git")))?;
            if !out.status.success() {
                let _ = std::fs::remove_dir_all(&target);
                return Err(bad(format!(
                    "git clone {url} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok((target, true))
        }
    }
}

fn new_id(daemon: &Daemon) -> SessionId {
    loop {
        let id = SessionId(uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
        if daemon.resolve(id.as_str()).is_err() {
            return id;
        }
    }
}

fn default_name(workspace: &Path, prompt: Option<&str>) -> String {
    let base = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "session".into());
    match prompt {
        Some(p) => {
            let words: Vec<&str> = p.split_whitespace().take(4).collect();
            format!("{base}: {}", words.join(" "))
        }
        None => base,
    }
}

pub async fn list(daemon: &Arc<Daemon>) -> Result<Vec<SessionInfo>, RpcError> {
    let rows = store_call(daemon, |store| store.sessions()).await?;
    Ok(rows.into_iter().map(|r| r.info).collect())
}

pub async fn rename(daemon: &Arc<Daemon>, id: &SessionId, name: String) -> Result<(), RpcError> {
    let id = id.clone();
    store_call(daemon, move |store| store.rename(&id, &name)).await
}

pub async fn info(daemon: &Arc<Daemon>, id: &SessionId) -> Result<SessionInfo, RpcError> {
    let id2 = id.clone();
    store_call(daemon, move |store| store.session(&id2))
        .await?
        .map(|r| r.info)
        .ok_or_else(|| RpcError::new(codes::SESSION_NOT_FOUND, format!("no session {id}")))
}

/// `session/events`: a page of stored events, for clients that fetch history on the
/// side (the terminal client shows the tail first and loads the rest behind it).
pub async fn events(
    daemon: &Arc<Daemon>,
    id: &SessionId,
    p: harvest_protocol::methods::EventsParams,
) -> Result<harvest_protocol::methods::EventsResult, RpcError> {
    let limit = harvest_protocol::methods::EVENTS_PAGE;
    let id2 = id.clone();
    let stored = store_call(daemon, move |store| {
        store.read_from(&id2, p.from_seq, limit)
    })
    .await?;
    let events = stored
        .iter()
        .filter(|e| p.to_seq.is_none_or(|end| e.seq < end))
        .map(|e| serde_json::from_str(&e.to_json(p.include_raw)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            RpcError::new(
                codes::INTERNAL,
                format!("a stored event is unreadable: {e}"),
            )
        })?;
    Ok(harvest_protocol::methods::EventsResult { events })
}

pub async fn status(daemon: &Arc<Daemon>) -> Result<DaemonStatusResult, RpcError> {
    let sessions = list(daemon).await?;
    Ok(DaemonStatusResult {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
        socket: daemon.paths.socket.display().to_string(),
        data_dir: daemon.paths.data_dir.display().to_string(),
        state_dir: daemon.paths.state_dir.display().to_string(),
        uptime_secs: daemon.started.elapsed().as_secs(),
        sessions: sessions.len() as u64,
        running: daemon.handles().iter().filter(|h| h.is_running()).count() as u64,
        clients: daemon.clients(),
    })
}

async fn store_call<T: Send + 'static>(
    daemon: &Daemon,
    f: impl FnOnce(&harvest_store::Store) -> harvest_store::Result<T> + Send + 'static,
) -> Result<T, RpcError> {
    let store = daemon.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?
        .map_err(|e| RpcError::new(codes::STORE_FAILED, e.to_string()))
}
