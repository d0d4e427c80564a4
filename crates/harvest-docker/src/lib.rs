//! The `docker` provider: one container per session, from the sandbox image
//! (`sandbox-image/`), driven through the Docker Engine API (bollard; `DOCKER_HOST`
//! honoured).
//!
//! The agent runs in the container but is held from outside it, exactly as the local
//! provider holds its jail: a host-side supervisor (`harvest supervise`) runs `harvest
//! docker-exec` as the agent's stand-in, holds its stdio as socket pairs, writes the log
//! in the session's state folder (never mounted into the container), records the exit,
//! and runs the model proxy. So the model key never enters the container, nothing inside
//! can rewrite the log, and the agent outlives the daemon.
//!
//! What the container gets: the workspace at `/workspace` (the user's folder bound in, or a
//! clone Harvest made), the agent's HOME on a per-session volume (transcripts, so
//! `claude --resume` works), the harvest binary read-only (for `harvest forward`, which
//! relays the agent's model traffic to the supervisor's proxy socket), and a folder with
//! that socket. All capabilities dropped, no-new-privileges, limits from the config.

mod container;
mod disk;
pub mod engine;
pub mod exec_helper;
mod oneshot;
mod setup_kept;

use async_trait::async_trait;
use bollard::Docker;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use harvest_sandbox::{
    Adopted, AgentControl, AgentExit, AgentLog, AgentProcess, ExecLimits, ExecOutput, LogPosition,
    Network, Provider, Result, Sandbox, SandboxError, SandboxSpec, WorkspaceSource,
};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the agent works, inside the container.
pub const WORKSPACE: &str = "/workspace";
/// The agent's HOME inside the container (a per-session volume).
pub const HOME: &str = "/home/harvest";
/// The harvest binary inside the container (read-only), for `harvest forward`.
pub const HARVEST_IN_CONTAINER: &str = "/opt/harvest/bin/harvest";
/// The folder of the supervisor's sockets inside the container.
pub const RUN_IN_CONTAINER: &str = "/run/harvest";
/// The CLI's temporary folder in the container, bound from `TMP_DIR` in the session's
/// state folder: a running command's output is read from there.
pub const TMP_IN_CONTAINER: &str = "/run/harvest-tmp";
const TMP_DIR: &str = "tmp";
/// The folder of those sockets in the session's state folder.
pub const RUN_DIR: &str = "run";
/// The image's claude CLI.
pub const CLAUDE_IN_CONTAINER: &str = "/usr/local/bin/claude";
/// The uid a container agent gets when Harvest runs as root (the image's `harvest`).
pub const IMAGE_UID: u32 = 1000;

/// What every container of this daemon is made with.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub image: String,
    /// CPUs (0: no limit).
    pub cpus: f64,
    /// Memory in MiB (0: no limit).
    pub memory_mb: u64,
    /// Processes (0: no limit).
    pub pids: i64,
    /// Disk per session in MiB (0: no limit); see `disk.rs`.
    pub disk_mb: u64,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            image: "harvest-sandbox:latest".into(),
            cpus: 0.0,
            memory_mb: 0,
            pids: 4096,
            disk_mb: 20480,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DockerLayout {
    /// The same per-session state folders as the local provider's: `<sessions_dir>/<id>`.
    pub sessions_dir: PathBuf,
    /// Clones made for `--repo` sessions: `<workspaces_dir>/<id>`.
    pub workspaces_dir: PathBuf,
    /// The supervisor command (`harvest supervise`).
    pub supervisor: (PathBuf, Vec<OsString>),
    /// This harvest binary: the agent's stand-in (`docker-exec`) and, bound into the
    /// container, its model forwarder.
    pub harvest: PathBuf,
    /// Names this daemon's containers apart from another's (one per store).
    pub instance: String,
    /// Kept setups, by key (see `setup_kept.rs`).
    pub setup_dir: PathBuf,
    pub options: DockerOptions,
}

pub struct DockerProvider {
    layout: DockerLayout,
    /// The engine, once it answered (its API version agreed); kept for every later call.
    docker: tokio::sync::OnceCell<Docker>,
    disk: Arc<disk::DiskWatch>,
}

impl DockerProvider {
    pub fn new(layout: DockerLayout) -> Self {
        DockerProvider {
            disk: disk::DiskWatch::new(layout.options.disk_mb, &layout.instance),
            layout,
            docker: tokio::sync::OnceCell::new(),
        }
    }

    /// The engine: connected once, then shared (a failed connection is tried again on the
    /// next call, so an engine started later is found).
    async fn engine(&self) -> Result<Docker> {
        self.docker.get_or_try_init(engine::connect).await.cloned()
    }

    fn state_dir(&self, session: &str) -> PathBuf {
        self.layout.sessions_dir.join(session)
    }

    /// The copy of this harvest binary that containers run `harvest forward` from: mode
    /// 0111, so the process is non-dumpable from its first instruction (an unreadable
    /// executable makes the kernel close its `/proc` entries) and nothing of the agent's
    /// uid can reopen its stdio in the moment before it interposes sockets; bound
    /// read-only, so it cannot be made readable again. One per binary version, kept (a
    /// container made by an older one still binds its copy).
    fn forwarder(&self) -> Result<PathBuf> {
        let dir = self
            .layout
            .sessions_dir
            .parent()
            .unwrap_or(&self.layout.sessions_dir)
            .join("docker");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(|source| SandboxError::Io {
                path: dir.clone(),
                source,
            })?;
        harvest_sandbox::local::execute_only::copy(&self.layout.harvest, &dir, "harvest", 0o111)
    }

    fn names(&self, session: &str) -> container::Names {
        container::Names::new(&self.layout.instance, session)
    }

    /// The workspace on this machine for a spec; `clone`: a missing clone may be made
    /// now (a new session) rather than meaning the sandbox is gone.
    async fn host_workspace(
        &self,
        spec: &SandboxSpec,
        clone: bool,
    ) -> Result<Option<(PathBuf, bool)>> {
        Ok(Some(match &spec.workspace {
            WorkspaceSource::Folder { path } => {
                (harvest_sandbox::local::unchanged_folder(path)?, false)
            }
            WorkspaceSource::Owned { path } => {
                (harvest_sandbox::local::existing_folder(path)?, true)
            }
            WorkspaceSource::Clone { url } => {
                let target = self.layout.workspaces_dir.join(&spec.session);
                if !target.is_dir() {
                    if !clone {
                        return Ok(None);
                    }
                    spec.progress.say(&format!(
                        "cloning {}",
                        harvest_sandbox::local::redact_url(url)
                    ));
                    harvest_sandbox::local::check::clone(url, &self.layout.workspaces_dir, &target)
                        .await?;
                    container::give_to_agent(&target)?;
                }
                (harvest_sandbox::local::existing_folder(&target)?, true)
            }
        }))
    }

    fn sandbox(
        &self,
        docker: Docker,
        spec: &SandboxSpec,
        workspace: PathBuf,
        owned: bool,
    ) -> DockerSandbox {
        self.disk.start(&docker);
        DockerSandbox {
            disk: self.disk.clone(),
            docker,
            names: self.names(&spec.session),
            state_dir: self.state_dir(&spec.session),
            workspace,
            owned,
            network: spec.network.clone(),
            user: container::agent_user(),
            supervisor: self.layout.supervisor.clone(),
            harvest: self.layout.harvest.clone(),
            agent_program: PathBuf::from(CLAUDE_IN_CONTAINER),
            image: spec
                .image
                .clone()
                .unwrap_or_else(|| self.layout.options.image.clone()),
            kept_setup: None,
        }
    }
}

#[async_trait]
impl Provider for DockerProvider {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn brings_agent(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<()> {
        let docker = self.engine().await?;
        container::check_image(&docker, &self.layout.options.image)
            .await
            .map(|_| ())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>> {
        let docker = self.engine().await?;
        let image = spec.image.as_deref().unwrap_or(&self.layout.options.image);
        let image_id = container::check_image(&docker, image).await?;
        let Some((workspace, owned)) = self.host_workspace(spec, true).await? else {
            return Err(SandboxError::Spawn(
                "the workspace could not be made".into(),
            ));
        };
        let kept = spec
            .setup
            .as_ref()
            .and_then(|plan| setup_kept::find(&self.layout.setup_dir, &workspace, plan, &image_id));
        container::check_writable(&workspace)?;
        let state_dir = self.state_dir(&spec.session);
        container::make_state_dirs(&state_dir)?;
        let names = self.names(&spec.session);
        container::create(
            &docker,
            &names,
            &container::Shape {
                options: &self.layout.options,
                workspace: &workspace,
                run_dir: &state_dir.join(RUN_DIR),
                tmp_dir: &state_dir.join(TMP_DIR),
                harvest: &self.forwarder()?,
                network: &spec.network,
                image: spec.image.as_deref().unwrap_or(&self.layout.options.image),
                ports: &spec.ports,
                home_binds: &spec.home_binds,
                kept_setup: kept.as_ref().filter(|k| k.found).map(|k| k.dir.as_path()),
            },
        )
        .await?;
        let mut sandbox = self.sandbox(docker, spec, workspace, owned);
        sandbox.kept_setup = kept;
        Ok(Box::new(sandbox))
    }

    async fn adopt(
        &self,
        spec: &SandboxSpec,
        _persisted: &serde_json::Value,
        at: LogPosition,
    ) -> Result<Option<Adopted>> {
        let docker = self.engine().await?;
        let names = self.names(&spec.session);
        if !container::exists(&docker, &names.container).await? {
            return Ok(None);
        }
        let Some((workspace, owned)) = self.host_workspace(spec, false).await? else {
            return Ok(None);
        };
        let sandbox = self.sandbox(docker, spec, workspace, owned);
        // The supervisor's own record (written before it answered), as for local.
        let process = harvest_supervisor::read_record(&sandbox.state_dir)
            .filter(|r| r.log_id > at.log_id || (r.log_id == at.log_id && !at.ended))
            .map(|record| {
                sandbox.wrap(harvest_sandbox::local::attach_supervised(
                    &sandbox.state_dir,
                    record,
                ))
            });
        Ok(Some(Adopted {
            sandbox: Box::new(sandbox),
            process,
        }))
    }

    async fn fork(&self, from: &SandboxSpec, to: &str) -> Result<WorkspaceSource> {
        let docker = self.engine().await?;
        let Some((source, _)) = self.host_workspace(from, false).await? else {
            return Err(SandboxError::BadWorkspace {
                path: self.layout.workspaces_dir.join(&from.session),
                reason: "the source session's workspace is gone".into(),
            });
        };
        let workspace = self.layout.workspaces_dir.join(to);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&workspace)
            .map_err(|source| SandboxError::Io {
                path: workspace.clone(),
                source,
            })?;
        container::give_to_agent(&workspace)?;
        let image = from.image.as_deref().unwrap_or(&self.layout.options.image);
        container::copy_session(
            &docker,
            image,
            (&source, &self.names(&from.session)),
            (&workspace, &self.names(to)),
        )
        .await?;
        Ok(WorkspaceSource::Owned { path: workspace })
    }

    async fn list(&self) -> Result<Vec<String>> {
        let docker = self.engine().await?;
        container::sessions(&docker, &self.layout.instance).await
    }

    async fn remove_orphan(&self, session: &str) -> Result<()> {
        let docker = self.engine().await?;
        let state_dir = self.state_dir(session);
        if let Some(record) = harvest_supervisor::read_record(&state_dir) {
            harvest_sandbox::local::kill_record(&state_dir, record).await;
        }
        container::remove(&docker, &self.names(session)).await?;
        harvest_sandbox::local::remove_tree(&state_dir)?;
        harvest_sandbox::local::remove_tree(&self.layout.workspaces_dir.join(session))
    }
}

pub struct DockerSandbox {
    docker: Docker,
    disk: Arc<disk::DiskWatch>,
    names: container::Names,
    state_dir: PathBuf,
    /// The workspace on this machine (bound at /workspace).
    workspace: PathBuf,
    /// Made by Harvest (a clone): removed with the sandbox.
    owned: bool,
    network: Network,
    /// `uid:gid` the agent runs as.
    user: String,
    supervisor: (PathBuf, Vec<OsString>),
    harvest: PathBuf,
    agent_program: PathBuf,
    /// The image the container was made from (a kept setup is copied by another
    /// container of it).
    image: String,
    /// This sandbox's setup, kept or to keep.
    kept_setup: Option<setup_kept::KeptSetup>,
}

impl DockerSandbox {
    /// The supervisor's control, with `kill` reaching everything in the container.
    fn wrap(&self, process: AgentProcess) -> AgentProcess {
        AgentProcess {
            log_id: process.log_id,
            input: process.input,
            control: Box::new(ContainerControl {
                inner: process.control,
                docker: self.docker.clone(),
                container: self.names.container.clone(),
                disk: self.disk.clone(),
            }),
        }
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn workspace(&self) -> &Path {
        Path::new(WORKSPACE)
    }

    fn host_workspace(&self) -> Option<&Path> {
        Some(&self.workspace)
    }

    fn agent_program(&self) -> &Path {
        &self.agent_program
    }

    fn agent_home(&self) -> &Path {
        Path::new(HOME)
    }
    fn relays_mcp(&self) -> bool {
        true
    }

    fn persisted(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "docker",
            "container": self.names.container,
            "workspace": self.workspace,
            "record": harvest_supervisor::read_record(&self.state_dir),
        })
    }

    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess> {
        // The workspace is bound by its path: checked again at each launch, as for local.
        if !self.owned {
            harvest_sandbox::local::unchanged_folder(&self.workspace)?;
        }
        // A container ended by a kill (or a reboot) is started again for the next agent.
        container::ensure_running(&self.docker, &self.names.container).await?;
        // Nothing of an earlier agent may still run here (a tool it left in the
        // background could otherwise lie in wait for the new agent's stdio), as nothing
        // outlives a local jail.
        container::end_agent_processes(&self.docker, &self.names.container, &self.user).await;
        self.disk.clear(&self.names.container);
        let log_id = harvest_supervisor::last_log_id(&self.state_dir) + 1;
        let spec = self.launch_spec(cmd, secrets, log_id);
        let (program, args) = &self.supervisor;
        let record = harvest_supervisor::spawn(program, args, &spec)
            .await
            .map_err(|e| SandboxError::Spawn(e.to_string()))?;
        Ok(self.wrap(harvest_sandbox::local::attach_supervised(
            &self.state_dir,
            record,
        )))
    }

    async fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>> {
        if !path.is_absolute() {
            return Err(SandboxError::Spawn(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        // Read inside the container, as the agent: a link the agent planted resolves in
        // its own filesystem, and anything but a regular file is refused (a FIFO would
        // block; `timeout` ends whatever still hangs).
        let p = String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned();
        container::ensure_running(&self.docker, &self.names.container).await?;
        let out = oneshot::run(
            &self.docker,
            &self.names.container,
            &self.user,
            &[
                "sh".into(),
                "-c".into(),
                "[ -f \"$1\" ] || { echo \"not a regular file\" >&2; exit 3; }; exec head -c \"$2\" -- \"$1\"".into(),
                "read".into(),
                p.clone(),
                limit.to_string(),
            ],
            ExecLimits {
                output_bytes: usize::try_from(limit).unwrap_or(usize::MAX),
                timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        )
        .await?;
        if out.code != Some(0) {
            return Err(SandboxError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ),
            });
        }
        Ok(out.stdout)
    }

    async fn exec(&self, argv: &[String], limits: ExecLimits) -> Result<ExecOutput> {
        // A one-shot needs the container up: after `stop` (or a `run` that ended) a
        // `harvest diff` or `pr` still reads and commits in it.
        container::ensure_running(&self.docker, &self.names.container).await?;
        oneshot::run(
            &self.docker,
            &self.names.container,
            &self.user,
            argv,
            limits,
        )
        .await
    }

    async fn previews(&self, ports: &[u16]) -> Vec<(u16, String)> {
        container::published(&self.docker, &self.names.container, ports).await
    }

    fn keeps_setup(&self) -> bool {
        self.kept_setup.is_some()
    }

    fn task_outputs(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.state_dir.join(TMP_DIR), PathBuf::from(".")))
    }

    async fn restore_setup(&self) -> Result<Option<String>> {
        match &self.kept_setup {
            Some(kept) => {
                container::ensure_running(&self.docker, &self.names.container).await?;
                setup_kept::restore(&self.docker, &self.names.container, &self.user, kept).await
            }
            None => Ok(None),
        }
    }

    async fn save_setup(&self, made: &[String]) -> Result<Option<String>> {
        match &self.kept_setup {
            Some(kept) => {
                setup_kept::save(
                    &self.docker,
                    &self.image,
                    &self.names,
                    &self.workspace,
                    kept,
                    made,
                )
                .await
            }
            None => Ok(None),
        }
    }

    async fn destroy(&mut self) -> Result<()> {
        if let Some(record) = harvest_supervisor::read_record(&self.state_dir) {
            harvest_sandbox::local::kill_record(&self.state_dir, record).await;
        }
        container::remove(&self.docker, &self.names).await?;
        if self.owned {
            harvest_sandbox::local::remove_tree(&self.workspace)?;
        }
        Ok(())
    }
}

impl DockerSandbox {
    fn launch_spec(
        &self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
        log_id: u64,
    ) -> harvest_supervisor::LaunchSpec {
        use harvest_sandbox::local::bwrap::{EGRESS_ADDR, MODEL_ADDR};
        let run = self.state_dir.join(RUN_DIR);
        let egress = matches!(self.network, Network::Allow(_));
        let mut args: Vec<String> = vec![
            "docker-exec".into(),
            "--container".into(),
            self.names.container.clone(),
            "--user".into(),
            self.user.clone(),
            "--workdir".into(),
            WORKSPACE.into(),
            "--".into(),
            HARVEST_IN_CONTAINER.into(),
            "forward".into(),
            "--listen".into(),
            MODEL_ADDR.into(),
            "--to".into(),
            format!("{RUN_IN_CONTAINER}/model.sock"),
            // The exec's stdio are pipes, which a tool could reopen through /proc.
            "--stdio-sockets".into(),
        ];
        if egress {
            args.extend([
                "--listen".into(),
                EGRESS_ADDR.into(),
                "--to".into(),
                format!("{RUN_IN_CONTAINER}/egress.sock"),
            ]);
        }
        // The MCP relays listen on the container's own loopback too, through sockets in
        // the run folder.
        let (mcp_links, mcp_env) = harvest_sandbox::mcp::links(cmd, |i| {
            Some((
                run.join(harvest_sandbox::mcp::relay_socket_file(i)),
                harvest_sandbox::mcp::relay_addr(i),
            ))
        });
        args.extend(harvest_sandbox::mcp::forward_args(mcp_links.len(), |i| {
            format!(
                "{RUN_IN_CONTAINER}/{}",
                harvest_sandbox::mcp::relay_socket_file(i)
            )
        }));
        args.push("--".into());
        args.push(self.agent_program.display().to_string());
        args.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
        // The agent's environment (all of it reaches the exec, nothing else does); the
        // stand-in's own DOCKER_HOST is taken out before.
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), HOME.into()),
            ("USER".into(), "harvest".into()),
            ("SHELL".into(), "/bin/bash".into()),
            ("TERM".into(), "dumb".into()),
            ("LANG".into(), "C.UTF-8".into()),
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("TMPDIR".into(), "/tmp".into()),
            (
                "NODE_EXTRA_CA_CERTS".into(),
                "/etc/ssl/certs/ca-certificates.crt".into(),
            ),
        ];
        env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if egress {
            let proxy = format!("http://{EGRESS_ADDR}");
            for k in [
                "HTTPS_PROXY",
                "HTTP_PROXY",
                "https_proxy",
                "http_proxy",
                "ALL_PROXY",
            ] {
                env.push((k.into(), proxy.clone()));
            }
            for k in ["NO_PROXY", "no_proxy"] {
                env.push((k.into(), "127.0.0.1,localhost".into()));
            }
        }
        let (agent_env, mut upstream) = harvest_proxy::split(secrets);
        upstream.allowance_usd = cmd.budget_usd;
        env.extend(
            agent_env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned())),
        );
        env.extend(mcp_env);
        // A container made before there was a temporary folder to bind has none.
        if self.state_dir.join(TMP_DIR).is_dir() {
            env.push(("CLAUDE_CODE_TMPDIR".into(), TMP_IN_CONTAINER.into()));
        }
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            env.push(("DOCKER_HOST".into(), host));
        }
        harvest_supervisor::LaunchSpec {
            state_dir: self.state_dir.clone(),
            log_id,
            program: self.harvest.as_os_str().as_bytes().to_vec(),
            args: args.into_iter().map(String::into_bytes).collect(),
            env,
            proxy: Some(upstream),
            proxy_socket: Some(run.join("model.sock")),
            proxy_url: Some(format!("http://{MODEL_ADDR}")),
            egress: match &self.network {
                Network::Allow(hosts) => Some(harvest_supervisor::Egress {
                    socket: run.join("egress.sock"),
                    allow: hosts.clone(),
                }),
                _ => None,
            },
            mcp: mcp_links,
            direct: true,
            // The container's own seccomp profile and init stand in for both.
            stdio_as_fds: false,
            seccomp: None,
        }
    }
}

/// The supervisor's control of the agent's stand-in, with `kill` ending everything in the
/// container (the stand-in alone would leave the agent's tools running).
struct ContainerControl {
    inner: Box<dyn AgentControl>,
    docker: Docker,
    container: String,
    disk: Arc<disk::DiskWatch>,
}

#[async_trait]
impl AgentControl for ContainerControl {
    async fn interrupt(&self) -> Result<bool> {
        self.inner.interrupt().await
    }
    async fn stop(&self) -> Result<()> {
        self.inner.stop().await
    }
    async fn kill(&self) -> Result<()> {
        let killed = container::kill(&self.docker, &self.container).await;
        let _ = self.inner.kill().await;
        killed
    }
    async fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>> {
        self.inner.open_log(offset).await
    }
    async fn exit_status(&self) -> Option<AgentExit> {
        let mut exit = self.inner.exit_status().await?;
        if exit.lost.is_none() {
            exit.lost = self.disk.reason(&self.container);
        }
        Some(exit)
    }
    async fn diagnostics(&self) -> String {
        self.inner.diagnostics().await
    }
    async fn compact(&self, committed: u64) -> Result<()> {
        self.inner.compact(committed).await
    }
}
