//! The workspace into a Daytona sandbox: `--repo` is cloned inside it through the git
//! endpoint; a folder is uploaded (what git would track: .gitignore honoured, `.git`
//! itself, links and special files left out) in bounded batches. Done once per sandbox:
//! a marker in the sandbox says so, because `create` runs again for a sandbox found again
//! and must never overwrite the agent's work with the user's folder.

use crate::remote::{DaytonaSandbox, HOME, WORKSPACE, quote};
use harvest_sandbox::{Result, SandboxError, WorkspaceSource};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the list of uploaded files is kept on this machine (per session), for `pull`.
pub const MANIFEST: &str = "daytona-upload.json";
/// A fork's copy of its source's HOME, kept with the fork's session on this machine.
pub const FORK_TARBALL: &str = "daytona-fork.tgz";
const REMOTE_TARBALL: &str = "/tmp/.harvest-fork.tgz";
const READY: &str = "/home/daytona/.harvest-workspace-ready";
/// Bytes per bulk upload.
const BATCH: usize = 8 << 20;

/// The files of a folder to upload, relative, as git would list them.
pub fn files_of(root: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| SandboxError::Io {
        path: root.to_owned(),
        source: e,
    };
    let tmp = tempdir_for_git().map_err(io)?;
    let mut cmd = std::process::Command::new("git");
    if root.join(".git").exists() {
        cmd.arg("-C").arg(root).args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ]);
    } else {
        // Not a repository: an empty git dir over the folder still applies its .gitignore.
        cmd.arg("--git-dir")
            .arg(&tmp)
            .arg("--work-tree")
            .arg(root)
            .arg("-C")
            .arg(root)
            .args(["ls-files", "-z", "--others", "--exclude-standard"]);
        let _ = std::process::Command::new("git")
            .arg("init")
            .arg("-q")
            .arg("--bare")
            .arg(&tmp)
            .output();
    }
    let out = cmd.output().map_err(io)?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !out.status.success() {
        return Err(SandboxError::BadWorkspace {
            path: root.to_owned(),
            reason: format!(
                "cannot list its files: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .filter(|p| !p.components().any(|c| c.as_os_str() == ".git"))
        .collect())
}

use std::os::unix::ffi::OsStrExt;

fn tempdir_for_git() -> std::io::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("harvest-ls-{}-{}", std::process::id(), uuid_like()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl DaytonaSandbox {
    pub async fn prepare_workspace(
        &mut self,
        source: &WorkspaceSource,
        manifest: &Path,
    ) -> Result<()> {
        let (ready, _) = self
            .execute_at(
                HOME,
                &format!("test -e {}", quote(READY)),
                Duration::from_secs(30),
            )
            .await?;
        if ready == Some(0) {
            return Ok(());
        }
        match source {
            WorkspaceSource::Clone { url } => {
                self.toolbox().git_clone(url, WORKSPACE).await?;
            }
            WorkspaceSource::Owned { path } if path.ends_with(FORK_TARBALL) => {
                let bytes = std::fs::read(path).map_err(|e| SandboxError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                self.toolbox()
                    .upload(vec![(REMOTE_TARBALL.to_owned(), bytes)])
                    .await?;
                let script =
                    format!("tar xzf {REMOTE_TARBALL} -C /home/daytona && rm -f {REMOTE_TARBALL}");
                let (code, out) = self
                    .execute_at(HOME, &script, Duration::from_secs(600))
                    .await?;
                if code != Some(0) {
                    return Err(SandboxError::Spawn(format!(
                        "cannot unpack the fork's copy: {}",
                        out.trim()
                    )));
                }
            }
            WorkspaceSource::Folder { path } | WorkspaceSource::Owned { path } => {
                self.toolbox().make_folder(WORKSPACE).await?;
                self.upload_folder(path, manifest).await?;
            }
        }
        self.toolbox()
            .upload(vec![(READY.to_owned(), Vec::new())])
            .await?;
        Ok(())
    }

    /// HOME (the workspace and the agent's transcripts) as a gzipped tarball.
    pub async fn export_home(&self) -> Result<Vec<u8>> {
        self.ensure_started().await?;
        let script = format!(
            "tar czf {REMOTE_TARBALL} -C /home/daytona --exclude=./.harvest-workspace-ready ."
        );
        let (code, out) = self
            .execute_at(HOME, &script, Duration::from_secs(600))
            .await?;
        if code != Some(0) {
            return Err(SandboxError::Spawn(format!(
                "cannot copy the sandbox's HOME: {}",
                out.trim()
            )));
        }
        let bytes = self
            .toolbox()
            .download(REMOTE_TARBALL)
            .await?
            .unwrap_or_default();
        let _ = self
            .execute_at(
                HOME,
                &format!("rm -f {REMOTE_TARBALL}"),
                Duration::from_secs(30),
            )
            .await;
        Ok(bytes)
    }

    async fn upload_folder(&self, root: &Path, manifest: &Path) -> Result<()> {
        let files = files_of(root)?;
        let total = files.len();
        let (mut batch, mut size, mut sent, mut listed) = (Vec::new(), 0usize, 0usize, Vec::new());
        for rel in files {
            let full = root.join(&rel);
            // Links and special files stay behind: only regular files go up.
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let bytes = std::fs::read(&full).map_err(|e| SandboxError::Io {
                path: full.clone(),
                source: e,
            })?;
            let dest = format!("{WORKSPACE}/{}", rel.to_string_lossy());
            size += bytes.len();
            listed.push(rel.to_string_lossy().into_owned());
            batch.push((dest, bytes));
            if size >= BATCH || batch.len() >= 500 {
                sent += batch.len();
                self.toolbox().upload(std::mem::take(&mut batch)).await?;
                tracing::info!(sent, total, "uploading the workspace");
                size = 0;
            }
        }
        if !batch.is_empty() {
            sent += batch.len();
            self.toolbox().upload(batch).await?;
        }
        tracing::info!(sent, total, "workspace uploaded");
        if let Some(dir) = manifest.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(manifest, serde_json::to_vec(&listed).unwrap_or_default());
        Ok(())
    }
}
