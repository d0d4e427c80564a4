//! `harvest pull ID [--patch FILE]`: bring a remote sandbox's changes back into the folder
//! the workspace was uploaded from, or write them as a patch.
//!
//! The paths come from the sandbox and are hostile: only plain relative paths are taken,
//! and no write follows a link (a parent that is a link, or a target that is one, stops
//! the pull). A file the user changed here since the upload is never overwritten: the
//! pull names the conflicts and writes nothing.

use super::connect;
use anyhow::{Context, Result, bail};
use base64::Engine;
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, FileChange};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

struct Change {
    path: String,
    base: Option<String>,
    content: Option<Vec<u8>>,
    /// The starting version as the sandbox holds it (a clone made there).
    base_content: Option<Vec<u8>>,
}

pub async fn pull(paths: &Paths, session: &str, patch: Option<PathBuf>) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let result = client
        .call::<m::SessionChanges>(m::SessionRef {
            session: session.to_owned(),
        })
        .await?;
    let (changes, left_out) = decode(result.changes)?;
    if !left_out.is_empty() {
        eprintln!(
            "harvest: left in the sandbox, because they are inside a .git folder (the agent's, \
             never brought here):"
        );
        for p in &left_out {
            eprintln!("  {}", shown(p));
        }
    }
    if changes.is_empty() {
        println!("nothing to pull: the agent changed no file");
        return Ok(ExitCode::SUCCESS);
    }
    let local = result.local_workspace.map(PathBuf::from);
    // The same check as `harvest apply`: no folder may become a git repository (its
    // config would run wherever git runs there).
    let paths: Vec<String> = changes
        .iter()
        .filter(|c| c.content.is_some())
        .map(|c| c.path.clone())
        .collect();
    if let Some(dir) = harvest_review::plants_a_repository(local.as_deref(), &paths) {
        bail!(
            "the sandbox's changes make {} a git repository (a HEAD beside objects/ and refs/, or a commondir), \
             which would run its config wherever git runs there; nothing was pulled",
            shown(&dir)
        );
    }
    match (patch, local) {
        (Some(file), local) => write_patch(&changes, local.as_deref(), &file),
        (None, Some(root)) => apply(&changes, &root),
        (None, None) => bail!(
            "this session's workspace was not uploaded from a folder here (--repo): \
             write its changes as a patch with `harvest pull {session} --patch FILE`"
        ),
    }
}

/// The changes to take, and the paths left out because they lie inside a `.git` folder.
fn decode(changes: Vec<FileChange>) -> Result<(Vec<Change>, Vec<String>)> {
    let engine = base64::engine::general_purpose::STANDARD;
    let (inside_git, changes): (Vec<FileChange>, Vec<FileChange>) = changes
        .into_iter()
        .partition(|c| plain_relative(&c.path) && !harvest_review::plain_relative(&c.path));
    let left_out = inside_git.into_iter().map(|c| c.path).collect();
    let taken = changes
        .into_iter()
        .map(|c| {
            if !plain_relative(&c.path) {
                bail!(
                    "the sandbox reported a path that is not a plain relative one ({:?}); \
                     nothing was pulled",
                    shown(&c.path)
                );
            }
            let bytes = |b: Option<String>| -> Result<Option<Vec<u8>>> {
                match b {
                    Some(b) => Ok(Some(
                        engine.decode(b).context("the daemon sent a bad file")?,
                    )),
                    None => Ok(None),
                }
            };
            Ok(Change {
                path: c.path,
                base: c.base,
                content: bytes(c.content_b64)?,
                base_content: bytes(c.base_b64)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((taken, left_out))
}

/// `a/b.txt`: no root, no `..`, no `.`, no empty part, no NUL or newline.
fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['\0', '\n'])
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Git blob hashes of the local files that exist as regular files (not links).
fn local_hashes(root: &Path, changes: &[Change]) -> Result<BTreeMap<String, String>> {
    let present: Vec<String> = changes
        .iter()
        .filter(|c| {
            std::fs::symlink_metadata(root.join(&c.path)).is_ok_and(|m| m.file_type().is_file())
        })
        .map(|c| c.path.clone())
        .collect();
    Ok(harvest_daytona::workspace::blob_hashes(root, &present)?)
}

/// The files the user changed here since the upload (or made, where the agent made one).
fn conflicts(root: &Path, changes: &[Change]) -> Result<Vec<String>> {
    let hashes = local_hashes(root, changes)?;
    Ok(changes
        .iter()
        .filter(|c| {
            let here = hashes.get(&c.path);
            let exists = std::fs::symlink_metadata(root.join(&c.path)).is_ok();
            match &c.base {
                Some(base) => here != Some(base) && (exists || c.content.is_some()),
                None => exists,
            }
        })
        .map(|c| c.path.clone())
        .collect())
}

fn apply(changes: &[Change], root: &Path) -> Result<ExitCode> {
    let conflicts = conflicts(root, changes)?;
    if !conflicts.is_empty() {
        eprintln!(
            "harvest: these files changed here since they were uploaded; nothing was written:"
        );
        for c in &conflicts {
            eprintln!("  {}", shown(c));
        }
        eprintln!(
            "harvest: commit or move your changes and pull again, or take the agent's as a patch \
             with --patch FILE"
        );
        return Ok(ExitCode::from(1));
    }
    // Every target is checked before anything is written: a pull writes all or nothing.
    for c in changes {
        safe_target(root, &c.path, false)?;
    }
    for c in changes {
        let target = safe_target(root, &c.path, true)?;
        match &c.content {
            Some(bytes) => write_atomically(&target, bytes)?,
            None => {
                if std::fs::symlink_metadata(&target).is_ok() {
                    std::fs::remove_file(&target)
                        .with_context(|| format!("cannot delete {}", target.display()))?;
                }
            }
        }
        let what = match (&c.base, &c.content) {
            (None, _) => "added",
            (Some(_), Some(_)) => "changed",
            (Some(_), None) => "deleted",
        };
        println!("{what:8} {}", shown(&c.path));
    }
    println!("pulled {} file(s) into {}", changes.len(), root.display());
    Ok(ExitCode::SUCCESS)
}

/// The local path for `rel` under `root`, refusing any link on the way (a link could lead
/// the write outside the folder); with `make`, its missing folders are made.
fn safe_target(root: &Path, rel: &str, make: bool) -> Result<PathBuf> {
    let mut here = root.to_path_buf();
    let parts: Vec<_> = Path::new(rel).components().collect();
    for (i, part) in parts.iter().enumerate() {
        here.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "{} is a link here; nothing is written through it",
                    here.display()
                )
            }
            Ok(m) if !last && !m.is_dir() => bail!("{} is not a folder here", here.display()),
            Ok(_) => {}
            Err(_) if !last && make => std::fs::create_dir(&here)
                .with_context(|| format!("cannot make {}", here.display()))?,
            Err(_) => {}
        }
    }
    Ok(here)
}

fn write_atomically(target: &Path, bytes: &[u8]) -> Result<()> {
    let dir = target.parent().context("a file without a folder")?;
    let name = target.file_name().context("a file without a name")?;
    let tmp = dir.join(format!(".{}.harvest-pull", name.to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, target).with_context(|| format!("cannot write {}", target.display()))
}

/// A patch (git's format, `git apply`-able from the workspace's root) of the agent's
/// changes against the local files as they were uploaded.
fn write_patch(changes: &[Change], local: Option<&Path>, file: &Path) -> Result<ExitCode> {
    let tmp = tempfile::tempdir().context("cannot make a temporary folder")?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut skipped = Vec::new();
    let hashes = match local {
        Some(root) => local_hashes(root, changes)?,
        None => BTreeMap::new(),
    };
    for c in changes {
        // The old side is the starting version: the sandbox's copy of a clone, else the
        // local file the upload came from while it is unchanged.
        if c.base.is_some() {
            match local {
                _ if c.base_content.is_some() => {
                    put(&a, &c.path, c.base_content.as_deref().unwrap_or_default())?;
                }
                Some(root) if hashes.get(&c.path) == c.base.as_ref() => {
                    let old = std::fs::read(root.join(&c.path))?;
                    put(&a, &c.path, &old)?;
                }
                _ => {
                    skipped.push(c.path.clone());
                    continue;
                }
            }
        }
        if let Some(new) = &c.content {
            put(&b, &c.path, new)?;
        }
    }
    std::fs::create_dir_all(&a)?;
    std::fs::create_dir_all(&b)?;
    let out = std::process::Command::new("git")
        .current_dir(tmp.path())
        .args([
            "diff",
            "--no-index",
            "--binary",
            "--src-prefix=",
            "--dst-prefix=",
            "a",
            "b",
        ])
        .output()
        .context("cannot run git diff")?;
    // `git diff --no-index` exits 1 when there are differences.
    if out.status.code().is_some_and(|c| c > 1) {
        bail!(
            "git diff failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(file, &out.stdout)
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "wrote the agent's changes to {} ({} file(s)); apply them with `git apply -p1 {}` in the workspace",
        file.display(),
        changes.len() - skipped.len(),
        file.display()
    );
    if !skipped.is_empty() {
        eprintln!("harvest: left out, because they changed here since the upload:");
        for s in &skipped {
            eprintln!("  {}", shown(s));
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A sandbox-made path, safe to print.
fn shown(p: &str) -> String {
    harvest_termsafe::text(p, harvest_termsafe::Sgr::Drop).into_owned()
}

fn put(dir: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plain_relative;

    #[test]
    fn only_plain_relative_paths_are_taken() {
        for ok in ["a.txt", "src/main.rs", "a/b/c"] {
            assert!(plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            "a\nb",
            "a\0b",
        ] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }
}
