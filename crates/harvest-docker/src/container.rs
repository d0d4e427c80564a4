//! A session's container and its HOME volume: names and labels, how they are made, found,
//! started again and removed.

use crate::engine::{failed, is_not_found};
use crate::{DockerOptions, HARVEST_IN_CONTAINER, HOME, IMAGE_UID, RUN_IN_CONTAINER, WORKSPACE};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountTypeEnum, PortBinding, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use harvest_sandbox::{Network, Result, SandboxError};
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

pub const LABEL_SESSION: &str = "dev.harvest.session";
/// The bridge every `--network open` container joins: inter-container traffic is off on
/// it, so one session's agent cannot reach another's container (the engine's default
/// bridge lets them talk). One for the engine, made when first needed.
pub const OPEN_NETWORK: &str = "harvest-open";
pub const LABEL_INSTANCE: &str = "dev.harvest.instance";

/// What a session's Docker objects are called.
#[derive(Debug, Clone)]
pub struct Names {
    pub container: String,
    pub home_volume: String,
    pub session: String,
    pub instance: String,
}

impl Names {
    pub fn new(instance: &str, session: &str) -> Names {
        Names {
            container: format!("harvest-{instance}-{session}"),
            home_volume: format!("harvest-{instance}-{session}-home"),
            session: session.to_owned(),
            instance: instance.to_owned(),
        }
    }

    pub(crate) fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_SESSION.to_owned(), self.session.clone()),
            (LABEL_INSTANCE.to_owned(), self.instance.clone()),
        ])
    }
}

/// The uid:gid the agent runs as: the user's own (so what it writes in a bound workspace
/// is the user's), or the image's `harvest` (1000) when Harvest runs as root: never root.
pub fn agent_user() -> String {
    // SAFETY: getuid(2)/getgid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid == 0 {
        format!("{IMAGE_UID}:{IMAGE_UID}")
    } else {
        format!("{uid}:{gid}")
    }
}

fn running_as_root() -> bool {
    // SAFETY: getuid(2) cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// As root, the agent is uid 1000: the user's folder must let it write, or the session
/// would fail at its first edit. Said at once, with the fix.
pub fn check_writable(workspace: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let meta = std::fs::metadata(workspace).map_err(|source| SandboxError::Io {
        path: workspace.to_owned(),
        source,
    })?;
    let writable = meta.uid() == IMAGE_UID || meta.mode() & 0o002 != 0;
    if writable {
        return Ok(());
    }
    Err(SandboxError::BadWorkspace {
        path: workspace.to_owned(),
        reason: format!(
            "Harvest runs as root, so the agent in the container runs as uid {IMAGE_UID} \
             (never root), and this folder is not writable by it; run Harvest as your own \
             user, or give uid {IMAGE_UID} the folder (`chown -R {IMAGE_UID}: {}`)",
            workspace.display()
        ),
    })
}

/// A clone Harvest made as root belongs to the agent's uid (it is Harvest's, not a
/// user's folder).
pub fn give_to_agent(tree: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    fn walk(p: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(IMAGE_UID), Some(IMAGE_UID))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        }
        Ok(())
    }
    walk(tree).map_err(|source| SandboxError::Io {
        path: tree.to_owned(),
        source,
    })
}

/// The state folder (0700, as for local) and its `run/` for the proxy sockets, which the
/// container sees (and only it: the state folder keeps everyone else out).
pub fn make_state_dirs(state_dir: &Path) -> Result<()> {
    let run = state_dir.join(crate::RUN_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)
        .and_then(|()| std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)))
        .map_err(|source| SandboxError::Io {
            path: run.clone(),
            source,
        })?;
    // The CLI's temporary files, which this machine reads a running command's output
    // from (bound read-write at `TMP_IN_CONTAINER`; the agent's).
    let tmp = state_dir.join(crate::TMP_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(|source| SandboxError::Io {
            path: tmp.clone(),
            source,
        })?;
    give_to_agent(&tmp)
}

/// The image's id, once it is known to be there.
pub async fn check_image(docker: &Docker, image: &str) -> Result<String> {
    match docker.inspect_image(image).await {
        Ok(i) => Ok(i.id.unwrap_or_else(|| image.to_owned())),
        Err(e) if is_not_found(&e) => Err(SandboxError::Spawn(format!(
            "the sandbox image {image} is not built; build it with `sandbox-image/build.sh` \
             (or set docker.image in harvest.toml to one you have)"
        ))),
        Err(e) => Err(failed("cannot look up the sandbox image", e)),
    }
}

/// How a session's container is made.
pub struct Shape<'a> {
    pub options: &'a DockerOptions,
    pub workspace: &'a Path,
    pub run_dir: &'a Path,
    /// The CLI's temporary files (see `make_state_dirs`).
    pub tmp_dir: &'a Path,
    pub harvest: &'a Path,
    pub network: &'a Network,
    pub image: &'a str,
    /// Published on a free port of 127.0.0.1 each.
    pub ports: &'a [u16],
    /// Shown read-only under the agent's HOME (the user's own Claude Code configuration).
    pub home_binds: &'a [(std::path::PathBuf, String)],
    /// A kept setup this session starts from, bound read-only (see `setup_kept.rs`).
    pub kept_setup: Option<&'a Path>,
}

/// The open network, made if the engine has none of that name yet.
async fn ensure_open_network(docker: &Docker) -> Result<()> {
    match docker
        .inspect_network(
            OPEN_NETWORK,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(failed("cannot look up the sandboxes' network", e)),
    }
    let made = docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: OPEN_NETWORK.into(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            )])),
            labels: Some(HashMap::from([(
                "dev.harvest.network".to_owned(),
                "open".to_owned(),
            )])),
            ..Default::default()
        })
        .await;
    match made {
        Ok(_) => Ok(()),
        // Another daemon made it just now.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(failed("cannot create the sandboxes' network", e)),
    }
}

/// The engine said it has no size option for containers (overlay2 over ext4).
static NO_SIZE_OPTION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub async fn create(docker: &Docker, names: &Names, shape: &Shape<'_>) -> Result<()> {
    if *shape.network == Network::Open {
        ensure_open_network(docker).await?;
    }
    if !shape.ports.is_empty() && *shape.network != Network::Open {
        return Err(SandboxError::Spawn(
            "--port needs a network to publish the port on: use --network open with --port \
             (a container without a network can only be reached from inside)"
                .into(),
        ));
    }
    // A container of this name is left from a create cut short: it is this session's.
    remove_container(docker, &names.container).await?;
    docker
        .create_volume(VolumeCreateOptions {
            name: Some(names.home_volume.clone()),
            labels: Some(names.labels()),
            ..Default::default()
        })
        .await
        .map_err(|e| failed("cannot create the agent's HOME volume", e))?;
    let o = shape.options;
    // Typed mounts, not `Binds` strings: a path with a `:` in it stays one path, and a
    // source that does not exist is an error instead of a folder the engine makes as root.
    let mut mounts = vec![
        bind_mount(
            MountTypeEnum::BIND,
            shape.workspace.display().to_string(),
            WORKSPACE,
            false,
        ),
        bind_mount(
            MountTypeEnum::VOLUME,
            names.home_volume.clone(),
            HOME,
            false,
        ),
        // Read-only: the agent can connect to the sockets, never replace or remove them.
        bind_mount(
            MountTypeEnum::BIND,
            shape.run_dir.display().to_string(),
            RUN_IN_CONTAINER,
            true,
        ),
        bind_mount(
            MountTypeEnum::BIND,
            shape.tmp_dir.display().to_string(),
            crate::TMP_IN_CONTAINER,
            false,
        ),
        bind_mount(
            MountTypeEnum::BIND,
            shape.harvest.display().to_string(),
            HARVEST_IN_CONTAINER,
            true,
        ),
    ];
    for (host, rel) in shape.home_binds {
        mounts.push(bind_mount(
            MountTypeEnum::BIND,
            host.display().to_string(),
            &format!("{HOME}/{rel}"),
            true,
        ));
    }
    if let Some(kept) = shape.kept_setup {
        mounts.push(bind_mount(
            MountTypeEnum::BIND,
            kept.display().to_string(),
            crate::setup_kept::MOUNT,
            true,
        ));
    }
    let host = HostConfig {
        mounts: Some(mounts),
        // Open: Harvest's own bridge (no inter-container traffic). Otherwise no network at all: the agent
        // reaches its model (and an allow-list's proxy) through the bound sockets.
        network_mode: Some(match shape.network {
            Network::Open => OPEN_NETWORK.into(),
            _ => "none".into(),
        }),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(security_options()),
        nano_cpus: (o.cpus > 0.0).then_some((o.cpus * 1e9) as i64),
        memory: (o.memory_mb > 0).then_some((o.memory_mb * 1024 * 1024) as i64),
        pids_limit: (o.pids > 0).then_some(o.pids),
        // Each on a free port of the host's loopback only: a preview is for this
        // machine's user, not for the network.
        port_bindings: (!shape.ports.is_empty()).then(|| {
            shape
                .ports
                .iter()
                .map(|p| {
                    (
                        format!("{p}/tcp"),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(String::new()),
                        }]),
                    )
                })
                .collect()
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(shape.image.to_owned()),
        exposed_ports: (!shape.ports.is_empty()).then(|| {
            shape
                .ports
                .iter()
                .map(|p| (format!("{p}/tcp"), HashMap::new()))
                .collect()
        }),
        // The container's own init (tini, then a sleep) runs as root without any
        // capability, so the agent's uid can neither signal it nor open its stdio
        // through /proc; the agent itself is an exec as `shape.user`.
        user: Some("0:0".into()),
        env: Some(vec![format!("HOME={HOME}")]),
        labels: Some(names.labels()),
        working_dir: Some(WORKSPACE.into()),
        host_config: Some(host),
        ..Default::default()
    };
    let create = |body| {
        docker.create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&names.container)
                    .build(),
            ),
            body,
        )
    };
    let mut body = body;
    if o.disk_mb > 0
        && !NO_SIZE_OPTION.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(h) = body.host_config.as_mut()
    {
        h.storage_opt = Some(HashMap::from([(
            "size".to_owned(),
            format!("{}M", o.disk_mb),
        )]));
    }
    match create(body.clone()).await {
        Ok(_) => {}
        // Most engines (overlay2 over ext4) have no size option: the daemon's own
        // measure (`disk.rs`) is the limit then.
        Err(e) if e.to_string().contains("storage-opt") => {
            tracing::debug!(error = %e, "the engine cannot limit a container's size; the daemon measures it");
            // Asked once per daemon: every later create goes straight to the engine.
            NO_SIZE_OPTION.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(h) = body.host_config.as_mut() {
                h.storage_opt = None;
            }
            create(body)
                .await
                .map_err(|e| failed("cannot create the session's container", e))?;
        }
        Err(e) => return Err(failed("cannot create the session's container", e)),
    }
    start(docker, &names.container).await
}

pub async fn exists(docker: &Docker, container: &str) -> Result<bool> {
    match docker
        .inspect_container(
            container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(failed("cannot look up the session's container", e)),
    }
}

/// Start the container unless it runs (after a kill or a reboot it has stopped).
pub async fn ensure_running(docker: &Docker, container: &str) -> Result<()> {
    let info = docker
        .inspect_container(
            container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| failed("cannot look up the session's container", e))?;
    if info.state.as_ref().and_then(|s| s.running) == Some(true) {
        return Ok(());
    }
    start(docker, container).await.map_err(|e| match e {
        SandboxError::Spawn(m) => SandboxError::Spawn(format!("{m}{}", died(&info))),
        other => other,
    })
}

/// Start a container known not to run, and learn at once if it died.
async fn start(docker: &Docker, container: &str) -> Result<()> {
    docker
        .start_container(
            container,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| failed("cannot start the session's container", e))?;
    // A container that died at once (a broken image) says why.
    let now = docker
        .inspect_container(
            container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| failed("cannot look up the session's container", e))?;
    if now.state.as_ref().and_then(|s| s.running) != Some(true) {
        return Err(SandboxError::Spawn(format!(
            "the session's container stopped at once{}; it printed: {}",
            died(&now),
            last_lines(docker, container).await
        )));
    }
    Ok(())
}

/// How a container ended, for an error message.
fn died(info: &bollard::models::ContainerInspectResponse) -> String {
    match info.state.as_ref().and_then(|s| s.exit_code) {
        Some(code) if code != 0 => format!(" (it exited with code {code})"),
        _ => String::new(),
    }
}

/// SIGKILL to everything in the container (its init first: the container stops).
pub async fn kill(docker: &Docker, container: &str) -> Result<()> {
    match docker
        .kill_container(
            container,
            Some(KillContainerOptionsBuilder::new().signal("KILL").build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        // Not running (409) or gone (404): nothing is left to end.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(failed("cannot kill the session's container", e)),
    }
}

pub(crate) async fn remove_container(docker: &Docker, container: &str) -> Result<()> {
    match docker
        .remove_container(
            container,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(failed("cannot remove the session's container", e)),
    }
}

/// The container and its HOME volume, gone (and a fork's copier a crash left behind).
pub async fn remove(docker: &Docker, names: &Names) -> Result<()> {
    remove_container(docker, &names.container).await?;
    remove_container(docker, &format!("{}-fork", names.container)).await?;
    match docker
        .remove_volume(
            &names.home_volume,
            Some(RemoveVolumeOptionsBuilder::new().force(true).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(failed("cannot remove the agent's HOME volume", e)),
    }
}

/// The sessions this daemon instance has containers for, by label.
pub async fn sessions(docker: &Docker, instance: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| failed("cannot list the sandboxes' containers", e))?;
    // A label is only trusted as a session id (it names folders to remove) if it is one.
    Ok(list
        .into_iter()
        .filter_map(|c| c.labels?.get(LABEL_SESSION).cloned())
        .filter(|s| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect())
}

/// Where this machine reaches the container's published ports now (a restarted container
/// gets new host ports).
pub async fn published(docker: &Docker, container: &str, ports: &[u16]) -> Vec<(u16, String)> {
    let Ok(info) = docker
        .inspect_container(
            container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    else {
        return Vec::new();
    };
    let map = info
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|p| {
            let binding = map.get(&format!("{p}/tcp"))?.as_ref()?.first()?.clone();
            let host_port = binding.host_port.filter(|h| !h.is_empty())?;
            Some((*p, format!("http://127.0.0.1:{host_port}")))
        })
        .collect()
}

/// Copy a session's workspace and HOME volume into another's, inside a throwaway
/// container that sees only those four trees: links the agent planted resolve in there
/// (and `cp -a` copies them as links), never on this machine.
pub async fn copy_session(
    docker: &Docker,
    image: &str,
    from: (&Path, &Names),
    to: (&Path, &Names),
) -> Result<()> {
    docker
        .create_volume(VolumeCreateOptions {
            name: Some(to.1.home_volume.clone()),
            labels: Some(to.1.labels()),
            ..Default::default()
        })
        .await
        .map_err(|e| failed("cannot create the fork's HOME volume", e))?;
    let name = format!("{}-fork", to.1.container);
    remove_container(docker, &name).await?;
    let host = HostConfig {
        mounts: Some(vec![
            bind_mount(
                MountTypeEnum::BIND,
                from.0.display().to_string(),
                "/from/ws",
                true,
            ),
            bind_mount(
                MountTypeEnum::VOLUME,
                from.1.home_volume.clone(),
                "/from/home",
                true,
            ),
            bind_mount(
                MountTypeEnum::BIND,
                to.0.display().to_string(),
                "/to/ws",
                false,
            ),
            // At the image's HOME, so the new volume starts as the image's (writable by
            // the agent's uid) before the copy lands in it.
            bind_mount(MountTypeEnum::VOLUME, to.1.home_volume.clone(), HOME, false),
        ]),
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(security_options()),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        user: Some(agent_user()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![format!(
            "cp -a /from/ws/. /to/ws/ && cp -a /from/home/. {HOME}/"
        )]),
        labels: Some(to.1.labels()),
        host_config: Some(host),
        ..Default::default()
    };
    let (code, said) = run_throwaway(docker, &name, body, "the fork's copy").await?;
    if code != 0 {
        return Err(SandboxError::Spawn(format!(
            "the copy of the session's workspace and HOME failed (exit code {code}): {said}"
        )));
    }
    Ok(())
}

/// Run a container made for one job to its end, and remove it: its exit code and, when
/// that is not 0, its last lines.
pub async fn run_throwaway(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    what: &str,
) -> Result<(i64, String)> {
    use futures_util::StreamExt;
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .map_err(|e| failed(&format!("cannot create the container for {what}"), e))?;
    let started = docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| failed(&format!("cannot start {what}"), e));
    let code = if started.is_ok() {
        let mut wait = docker.wait_container(
            name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        match wait.next().await {
            Some(Ok(r)) => r.status_code,
            // A non-zero exit comes as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            _ => -1,
        }
    } else {
        -1
    };
    let said = if code != 0 {
        last_lines(docker, name).await
    } else {
        String::new()
    };
    remove_container(docker, name).await?;
    started?;
    Ok((code, said))
}

/// The last lines a container printed, for an error that says why it died.
pub async fn last_lines(docker: &Docker, container: &str) -> String {
    use futures_util::StreamExt;
    let mut logs = docker.logs(
        container,
        Some(
            bollard::query_parameters::LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .tail("10")
                .build(),
        ),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.trim().to_owned()
}

/// SIGKILL to every process of the agent's uid in the container (`kill -9 -1` as that
/// uid: PID 1 is root's and stays). Best effort: a container that is not running has none.
pub async fn end_agent_processes(docker: &Docker, container: &str, user: &str) {
    let _ = crate::oneshot::run(
        docker,
        container,
        user,
        &["kill".into(), "-9".into(), "-1".into()],
        harvest_sandbox::ExecLimits {
            output_bytes: 4096,
            timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        },
    )
    .await;
}

pub(crate) fn bind_mount(
    typ: MountTypeEnum,
    source: String,
    target: &str,
    read_only: bool,
) -> Mount {
    Mount {
        typ: Some(typ),
        source: Some(source),
        target: Some(target.to_owned()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// No new privileges, and an explicit seccomp profile: the engine's default allows
/// `ptrace` (on kernels from 4.8), which would let a tool own the CLI it runs under
/// (`harvest_sandbox::seccomp` says what is denied and why).
pub fn security_options() -> Vec<String> {
    vec![
        "no-new-privileges".into(),
        format!("seccomp={}", harvest_sandbox::seccomp::docker_profile()),
    ]
}
