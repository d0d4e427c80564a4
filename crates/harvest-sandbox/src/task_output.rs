//! A running command's output as the CLI writes it, read from this machine while it
//! runs (for the live lines a client shows).
//!
//! The CLI writes each Bash command's output to
//! `$CLAUDE_CODE_TMPDIR/claude-<uid>/<project>/<session>/tasks/<task id>.output` as it
//! comes (observed on 2.1.330; its `system/task_started` line names the task and the tool
//! call). A sandbox that gives the agent a `CLAUDE_CODE_TMPDIR` this machine can see
//! (`Sandbox::task_outputs`) lets the daemon read it. The folder is the agent's to fill:
//! every open here is `openat2` beneath it with no link followed, of a regular file only,
//! without blocking.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where, under a sandbox's home, the agent's `CLAUDE_CODE_TMPDIR` is (relative).
pub const IN_HOME: &str = ".cache/harvest-tmp";

/// How many entries of a folder are looked at while finding a task's file.
const MAX_ENTRIES: usize = 64;

fn open_beneath(root: &Path, rel: &Path, flags: i32) -> std::io::Result<std::fs::File> {
    let root_dir = std::fs::File::open(root)?;
    let rel = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // `struct open_how` as openat2(2) takes it (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) with a valid directory descriptor, a NUL-terminated path and an
    // `open_how` of the size passed; the result is a new descriptor we own, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root_dir),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(std::fs::File::from(unsafe {
        OwnedFd::from_raw_fd(fd as i32)
    }))
}

/// The names in a folder beneath `root` (at most [`MAX_ENTRIES`]).
fn entries(root: &Path, rel: &Path) -> Vec<std::ffi::OsString> {
    let Ok(dir) = open_beneath(root, rel, libc::O_RDONLY | libc::O_DIRECTORY) else {
        return Vec::new();
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    std::fs::read_dir(format!("/proc/self/fd/{fd}"))
        .map(|it| {
            it.filter_map(Result::ok)
                .take(MAX_ENTRIES)
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default()
}

/// The task's output file, relative to `root` (a folder Harvest made, which the agent
/// cannot replace), once the CLI made it; `tmpdir` is the agent's tmpdir relative to
/// `root`, itself the agent's (a link there leads nowhere either).
pub fn find(root: &Path, tmpdir: &Path, task_id: &str) -> Option<PathBuf> {
    if task_id.is_empty()
        || task_id.len() > 64
        || !task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let file = format!("{task_id}.output");
    for user in entries(root, tmpdir) {
        if !user.as_bytes().starts_with(b"claude-") {
            continue;
        }
        let user = tmpdir.join(user);
        for project in entries(root, &user) {
            let project = user.join(project);
            for session in entries(root, &project) {
                let candidate = project.join(session).join("tasks").join(&file);
                if open_beneath(root, &candidate, libc::O_RDONLY | libc::O_NONBLOCK).is_ok() {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

/// What the file holds from `offset` on (at most `max` bytes), and its whole size.
pub fn read_from(
    root: &Path,
    rel: &Path,
    offset: u64,
    max: usize,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = open_beneath(root, rel, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    let size = meta.len();
    if size <= offset {
        return Ok((Vec::new(), size));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes)?;
    Ok((bytes, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_file_is_found_and_read_and_a_link_is_never_followed() {
        let root = std::env::temp_dir().join(format!("hv-task-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let tasks = root.join("claude-1000/-w/sid/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::write(tasks.join("abc123.output"), "one\ntwo\n").unwrap();
        let rel = find(&root, Path::new("."), "abc123").unwrap();
        let (bytes, size) = read_from(&root, &rel, 4, 100).unwrap();
        assert_eq!((bytes.as_slice(), size), (&b"two\n"[..], 8));
        // A link planted as the task's file, or as a folder on the way, leads nowhere.
        std::os::unix::fs::symlink("/etc/passwd", tasks.join("evil.output")).unwrap();
        assert_eq!(find(&root, Path::new("."), "evil"), None);
        std::fs::create_dir_all(root.join("claude-0")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("claude-0/-x")).unwrap();
        assert_eq!(find(&root, Path::new("."), "passwd"), None);
        assert_eq!(find(&root, Path::new("."), "../x"), None);
        // The tmpdir itself replaced by a link: nothing is found through it.
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("home/tmp")).unwrap();
        assert_eq!(find(&root.join("home"), Path::new("tmp"), "abc123"), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
