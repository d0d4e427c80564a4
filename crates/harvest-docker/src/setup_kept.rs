//! Kept setups: the state a repository's successful setup left in a container (what it
//! made in the workspace, and the agent's HOME), kept on this machine by the setup's key
//! (`harvest_sandbox::setup_cache`) so that the next session of the repository starts
//! from it instead of running the setup again.
//!
//! - Keeping happens right after the setup, before the agent has run in the sandbox, in a
//!   throwaway container that sees only the workspace and HOME (read-only) and the new
//!   keep's folder: links the setup made are copied as links and resolve in there, never
//!   on this machine. A keep past `setup.cache_max_mb` is not kept (and said so).
//! - A kept setup is bound read-only into the new session's container, so no agent can
//!   change what later sessions start from, and copied into place with one exec.
//! - The daemon never reads a keep's files; it only names, renames and removes folders.

use crate::container::{self, Names};
use crate::{HOME, WORKSPACE};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, MountTypeEnum};
use harvest_sandbox::{ExecLimits, Result, SandboxError, SetupPlan};
use std::path::{Path, PathBuf};

/// Where a kept setup is bound in the session's container.
pub const MOUNT: &str = "/run/harvest-setup";
/// What is never kept of the HOME: the user's configuration bound into it, and the
/// CLI's own state.
const NOT_KEPT: &[&str] = &[
    ".claude",
    ".claude.json",
    ".harvest",
    ".harvest-memory.jsonl",
];

#[derive(Debug, Clone)]
pub struct KeptSetup {
    /// `<root>/<key>`: the keep's folder (there or not yet).
    pub dir: PathBuf,
    pub key: String,
    /// Kept before this sandbox was made, and bound into it.
    pub found: bool,
    pub max_mb: u64,
}

fn done_marker(dir: &Path) -> PathBuf {
    dir.with_extension("done")
}

/// The keep for this sandbox's setup: found (complete) or to be made.
pub fn find(root: &Path, workspace: &Path, plan: &SetupPlan, image_id: &str) -> Option<KeptSetup> {
    if !plan.cache {
        return None;
    }
    let key = harvest_sandbox::setup_cache::key(workspace, &plan.script, image_id)?;
    let dir = root.join(&key);
    let found = done_marker(&dir).is_file() && dir.is_dir();
    Some(KeptSetup {
        dir,
        key,
        found,
        max_mb: plan.cache_max_mb,
    })
}

/// Copy a found keep into the session's workspace and HOME, as the agent.
pub async fn restore(
    docker: &Docker,
    container: &str,
    user: &str,
    kept: &KeptSetup,
) -> Result<Option<String>> {
    if !kept.found {
        return Ok(None);
    }
    let copy = format!(
        "set -e; [ -d {MOUNT}/ws ] && cp -a {MOUNT}/ws/. {WORKSPACE}/; \
         [ -d {MOUNT}/home ] && cp -a {MOUNT}/home/. {HOME}/; true"
    );
    let out = crate::oneshot::run(
        docker,
        container,
        user,
        &["/bin/sh".into(), "-c".into(), copy],
        ExecLimits {
            timeout: std::time::Duration::from_secs(15 * 60),
            ..Default::default()
        },
    )
    .await?;
    if out.code != Some(0) {
        return Err(SandboxError::Spawn(format!(
            "copying the kept setup failed ({}): {}",
            out.code
                .map_or("killed".into(), |c| format!("exit code {c}")),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let when = std::fs::metadata(done_marker(&kept.dir))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(String::new(), |d| {
            format!(", kept {} ago", ago(d.as_secs()))
        });
    Ok(Some(format!(
        "the repository's setup was not run again: this session starts from its kept result \
         (setup {}{when}); a change to the script or a lockfile runs it anew",
        kept.key
    )))
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Whether a path the setup made may be kept: relative, inside the workspace, and not
/// one a shell or `cp` would read as something else.
fn keepable(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with('-')
        && !path.contains('\n')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Keep what the setup made (`made`, workspace paths) and the HOME, in a throwaway
/// container.
pub async fn save(
    docker: &Docker,
    image: &str,
    names: &Names,
    workspace: &Path,
    kept: &KeptSetup,
    made: &[String],
) -> Result<Option<String>> {
    if kept.found {
        return Ok(None);
    }
    let io = |path: &Path, source| SandboxError::Io {
        path: path.to_owned(),
        source,
    };
    let partial = kept.dir.with_extension("partial");
    if let Some(root) = partial.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(root)
            .map_err(|e| io(root, e))?;
    }
    if partial.exists() {
        harvest_sandbox::local::remove_tree(&partial)?;
    }
    std::fs::create_dir(&partial).map_err(|e| io(&partial, e))?;
    container::give_to_agent(&partial)?;
    let made: Vec<&str> = made
        .iter()
        .map(String::as_str)
        .filter(|p| keepable(p))
        .collect();
    let skip = NOT_KEPT
        .iter()
        .map(|n| format!("{n}) continue;;"))
        .collect::<Vec<_>>()
        .join(" ");
    // The paths come as arguments ("$@"), never as shell text.
    let script = format!(
        "set -e; mkdir -p /to/ws /to/home; cd /from/ws; \
         for p in \"$@\"; do [ -e \"./$p\" ] || [ -L \"./$p\" ] || continue; cp -a --parents \"./$p\" /to/ws/; done; \
         cd /from/home; for e in .[!.]* ..?* *; do [ -e \"$e\" ] || [ -L \"$e\" ] || continue; \
         case \"$e\" in {skip} esac; cp -a \"./$e\" /to/home/; done; \
         size=$(du -sm /to | cut -f1); if [ \"$size\" -gt {max} ]; then echo \"$size MiB\"; exit 3; fi",
        max = kept.max_mb
    );
    let mut cmd = vec![script, "keep".into()];
    cmd.extend(made.iter().map(|p| (*p).to_owned()));
    let host = HostConfig {
        mounts: Some(vec![
            container::bind_mount(
                MountTypeEnum::BIND,
                workspace.display().to_string(),
                "/from/ws",
                true,
            ),
            container::bind_mount(
                MountTypeEnum::VOLUME,
                names.home_volume.clone(),
                "/from/home",
                true,
            ),
            container::bind_mount(
                MountTypeEnum::BIND,
                partial.display().to_string(),
                "/to",
                false,
            ),
        ]),
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(container::security_options()),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        user: Some(container::agent_user()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(cmd),
        labels: Some(names.labels()),
        host_config: Some(host),
        ..Default::default()
    };
    let name = format!("{}-keep", names.container);
    container::remove_container(docker, &name).await?;
    let (code, said) = container::run_throwaway(docker, &name, body, "keeping the setup").await?;
    if code != 0 {
        harvest_sandbox::local::remove_tree(&partial)?;
        if code == 3 {
            return Ok(Some(format!(
                "the setup's result was not kept: it takes {said}, more than setup.cache_max_mb = {} (raise it in harvest.toml to keep it)",
                kept.max_mb
            )));
        }
        return Err(SandboxError::Spawn(format!(
            "copying the setup's result failed (exit code {code}): {said}"
        )));
    }
    // Complete before it is found: renamed into place, then marked.
    if kept.dir.exists() {
        harvest_sandbox::local::remove_tree(&kept.dir)?;
    }
    std::fs::rename(&partial, &kept.dir).map_err(|e| io(&kept.dir, e))?;
    std::fs::write(done_marker(&kept.dir), b"").map_err(|e| io(&kept.dir, e))?;
    Ok(Some(format!(
        "the setup's result was kept (setup {}): the next session of this repository starts from it",
        kept.key
    )))
}
