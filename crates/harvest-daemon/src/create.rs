//! `session/create` and the read-only calls (`session/list`, `session/get`,
//! `daemon/status`). Creation checks everything that can be checked before a sandbox is
//! made: credentials, the agent CLI, the sandbox provider, the workspace.

use crate::context::Daemon;
use crate::policy;
use crate::session::{self, SessionSpec};
use harvest_agent::AgentCommand;
use harvest_protocol::methods::{CreateParams, DaemonStatusResult, SessionInfo};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, PROTOCOL_VERSION, Secret, SessionId, SessionState};
use harvest_sandbox::{Provider, WorkspaceSource};
use harvest_store::{NewEvent, NewSession};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

mod fork;
pub use fork::fork;

pub async fn create(
    daemon: &Arc<Daemon>,
    p: CreateParams,
    progress: &(dyn Fn(&str) -> harvest_sandbox::Progress + Send + Sync),
) -> Result<SessionInfo, RpcError> {
    let sandbox_kind = p
        .sandbox
        .clone()
        .unwrap_or_else(|| daemon.config.sandbox.default.clone());
    let provider = daemon.providers.get(&sandbox_kind)?;
    check_free_space(daemon)?;
    let secrets = policy::forwarded(daemon, p.env);
    policy::require_credentials(&secrets)?;
    // A sandbox that brings its own agent needs none on this machine.
    let claude = if provider.brings_agent() {
        None
    } else {
        Some(policy::find_claude(daemon)?)
    };
    provider
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
    let network = policy::network(p.network.as_deref())?;
    let source = policy::workspace_source(daemon, &p.workspace, &p.repo)?;
    let id = new_id(daemon);
    let (workspace, owns_workspace) = match &source {
        WorkspaceSource::Folder { path } => (path.clone(), false),
        WorkspaceSource::Owned { path } => (path.clone(), true),
        // Where the local provider puts it; a remote provider reports its own below.
        WorkspaceSource::Clone { .. } => (daemon.paths.workspaces_dir().join(id.as_str()), true),
    };
    let name = p
        .name
        .clone()
        .unwrap_or_else(|| default_name(&workspace, p.repo.as_deref(), p.prompt.as_deref()));
    let mut spec = SessionSpec {
        workspace: workspace.clone(),
        repo: p.repo.as_deref().map(harvest_sandbox::local::redact_url),
        owns_workspace,
        // Stored and kept without the credentials a clone URL may carry; only the one
        // provider call that clones gets them (below).
        source: Some(match &source {
            WorkspaceSource::Clone { url } => WorkspaceSource::Clone {
                url: harvest_sandbox::local::redact_url(url),
            },
            other => other.clone(),
        }),
        model: p
            .model
            .clone()
            .or_else(|| daemon.config.agent.model.clone()),
        agent_session_id: uuid::Uuid::new_v4().to_string(),
        claude,
        permissions,
        fork_from: None,
        network,
        ports: p.ports.clone(),
        image: p.image.clone(),
        branch: matches!(source, WorkspaceSource::Clone { .. })
            .then(|| crate::review::branch_name(id.as_str(), p.prompt.as_deref())),
        base: None,
        pr_url: None,
        user_config: p.user_config.unwrap_or(true),
        trusted_mcp: p.trusted_mcp.clone(),
        secrets_inside: Vec::new(),
        workspace_at: None,
    };
    spec.secrets_inside = crate::user_config::collect(daemon, &spec).secrets_inside;
    // Recorded before the sandbox exists: a crash from here on leaves a session whose
    // sandbox the next daemon finds (or removes), never an unknown one.
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

    match start(
        daemon,
        provider.clone(),
        &id,
        &spec,
        &secrets,
        p.prompt.as_deref(),
        Making {
            source: Some(source),
            progress: progress(id.as_str()),
            setup: p.setup.unwrap_or(true),
            base: None,
        },
    )
    .await
    {
        Ok(()) => info(daemon, &id).await,
        Err(e) => {
            discard(daemon, &provider, &id).await;
            Err(e)
        }
    }
}

/// How a fresh sandbox is made: from this source (else the spec's), its long steps told
/// to the waiting client.
#[derive(Default)]
struct Making {
    source: Option<WorkspaceSource>,
    progress: harvest_sandbox::Progress,
    /// Run the repository's setup before the first turn (a new session, unless
    /// `--no-setup`; never a fork, whose copy is set up already).
    setup: bool,
    /// The base a fork's changes are measured from: its source's (its own branch is made
    /// from where the source is).
    base: Option<String>,
}

async fn start(
    daemon: &Arc<Daemon>,
    provider: Arc<dyn Provider>,
    id: &SessionId,
    spec: &SessionSpec,
    secrets: &BTreeMap<String, Secret>,
    prompt: Option<&str>,
    making: Making,
) -> Result<(), RpcError> {
    let mut sandbox_spec = policy::sandbox_spec(daemon, id.as_str(), spec);
    let progress = making.progress.clone();
    sandbox_spec.progress = making.progress;
    let setup = &daemon.config.setup;
    sandbox_spec.setup = making.setup.then(|| harvest_sandbox::SetupPlan {
        script: setup.script.clone(),
        cache: setup.cache,
        cache_max_mb: setup.cache_max_mb,
    });
    if let Some(source) = making.source {
        sandbox_spec.workspace = source;
    }
    let mut sandbox = provider
        .create(&sandbox_spec)
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
    let mut spec = spec.clone();
    let git_events = if spec.base.is_none() {
        git_start(&mut spec, sandbox.as_ref()).await
    } else {
        Vec::new()
    };
    if let Some(base) = &making.base
        && spec.base.is_some()
    {
        spec.base = Some(base.clone());
    }
    let spec = &spec;
    let setup_events = if let Some(plan) = &sandbox_spec.setup {
        crate::setup::run(sandbox.as_ref(), plan, &progress).await
    } else {
        Vec::new()
    };
    let opts = policy::claude_options(daemon, spec, false, 0.0, sandbox.as_ref());
    let cmd = AgentCommand::claude(sandbox.agent_program(), &opts);
    let process = match sandbox.spawn_agent(&cmd, secrets).await {
        Ok(p) => p,
        Err(e) => {
            let _ = sandbox.destroy().await;
            return Err(RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()));
        }
    };
    crate::failpoint::crash("after_spawn");
    let persisted = sandbox.persisted();
    let shown_workspace = sandbox
        .host_workspace()
        .unwrap_or(sandbox.workspace())
        .display()
        .to_string();
    let mut events = vec![NewEvent::new(EventBody::Sandbox {
        message: format!(
            "{} sandbox ready; workspace {}",
            provider.kind(),
            sandbox.workspace().display()
        ),
    })];
    events.extend(git_events.into_iter().map(NewEvent::new));
    events.extend(setup_events.into_iter().map(NewEvent::new));
    events.extend(
        crate::user_config::events(daemon, spec, policy::reach(sandbox.as_ref()))
            .into_iter()
            .map(NewEvent::new),
    );
    events.extend([NewEvent::new(EventBody::Status {
        state: SessionState::Idle,
        reason: None,
    })]);
    // The first message is stored in the same transaction that makes the session live,
    // as undelivered: the actor delivers it (once a running slot allows), and a daemon
    // that dies before it does delivers it after its restart.
    let undelivered: Vec<session::spec::Undelivered> = prompt
        .map(|text| session::spec::Undelivered {
            id: uuid::Uuid::new_v4().simple().to_string(),
            text: text.to_owned(),
        })
        .into_iter()
        .collect();
    events.extend(undelivered.iter().map(|m| {
        NewEvent::new(EventBody::UserMessage {
            text: m.text.clone(),
        })
    }));
    let initial = session::Checkpoint {
        at: harvest_sandbox::LogPosition {
            log_id: process.log_id,
            offset: 0,
            ended: false,
        },
        undelivered,
        ..Default::default()
    };
    let checkpoint = serde_json::to_value(&initial).ok();
    store_call(daemon, {
        let id = id.clone();
        let spec_json = serde_json::to_value(spec).unwrap_or_default();
        move |store| {
            store.set_spec(&id, &spec_json)?;
            store.set_sandbox_state(&id, &persisted)?;
            store.set_workspace(&id, &shown_workspace)?;
            store.append(&id, events, checkpoint.as_ref())
        }
    })
    .await?;
    session::spawn(
        daemon,
        provider,
        session::Setup {
            id: id.clone(),
            spec: spec.clone(),
            state: SessionState::Idle,
            secrets: secrets.clone(),
            conversation_started: false,
            spent_usd: 0.0,
            restore: None,
        },
        Some(session::Live {
            sandbox,
            checkpoint: initial,
            process,
        }),
    );
    Ok(())
}

/// The session's repository at its start: a clone put on its own branch, the commit it
/// starts from recorded (in `spec`); what happened, as events.
async fn git_start(
    spec: &mut SessionSpec,
    sandbox: &dyn harvest_sandbox::Sandbox,
) -> Vec<EventBody> {
    let mut events = Vec::new();
    if let (Some(WorkspaceSource::Clone { url }), Some(_)) = (&spec.source, &spec.branch) {
        events.push(EventBody::GitOperation {
            operation: "clone".into(),
            ok: true,
            detail: format!("cloned {url}"),
        });
    }
    match crate::review::start(sandbox, spec.branch.as_deref()).await {
        Ok(Some(started)) => {
            if let Some(branch) = &spec.branch {
                events.push(EventBody::GitOperation {
                    operation: "branch".into(),
                    ok: true,
                    detail: format!("working on {branch}, from {}", &started.base[..12]),
                });
            }
            spec.base = Some(started.base);
        }
        // Not a repository (or one without a commit): nothing to branch or diff.
        Ok(None) => spec.branch = None,
        Err(e) => {
            tracing::warn!(error = %e, "the session's branch was not made");
            events.push(EventBody::GitOperation {
                operation: "branch".into(),
                ok: false,
                detail: e,
            });
            spec.branch = None;
        }
    }
    events
}

/// Undo a session that failed to come up, so nothing half-made stays behind: its sandbox
/// (the provider removes what it made: state, clone, copy; never a user's own folder) and
/// its row, last, so a crash in between leaves a row the next start reconciles.
async fn discard(daemon: &Arc<Daemon>, provider: &Arc<dyn Provider>, id: &SessionId) {
    if let Err(e) = provider.remove_orphan(id.as_str()).await {
        tracing::warn!(session = %id, error = %e, "sandbox of a failed session not removed");
    }
    let _ = {
        let id = id.clone();
        store_call(daemon, move |store| store.delete_session(&id)).await
    };
}

fn new_id(daemon: &Daemon) -> SessionId {
    loop {
        let id = SessionId(uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
        if daemon.sessions.resolve(id.as_str()).is_err() {
            return id;
        }
    }
}

/// At most this many characters of a default name (a long prompt must not make every
/// `session/list` reply huge).
pub const NAME_CHARS: usize = 60;

fn default_name(workspace: &Path, repo: Option<&str>, prompt: Option<&str>) -> String {
    let base = match repo {
        Some(url) => harvest_sandbox::local::redact_url(url)
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit('/')
            .next()
            .unwrap_or("session")
            .to_owned(),
        None => workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into()),
    };
    let name = match prompt {
        Some(p) => {
            let words: Vec<&str> = p.split_whitespace().take(4).collect();
            format!("{base}: {}", words.join(" "))
        }
        None => base,
    };
    name.chars().take(NAME_CHARS).collect()
}

pub async fn list(daemon: &Arc<Daemon>) -> Result<Vec<SessionInfo>, RpcError> {
    let rows = store_call(daemon, |store| store.sessions()).await?;
    // The providers' own word on their sandboxes (one call each, for providers that have
    // sessions here), bounded: a provider out of reach never holds up a listing.
    let mut states = BTreeMap::new();
    for provider in daemon.providers.all() {
        if rows.iter().any(|r| r.info.sandbox == provider.kind()) {
            let asked = tokio::time::timeout(std::time::Duration::from_secs(3), provider.states());
            if let Ok(found) = asked.await {
                states.extend(found);
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut info = with_stall(daemon, r.info);
            info.sandbox_state = states.remove(info.id.as_str());
            info
        })
        .collect())
}

/// The stored facts, with what only the live actor knows: that it cannot store.
fn with_stall(daemon: &Daemon, mut info: SessionInfo) -> SessionInfo {
    info.stalled = daemon.sessions.stalled(&info.id);
    info
}

/// Refuse to start a session on a disk about to fill: its events would stall at once.
fn check_free_space(daemon: &Daemon) -> Result<(), RpcError> {
    const MIN_FREE: u64 = 64 * 1024 * 1024;
    for dir in [&daemon.paths.data_dir, &daemon.paths.state_dir] {
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: statvfs(2) with a valid path and a zeroed struct it fills in.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            continue;
        }
        let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
        if free < MIN_FREE {
            return Err(RpcError::new(
                codes::STORE_FAILED,
                format!(
                    "the disk holding {} has only {} MB free; free some space before starting a \
                     session (its events and logs need room)",
                    dir.display(),
                    free / 1_000_000
                ),
            ));
        }
    }
    Ok(())
}

pub async fn rename(daemon: &Arc<Daemon>, id: &SessionId, name: String) -> Result<(), RpcError> {
    let id = id.clone();
    store_call(daemon, move |store| store.rename(&id, &name)).await
}

pub async fn info(daemon: &Arc<Daemon>, id: &SessionId) -> Result<SessionInfo, RpcError> {
    let id2 = id.clone();
    store_call(daemon, move |store| store.session(&id2))
        .await?
        .map(|r| with_stall(daemon, r.info))
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
        running: daemon
            .sessions
            .handles()
            .iter()
            .filter(|h| h.is_running())
            .count() as u64,
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

/// `session/changes`: the agent's changes with the folder they came from, bounded.
pub async fn changes_result(
    daemon: &Arc<Daemon>,
    id: &SessionId,
    changes: Vec<harvest_sandbox::WorkspaceChange>,
) -> Result<harvest_protocol::methods::ChangesResult, RpcError> {
    use base64::Engine;
    use harvest_protocol::methods::{CHANGES_MAX, ChangesResult, FileChange};
    let record = {
        let id = id.clone();
        store_call(daemon, move |store| store.session(&id)).await?
    }
    .ok_or_else(|| RpcError::new(codes::SESSION_NOT_FOUND, format!("no session {id}")))?;
    let spec: SessionSpec = serde_json::from_value(record.spec)
        .map_err(|e| RpcError::new(codes::INTERNAL, format!("session {id}: {e}")))?;
    let local_workspace = match spec.workspace_source() {
        WorkspaceSource::Folder { path } => Some(path.display().to_string()),
        _ => None,
    };
    let total: usize = changes
        .iter()
        .map(|c| {
            c.content.as_ref().map_or(0, Vec::len) + c.base_content.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total > CHANGES_MAX / 4 * 3 {
        return Err(RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "the agent's changes are {total} bytes, more than one answer carries ({} bytes); \
                 bring them with git from inside the session instead",
                CHANGES_MAX / 4 * 3
            ),
        ));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(ChangesResult {
        local_workspace,
        changes: changes
            .into_iter()
            .map(|c| FileChange {
                path: c.path,
                base: c.base,
                content_b64: c.content.map(|b| engine.encode(b)),
                base_b64: c.base_content.map(|b| engine.encode(b)),
            })
            .collect(),
    })
}
