//! The `local` provider: a bubblewrap jail on this machine.
//!
//! Each agent process runs as `bwrap … -- claude …` under its own supervisor
//! (`harvest-supervisor`), which holds its stdio as sockets, writes its log to
//! `<state>/logs/<id>.log` and records its exit. A session's state folder
//! (`$XDG_STATE_HOME/harvest/sessions/<id>/`) is named by the session id, so it is the
//! sandbox's identity: a crash at any point leaves a folder [`LocalProvider::list`] finds.

pub mod bwrap;
pub mod check;
pub mod execute_only;
mod log;
mod process;

use crate::{
    Adopted, AgentBinary, AgentProcess, LogPosition, Network, Provider, Result, Sandbox,
    SandboxError, SandboxSpec, WorkspaceSource,
};
use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::redact_url;
pub use log::FileLog;
/// For other providers whose agents run under the same host-side supervisor.
pub use process::{attach as attach_supervised, kill_record};

/// The agent's HOME inside the state folder (bound at /home/agent): transcripts live
/// here, so `claude --resume` finds them after any restart.
pub const HOME_DIR: &str = "home";
/// The model proxy's socket, for a jail without a network.
pub const MODEL_SOCKET_FILE: &str = "model.sock";
/// The egress proxy's socket, under an allow-list.
pub const EGRESS_SOCKET_FILE: &str = "egress.sock";

/// Host paths the jail must not see, for a session whose workspace is the given folder.
pub type HiddenPaths = Arc<dyn Fn(&Path) -> Vec<PathBuf> + Send + Sync>;

/// Where the local provider keeps things on this machine, and how it starts supervisors.
#[derive(Clone)]
pub struct LocalLayout {
    /// One state folder per session: `<sessions_dir>/<id>`.
    pub sessions_dir: PathBuf,
    /// Clones made for `--repo` sessions: `<workspaces_dir>/<id>`.
    pub workspaces_dir: PathBuf,
    /// The supervisor command (`harvest supervise`).
    pub supervisor: (PathBuf, Vec<OsString>),
    /// An explicit bwrap from the config, or `None` to search `PATH`.
    pub bwrap: Option<PathBuf>,
    pub hidden: HiddenPaths,
}

pub struct LocalProvider {
    layout: LocalLayout,
}

impl LocalProvider {
    pub fn new(layout: LocalLayout) -> Self {
        LocalProvider { layout }
    }

    pub fn state_dir(&self, session: &str) -> PathBuf {
        self.layout.sessions_dir.join(session)
    }

    /// Where execute-only copies of agent binaries are kept: beside the sessions.
    fn agent_cache(&self) -> PathBuf {
        self.layout
            .sessions_dir
            .parent()
            .unwrap_or(&self.layout.sessions_dir)
            .join("agent-bin")
    }

    fn bwrap_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.layout.bwrap {
            return if p.is_file() {
                Ok(p.clone())
            } else {
                Err(SandboxError::BwrapMissing)
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("bwrap"))
            .find(|p| p.is_file())
            .ok_or(SandboxError::BwrapMissing)
    }

    /// The sandbox for a spec, without starting anything; `clone` says whether a missing
    /// clone may be made now (a new session) or means the sandbox is gone (adoption).
    async fn sandbox(&self, spec: &SandboxSpec, clone: bool) -> Result<Option<LocalSandbox>> {
        let state_dir = self.state_dir(&spec.session);
        let home = state_dir.join(HOME_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|source| SandboxError::Io {
                path: home.clone(),
                source,
            })?;
        // Who the jail's users are (`ls -l`, `id`): the agent by its own name, not by
        // whichever account of this machine has its uid.
        let identity = state_dir.join("identity");
        let identity = write_identity(&identity).ok().map(|()| identity);
        let (workspace, owned) = match &spec.workspace {
            WorkspaceSource::Folder { path } => (unchanged_folder(path)?, false),
            WorkspaceSource::Owned { path } => (existing_folder(path)?, true),
            WorkspaceSource::Clone { url } => {
                let target = self.layout.workspaces_dir.join(&spec.session);
                if !target.is_dir() {
                    if !clone {
                        return Ok(None);
                    }
                    spec.progress.say(&format!("cloning {}", redact_url(url)));
                    check::clone(url, &self.layout.workspaces_dir, &target).await?;
                }
                (existing_folder(&target)?, true)
            }
        };
        let AgentBinary::Host(agent_binary) = &spec.agent else {
            return Err(SandboxError::Unsupported {
                kind: "local",
                what: "an agent from a sandbox image; give it the host's claude".into(),
            });
        };
        let hidden = (self.layout.hidden)(&workspace)
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        Ok(Some(LocalSandbox {
            bwrap: self.bwrap_path()?,
            supervisor: self.layout.supervisor.clone(),
            policy: bwrap::JailPolicy {
                workspace_in_jail: spec
                    .workspace_at
                    .clone()
                    .filter(|p| p.is_absolute() && p.parent().is_some())
                    .unwrap_or_else(|| workspace.clone()),
                workspace,
                home,
                // Owner-execute only: in the jail the agent's uid is the file's owner.
                agent_binary: execute_only::copy(
                    agent_binary,
                    &self.agent_cache(),
                    "claude",
                    0o100,
                )?,
                hidden,
                network: spec.network == Network::Open,
                harvest: self.layout.supervisor.0.clone(),
                home_binds: spec.home_binds.clone(),
                identity,
                model_link: (spec.network != Network::Open).then(|| bwrap::ModelLink {
                    socket: state_dir.join(MODEL_SOCKET_FILE),
                    egress: match &spec.network {
                        Network::Allow(hosts) => {
                            Some((state_dir.join(EGRESS_SOCKET_FILE), hosts.clone()))
                        }
                        _ => None,
                    },
                }),
            },
            owned,
            state_dir,
            agent_program: Path::new(bwrap::AGENT_BIN_DIR).join("claude"),
        }))
    }
}

/// A user's folder, checked when the session was created and stored canonical: it must
/// still resolve to itself. Something with write access to a parent (another session's
/// agent, if the folders nest) could otherwise swap a component for a link between two
/// launches and have this session's jail bind whatever the link names.
pub fn unchanged_folder(path: &Path) -> Result<PathBuf> {
    let canonical = existing_folder(path)?;
    if canonical != path {
        return Err(SandboxError::BadWorkspace {
            path: path.to_owned(),
            reason: format!(
                "it now resolves to {} (a part of its path was replaced by a link since the \
                 session was created), and Harvest does not follow it; put the folder back, \
                 or start a new session on the folder you mean",
                canonical.display()
            ),
        });
    }
    Ok(canonical)
}

pub fn existing_folder(path: &Path) -> Result<PathBuf> {
    let bad = |reason: String| SandboxError::BadWorkspace {
        path: path.to_owned(),
        reason,
    };
    let canonical = std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(bad("not a folder".into()));
    }
    Ok(canonical)
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn check(&self) -> Result<()> {
        check::namespaces(&self.bwrap_path()?).await
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>> {
        match self.sandbox(spec, true).await? {
            Some(s) => Ok(Box::new(s)),
            None => Err(SandboxError::Spawn(
                "the workspace could not be made".into(),
            )),
        }
    }

    async fn adopt(
        &self,
        spec: &SandboxSpec,
        _persisted: &serde_json::Value,
        at: LogPosition,
    ) -> Result<Option<Adopted>> {
        let Some(sandbox) = self.sandbox(spec, false).await? else {
            return Ok(None);
        };
        // The supervisor's own record, not the store's copy: it is written before the
        // supervisor answers, so even a daemon that died before storing anything finds
        // the process it started.
        let process = harvest_supervisor::read_record(&sandbox.state_dir)
            .filter(|r| r.log_id > at.log_id || (r.log_id == at.log_id && !at.ended))
            .map(|record| process::attach(&sandbox.state_dir, record));
        Ok(Some(Adopted {
            sandbox: Box::new(sandbox),
            process,
        }))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let dir = &self.layout.sessions_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(SandboxError::Io {
                    path: dir.clone(),
                    source,
                });
            }
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    async fn fork(&self, from: &SandboxSpec, to: &str) -> Result<WorkspaceSource> {
        let Some(source) = self.sandbox(from, false).await? else {
            return Err(SandboxError::BadWorkspace {
                path: self.layout.workspaces_dir.join(&from.session),
                reason: "the source session's workspace is gone".into(),
            });
        };
        let workspace = self.layout.workspaces_dir.join(to);
        let home = self.state_dir(to).join(HOME_DIR);
        let bwrap = self.bwrap_path()?;
        for (src, dst) in [
            (&source.policy.workspace, &workspace),
            (&source.policy.home, &home),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dst)
                .map_err(|e| SandboxError::Io {
                    path: dst.clone(),
                    source: e,
                })?;
            process::copy_confined(&bwrap, src, dst).await?;
        }
        Ok(WorkspaceSource::Owned { path: workspace })
    }

    async fn remove_orphan(&self, session: &str) -> Result<()> {
        let state_dir = self.state_dir(session);
        if let Some(record) = harvest_supervisor::read_record(&state_dir) {
            process::kill_record(&state_dir, record).await;
        }
        remove_tree(&state_dir)?;
        remove_tree(&self.layout.workspaces_dir.join(session))
    }
}

/// The jail's `/etc/passwd` and `/etc/group`: root, the agent (as `agent`, HOME
/// `/home/agent`) and nobody.
fn write_identity(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let uid = bwrap::SANDBOX_UID;
    std::fs::write(
        dir.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/bash\nagent:x:{uid}:{uid}:Harvest agent:{}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            bwrap::AGENT_HOME
        ),
    )?;
    std::fs::write(
        dir.join("group"),
        format!("root:x:0:\nagent:x:{uid}:\nnogroup:x:65534:\n"),
    )
}

pub fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SandboxError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

pub struct LocalSandbox {
    bwrap: PathBuf,
    supervisor: (PathBuf, Vec<OsString>),
    policy: bwrap::JailPolicy,
    /// The workspace was made by Harvest (a clone or a fork's copy): removed with it.
    owned: bool,
    state_dir: PathBuf,
    agent_program: PathBuf,
}

#[async_trait]
impl Sandbox for LocalSandbox {
    // The agent's view of its workspace, which for a fork is not its path here.
    #[allow(clippy::misnamed_getters)]
    fn workspace(&self) -> &Path {
        &self.policy.workspace_in_jail
    }

    fn host_workspace(&self) -> Option<&Path> {
        Some(&self.policy.workspace)
    }

    fn agent_program(&self) -> &Path {
        &self.agent_program
    }

    fn agent_home(&self) -> &Path {
        Path::new(bwrap::AGENT_HOME)
    }
    fn relays_mcp(&self) -> bool {
        true
    }

    fn task_outputs(&self) -> Option<(PathBuf, PathBuf)> {
        Some((
            self.policy.home.clone(),
            PathBuf::from(crate::task_output::IN_HOME),
        ))
    }

    fn persisted(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "local",
            "workspace": self.policy.workspace,
            "record": harvest_supervisor::read_record(&self.state_dir),
        })
    }

    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess> {
        process::spawn(self, cmd, secrets).await
    }

    async fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>> {
        process::read_confined(&self.bwrap, &self.policy, path, limit).await
    }

    async fn exec(&self, argv: &[String], limits: crate::ExecLimits) -> Result<crate::ExecOutput> {
        process::exec_confined(&self.bwrap, &self.policy, argv, limits).await
    }

    /// The jail shares the host's network (when it has one): a port the agent listens on
    /// is this machine's, announced once something listens on it.
    async fn previews(&self, ports: &[u16]) -> Vec<(u16, String)> {
        if !self.policy.network {
            return Vec::new();
        }
        let listening = listening_ports();
        ports
            .iter()
            .filter(|p| listening.contains(p))
            .map(|p| (*p, format!("http://127.0.0.1:{p}")))
            .collect()
    }

    async fn destroy(&mut self) -> Result<()> {
        if let Some(record) = harvest_supervisor::read_record(&self.state_dir) {
            process::kill_record(&self.state_dir, record).await;
        }
        remove_tree(&self.policy.home)?;
        if self.owned {
            remove_tree(&self.policy.workspace)?;
        }
        Ok(())
    }
}

/// The TCP ports something listens on, on this machine (from /proc/net/tcp and tcp6:
/// the local address's port, for sockets in state LISTEN, 0A).
fn listening_ports() -> std::collections::BTreeSet<u16> {
    let mut ports = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(local), Some(state)) = (fields.nth(1), fields.nth(1)) else {
                continue;
            };
            if state != "0A" {
                continue;
            }
            if let Some(port) = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_listening_port_of_this_machine_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(super::listening_ports().contains(&port));
        drop(l);
        // A process another test forks at this moment holds a copy of the socket until
        // its exec closes it (close-on-exec), so the port may show for a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while super::listening_ports().contains(&port) {
            assert!(
                std::time::Instant::now() < deadline,
                "port {port} still listed 2 s after its listener closed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
