//! Signals through pidfds: a pidfd names one process for its whole life, so a signal sent
//! through it can never reach an unrelated process that got the same pid later.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    pub fn open(pid: i32) -> std::io::Result<PidFd> {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// ESRCH (the process is gone) is not an error here: there was nothing to signal.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal(2) on a descriptor we own, with no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Signal the children of `parent` that are still its children once we hold a pidfd on
/// them (a pid read from /proc could be reused between the read and the open; the check
/// after the open closes that window).
pub fn signal_children(parent: &PidFd, sig: i32) {
    for pid in crate::proc::children(parent.pid()) {
        let Ok(child) = PidFd::open(pid) else {
            continue;
        };
        if crate::proc::parent(pid) != Some(parent.pid()) {
            continue;
        }
        if let Err(e) = child.signal(sig) {
            tracing::warn!(pid, sig, error = %e, "cannot signal the agent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_reach_the_process_they_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = PidFd::open(child.id() as i32).unwrap();
        fd.signal(libc::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: the pidfd still names that process and signalling it is a no-op.
        fd.signal(libc::SIGKILL).unwrap();
    }
}
