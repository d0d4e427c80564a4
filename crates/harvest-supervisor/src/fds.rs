//! Descriptors handed to a child at fixed numbers (the jail's stdio sockets, a seccomp
//! program for bwrap's `--seccomp`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A close-on-exec copy of `fd` numbered above every fixed target (so a `dup2` to a
/// target never overwrites a source still to be copied).
pub fn high_copy(fd: &OwnedFd) -> Result<OwnedFd, String> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own, or -1.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if copy < 0 {
        return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `copy` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// `bytes` in a memory file, read from the start by whoever gets the descriptor.
pub fn memory_file(bytes: &[u8]) -> Result<OwnedFd, String> {
    use std::io::Write;
    // SAFETY: memfd_create(2) with a static name; the descriptor is ours or -1.
    let fd = unsafe { libc::memfd_create(c"harvest-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)
        .map_err(|e| format!("cannot write the seccomp program: {e}"))?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let copy = high_copy(&OwnedFd::from(file))?;
    Ok(copy)
}

/// Have `command`'s child find each descriptor at its number. The sources must outlive
/// the spawn (the caller keeps them until then).
pub fn hand_over(command: &mut std::process::Command, handed: &[(OwnedFd, i32)]) {
    use std::os::unix::process::CommandExt;
    if handed.is_empty() {
        return;
    }
    let pairs: Vec<(i32, i32)> = handed
        .iter()
        .map(|(fd, to)| (fd.as_raw_fd(), *to))
        .collect();
    // SAFETY: between fork and exec only dup2(2) runs, which is async-signal-safe; the
    // sources are close-on-exec copies above every target (see `high_copy`), so no dup2
    // overwrites a source still to be copied.
    unsafe {
        command.pre_exec(move || {
            for (from, to) in &pairs {
                if libc::dup2(*from, *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A seccomp program for bwrap's `--seccomp`, handed to `command` at [`crate::SECCOMP_FD`].
/// Keep the returned descriptor until the spawn.
pub fn seccomp_for(
    command: &mut std::process::Command,
    program: &[u8],
) -> Result<Vec<(OwnedFd, i32)>, String> {
    let handed = vec![(memory_file(program)?, crate::SECCOMP_FD)];
    hand_over(command, &handed);
    Ok(handed)
}
