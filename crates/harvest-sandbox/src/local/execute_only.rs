//! Execute-only copies of the binaries a sandbox runs: the user's `claude` (the local
//! jail's agent) and `harvest` (a container's `harvest forward`).
//!
//! A process whose executable its user cannot read is not dumpable (execve(2) sets it so,
//! as for a set-uid program): nothing of the same uid may then `ptrace` it, open its
//! `/proc/<pid>/mem` or take its descriptors with `pidfd_getfd`. The agent's tools run as
//! the CLI's uid, so this is what stops a tool from owning the CLI through `/proc`,
//! which no seccomp filter can see (it filters calls, not paths). The CLI needs only to
//! execute itself, never to read its file. Its mode cannot be changed on a read-only bind
//! mount nor on the user's own install, hence a copy, made once per binary (size and
//! modification time) and shared by every session.

use crate::{Result, SandboxError};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The execute-only copy of `source` under `cache` (named `<prefix>-<hash>`), made if
/// missing, with `mode`: 0o100 where the sandbox's uid maps to the file's owner (a local
/// jail), 0o111 where it may not (a container's user).
pub fn copy(source: &Path, cache: &Path, prefix: &str, mode: u32) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SandboxError::Io { path, source }
    };
    let real = std::fs::canonicalize(source).map_err(io(source))?;
    let meta = std::fs::metadata(&real).map_err(io(&real))?;
    if is_script(&real) {
        // An interpreter must read its script: such a CLI (an npm `cli.js`, a test's
        // stand-in) runs as it is, dumpable; the seccomp filter still denies ptrace,
        // pidfd_getfd and process_vm_*, but its /proc/<pid>/mem stays open to its tools.
        tracing::warn!(path = %real.display(), "the agent is a script: it cannot be made execute-only, so its memory is open to its tools through /proc; use the native claude binary");
        return Ok(real);
    }
    let name = format!(
        "{prefix}-{:016x}",
        fnv(&[
            real.as_os_str().as_encoded_bytes(),
            &meta.len().to_le_bytes(),
            &meta.mtime().to_le_bytes(),
            &meta.mtime_nsec().to_le_bytes(),
        ])
    );
    let target = cache.join(name);
    if let Ok(m) = std::fs::metadata(&target)
        && m.len() == meta.len()
        && m.permissions().mode() & 0o777 == mode
    {
        return Ok(target);
    }
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let partial = cache.join(format!(".partial-{}", uuid_like()));
    let made = (|| {
        std::fs::copy(&real, &partial)?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&partial, &target)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(&partial);
        return Err(SandboxError::Io {
            path: target,
            source: e,
        });
    }
    tracing::info!(from = %real.display(), to = %target.display(), "made an execute-only copy");
    Ok(target)
}

/// A `#!` script rather than a binary.
fn is_script(path: &Path) -> bool {
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| &head == b"#!")
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
    }
    h
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{t}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_execute_only_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("claude");
        std::fs::write(&src, b"\x7fELF pretend binary").unwrap();
        let cache = dir.path().join("cache");
        let a = copy(&src, &cache, "claude", 0o100).unwrap();
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o100);
        let b = copy(&src, &cache, "claude", 0o100).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    }

    #[test]
    fn a_script_runs_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("cli.js");
        std::fs::write(&src, b"#!/usr/bin/env node\n").unwrap();
        let cache = dir.path().join("cache");
        assert_eq!(
            copy(&src, &cache, "claude", 0o100).unwrap(),
            src.canonicalize().unwrap()
        );
        assert!(!cache.exists());
    }
}
