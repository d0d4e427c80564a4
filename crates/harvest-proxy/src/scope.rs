//! Landlock scoping for the agent: what `harvest forward` puts the CLI (and so every tool
//! it starts) under before exec. With `--network open` a local jail shares the host's
//! network namespace, and with it the host's *abstract* Unix sockets (X11's, D-Bus's, a
//! desktop's agents), which no mount hides and no seccomp filter can tell apart (the
//! address is behind a pointer). Landlock's scope (ABI 6, Linux 6.12) refuses connecting
//! to an abstract socket made outside the agent's domain, and signalling a process
//! outside it. A kernel without it is said in the agent's stderr file and the daemon log;
//! the docs say what then stays open.

use std::os::fd::{FromRawFd, OwnedFd};

const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
const SYS_LANDLOCK_RESTRICT_SELF: libc::c_long = 446;
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
const SCOPE_SIGNAL: u64 = 2;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// A ruleset that scopes abstract sockets and signals, when the kernel has scoping.
pub fn ruleset() -> Result<OwnedFd, String> {
    // SAFETY: the version query takes no attribute; it returns the ABI or -1.
    let abi = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi < 6 {
        return Err(format!(
            "this kernel's Landlock (ABI {abi}) cannot scope abstract Unix sockets (needs ABI 6, Linux 6.12)"
        ));
    }
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL,
    };
    // SAFETY: `attr` is a valid, initialised ruleset attribute of the size given.
    let fd = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(format!(
            "landlock_create_ruleset: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Put the calling (single-threaded, just forked) process under `ruleset`. Only
/// async-signal-safe calls: it runs between fork and exec.
pub fn restrict_self(ruleset: i32) -> std::io::Result<()> {
    // SAFETY: prctl and landlock_restrict_self take plain integers.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0u32) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
