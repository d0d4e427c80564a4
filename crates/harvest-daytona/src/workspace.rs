//! The workspace into a Daytona sandbox: `--repo` is cloned inside it through the git
//! endpoint; a folder is uploaded (what git would track: .gitignore honoured, `.git`
//! itself, links and special files left out) in bounded batches. Done once per sandbox:
//! a marker in the sandbox says so, because `create` runs again for a sandbox found again
//! and must never overwrite the agent's work with the user's folder.

use crate::remote::{DaytonaSandbox, HOME, WORKSPACE, quote};
use harvest_sandbox::{Result, SandboxError, WorkspaceChange, WorkspaceSource};
use std::collections::BTreeMap;
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

/// In the workspace: its files as git would list them (regular files only), each with its
/// git blob hash, `HASH<TAB>PATH` per line. Always through a private, empty repository:
/// the workspace's own `.git` is the agent's to write (one it made up, or broke, must not
/// stop the listing), and `.git` folders never come along.
const LIST_AND_HASH: &str = r#"set -e
t=$(mktemp -d)
git init -q --bare "$t/g"
git --git-dir="$t/g" --work-tree=. ls-files -o --exclude-standard > "$t/all"
while IFS= read -r f; do case "$f" in .git/*|*/.git/*) continue;; esac; if [ -f "$f" ] && [ ! -L "$f" ]; then printf '%s\n' "$f"; fi; done < "$t/all" > "$t/files"
git hash-object --no-filters --stdin-paths < "$t/files" > "$t/hashes"
paste "$t/hashes" "$t/files"
rm -rf "$t""#;

/// Git blob hashes of files under `root` (what `git hash-object` gives on both sides).
pub fn blob_hashes(root: &Path, files: &[String]) -> Result<BTreeMap<String, String>> {
    use std::io::Write;
    let io = |e: std::io::Error| SandboxError::Io {
        path: root.to_owned(),
        source: e,
    };
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["hash-object", "--no-filters", "--stdin-paths"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(io)?;
    let list: String = files
        .iter()
        .filter(|f| !f.contains('\n'))
        .map(|f| format!("{f}\n"))
        .collect();
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(list.as_bytes());
        }
    });
    let out = child.wait_with_output().map_err(io)?;
    let _ = writer.join();
    let hashes = String::from_utf8_lossy(&out.stdout);
    Ok(files
        .iter()
        .filter(|f| !f.contains('\n'))
        .cloned()
        .zip(hashes.lines().map(str::to_owned))
        .collect())
}

/// The files of a folder to upload, relative, as git would list them.
pub fn files_of(root: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| SandboxError::Io {
        path: root.to_owned(),
        source: e,
    };
    let tmp = tempfile::tempdir().map_err(io)?;
    let tmp = tmp.path();
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
            .arg(tmp)
            .arg("--work-tree")
            .arg(root)
            .arg("-C")
            .arg(root)
            .args(["ls-files", "-z", "--others", "--exclude-standard"]);
        let _ = std::process::Command::new("git")
            .arg("init")
            .arg("-q")
            .arg("--bare")
            .arg(tmp)
            .output();
    }
    let out = cmd.output().map_err(io)?;
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

impl DaytonaSandbox {
    pub async fn prepare_workspace(
        &mut self,
        source: &WorkspaceSource,
        manifest: &Path,
        progress: &harvest_sandbox::Progress,
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
                let shown = harvest_sandbox::local::redact_url(url);
                progress.say(&format!("cloning {shown} in the sandbox"));
                self.toolbox().git_clone(url, WORKSPACE).await?;
                // The clone as it came is what a pull or patch is measured against.
                let hashes = self.remote_hashes().await?;
                write_manifest(manifest, &hashes);
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
                self.upload_folder(path, manifest, progress).await?;
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

    async fn upload_folder(
        &self,
        root: &Path,
        manifest: &Path,
        progress: &harvest_sandbox::Progress,
    ) -> Result<()> {
        let files = files_of(root)?;
        let total = files.len();
        let (mut bytes_sent, started) = (0usize, std::time::Instant::now());
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
                bytes_sent += size;
                self.toolbox().upload(std::mem::take(&mut batch)).await?;
                tracing::info!(sent, total, "uploading the workspace");
                progress.say(&format!(
                    "uploading the workspace: {sent} of {total} files ({:.1} MiB, {:.0} s)",
                    bytes_sent as f64 / 1048576.0,
                    started.elapsed().as_secs_f64()
                ));
                size = 0;
            }
        }
        if !batch.is_empty() {
            sent += batch.len();
            bytes_sent += size;
            self.toolbox().upload(batch).await?;
        }
        tracing::info!(sent, total, "workspace uploaded");
        progress.say(&format!(
            "uploaded the workspace: {sent} files ({:.1} MiB) in {:.1} s",
            bytes_sent as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        ));
        let hashes = blob_hashes(root, &listed)?;
        write_manifest(manifest, &hashes);
        Ok(())
    }

    /// The workspace's files in the sandbox with their git blob hashes.
    async fn remote_hashes(&self) -> Result<BTreeMap<String, String>> {
        let (code, out) = self
            .execute(LIST_AND_HASH, Duration::from_secs(300))
            .await?;
        if code != Some(0) {
            return Err(SandboxError::Step {
                step: "listing the files of the sandbox's workspace",
                detail: out.trim().to_owned(),
            });
        }
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(h, _)| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|(h, p)| (p.trim_start_matches("./").to_owned(), h.to_owned()))
            .collect())
    }

    /// The blob `hash` from the workspace's own repository: a clone's starting version of
    /// a file, which only the sandbox holds. `None` for an uploaded folder (no `.git`
    /// goes up; the base is the user's file) or when the agent removed the object.
    async fn cloned_blob(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let script = format!(
            "test -d .git && git cat-file -e {hash} && git cat-file blob {hash} | base64 -w0"
        );
        let (code, out) = self.execute(&script, Duration::from_secs(120)).await?;
        if code != Some(0) {
            return Ok(None);
        }
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .ok())
    }

    /// What the agent changed, against the manifest of what was uploaded.
    pub async fn changes_since_upload(&self, manifest: &Path) -> Result<Vec<WorkspaceChange>> {
        let uploaded: BTreeMap<String, String> = std::fs::read(manifest)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let now = self.remote_hashes().await?;
        let mut changes = Vec::new();
        for (path, hash) in &now {
            let base = uploaded.get(path);
            if base == Some(hash) {
                continue;
            }
            let content = self
                .toolbox()
                .download(&format!("{WORKSPACE}/{path}"))
                .await?
                .unwrap_or_default();
            let base_content = match base {
                Some(hash) => self.cloned_blob(hash).await?,
                None => None,
            };
            changes.push(WorkspaceChange {
                path: path.clone(),
                base: base.cloned(),
                content: Some(content),
                base_content,
            });
        }
        for (path, base) in &uploaded {
            if !now.contains_key(path) {
                changes.push(WorkspaceChange {
                    path: path.clone(),
                    base: Some(base.clone()),
                    content: None,
                    base_content: self.cloned_blob(base).await?,
                });
            }
        }
        Ok(changes)
    }
}

fn write_manifest(manifest: &Path, hashes: &BTreeMap<String, String>) {
    if let Some(dir) = manifest.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(manifest, serde_json::to_vec(hashes).unwrap_or_default());
}

/// The most of the user's configuration sent into a remote HOME.
const MAX_HOME_CONFIG: usize = 64 << 20;

impl DaytonaSandbox {
    /// The user's own Claude Code configuration (what a local sandbox binds read-only
    /// into the agent's HOME) sent into the remote HOME, at the same paths. A remote
    /// sandbox cannot bind this machine's files: these are copies, and what the agent
    /// changes in them stays there. Links in the user's folders are followed (they are
    /// the user's, like a skill linked from a repository), at most 8 deep.
    pub async fn upload_home_config(&self, binds: &[(PathBuf, String)]) -> Result<()> {
        let mut files = Vec::new();
        let mut size = 0usize;
        for (host, rel) in binds {
            collect_config(host, &format!("{HOME}/{rel}"), 0, &mut files, &mut size)?;
        }
        if size > MAX_HOME_CONFIG {
            return Err(SandboxError::Spawn(format!(
                "your Claude Code configuration is {} MiB, more than the {} MiB a remote \
                 sandbox takes; choose fewer parts with agent.user_config, or \
                 --no-user-config",
                size >> 20,
                MAX_HOME_CONFIG >> 20
            )));
        }
        if !files.is_empty() {
            self.toolbox().upload(files).await?;
        }
        Ok(())
    }
}

fn collect_config(
    host: &Path,
    remote: &str,
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
    size: &mut usize,
) -> Result<()> {
    let io = |e: std::io::Error| SandboxError::Io {
        path: host.to_owned(),
        source: e,
    };
    if depth > 8 || *size > MAX_HOME_CONFIG {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(host) else {
        return Ok(());
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(host).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            collect_config(
                &entry.path(),
                &format!("{remote}/{name}"),
                depth + 1,
                out,
                size,
            )?;
        }
    } else if meta.is_file() {
        let bytes = std::fs::read(host).map_err(io)?;
        *size += bytes.len();
        out.push((remote.to_owned(), bytes));
    }
    Ok(())
}
