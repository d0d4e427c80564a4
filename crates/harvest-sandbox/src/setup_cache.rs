//! The key a kept setup is found by: the script and the repository's lockfiles (what a
//! setup's result depends on), and the sandbox's image. A change to any of them is a new
//! key, so a kept state is never used for a setup it did not come from.
//!
//! The files are the workspace's, which an earlier agent may have changed: only regular
//! files are read (never through a link: a lockfile linked to `/dev/zero` or a secret of
//! this machine is not followed), each at most [`MAX_FILE`].

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The lockfiles that name a repository's dependencies, at its top.
pub const LOCKFILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "Cargo.lock",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "requirements.txt",
    "requirements-dev.txt",
    "Gemfile.lock",
    "go.sum",
    "composer.lock",
    "mix.lock",
];
/// A script names more of the files it depends on in a comment:
/// `# harvest-cache-key: vendor/list.txt tools/versions`.
pub const KEY_LINE: &str = "harvest-cache-key:";
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// A regular file's bytes, never through a link; `None` when it is not one.
fn regular(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Whether a relative path stays in the workspace (no `..`, not absolute).
fn plain(rel: &str) -> bool {
    !rel.is_empty() && !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "..")
}

/// The key of `script`'s setup in `workspace`, for a sandbox made from `image` (the
/// image's id); `None` when the workspace has no such script.
pub fn key(workspace: &Path, script: &str, image: &str) -> Option<String> {
    let script_bytes = regular(&workspace.join(script))?;
    let mut named: Vec<String> = LOCKFILES.iter().map(|s| (*s).to_owned()).collect();
    for line in String::from_utf8_lossy(&script_bytes).lines() {
        if let Some((_, rest)) = line.split_once(KEY_LINE) {
            named.extend(
                rest.split_whitespace()
                    .filter(|p| plain(p))
                    .map(str::to_owned),
            );
        }
    }
    named.sort();
    named.dedup();
    let mut all = Vec::new();
    for part in [image.as_bytes(), script.as_bytes(), &script_bytes] {
        all.extend_from_slice(&(part.len() as u64).to_le_bytes());
        all.extend_from_slice(part);
    }
    for name in &named {
        if let Some(bytes) = regular(&workspace.join(name)) {
            for part in [name.as_bytes(), &bytes] {
                all.extend_from_slice(&(part.len() as u64).to_le_bytes());
                all.extend_from_slice(part);
            }
        }
    }
    Some(harvest_protocol::content_name(&all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_script_the_lockfiles_and_the_image() {
        let dir = std::env::temp_dir().join(format!("hv-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".harvest")).unwrap();
        assert_eq!(key(&dir, ".harvest/setup", "img"), None);
        std::fs::write(
            dir.join(".harvest/setup"),
            "npm ci\n# harvest-cache-key: extra.txt\n",
        )
        .unwrap();
        let a = key(&dir, ".harvest/setup", "img").unwrap();
        assert_eq!(key(&dir, ".harvest/setup", "img").unwrap(), a);
        assert_ne!(key(&dir, ".harvest/setup", "other-image").unwrap(), a);
        std::fs::write(dir.join("package-lock.json"), "{}").unwrap();
        let b = key(&dir, ".harvest/setup", "img").unwrap();
        assert_ne!(a, b);
        std::fs::write(dir.join("extra.txt"), "1").unwrap();
        let c = key(&dir, ".harvest/setup", "img").unwrap();
        assert_ne!(b, c);
        // A link is not followed: the same key as without the file.
        std::fs::remove_file(dir.join("extra.txt")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("extra.txt")).unwrap();
        assert_eq!(key(&dir, ".harvest/setup", "img").unwrap(), b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
