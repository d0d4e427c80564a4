//! `harvest forward`: the in-sandbox half of the model proxy, for a sandbox without a
//! network. It runs as the jail's command: it listens on the jail's own loopback (the only
//! interface there), starts the agent as its child with its stdio, relays every TCP
//! connection to the supervisor's proxy socket bound into the jail, passes SIGINT and
//! SIGTERM on to the agent, and exits with the agent's status.
//!
//! `harvest forward --listen 127.0.0.1:PORT --to /path/model.sock [--listen … --to …]
//! [--stdio-sockets] -- program args…` (one pair per relay: the model, and under an
//! allow-list the egress proxy).
//!
//! `--stdio-sockets`, for a sandbox whose engine hands the agent pipes (a container's
//! exec): the agent gets socket pairs for its stdin, stdout and stderr, which cannot be
//! reopened through `/proc/<pid>/fd` as pipes can, and this process relays between them
//! and its own pipes after making itself non-dumpable, so that its `/proc` entries are
//! closed to the agent's uid too. Without it a tool could write forged lines to the CLI's
//! stdout or a forged prompt to its stdin.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    // Before anything else: this process is the CLI's parent and (with `--stdio-fds`)
    // held its stdio, so nothing of the agent's uid may read or write its memory.
    // SAFETY: prctl(2) with PR_SET_DUMPABLE only changes this process's dumpable flag.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        eprintln!(
            "harvest forward: cannot make itself non-dumpable: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(2);
    }
    let mut listens = Vec::new();
    let mut tos = Vec::new();
    let mut it = args.into_iter();
    let mut command = Vec::new();
    let mut stdio = Stdio::Inherit;
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--stdio-sockets") => stdio = Stdio::Sockets,
            Some("--stdio-fds") => stdio = Stdio::Fds,
            Some("--listen") => listens.extend(it.next().and_then(|v| v.into_string().ok())),
            Some("--to") => tos.extend(it.next().map(std::path::PathBuf::from)),
            Some("--") => {
                command = it.collect();
                break;
            }
            _ => {}
        }
    }
    if listens.len() != tos.len() || command.is_empty() {
        eprintln!(
            "usage: harvest forward [--stdio-sockets|--stdio-fds] [--listen ADDR --to SOCKET]… -- PROGRAM ARGS…"
        );
        return ExitCode::from(2);
    }
    let pairs: Vec<(String, std::path::PathBuf)> = listens.into_iter().zip(tos).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harvest forward: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(run(pairs, command, stdio))
}

/// Where the agent's stdio come from.
#[derive(Clone, Copy, PartialEq)]
enum Stdio {
    /// Ours (a test, or a caller that already gives sockets).
    Inherit,
    /// Socket pairs of our own, relayed to our pipes (a container's exec).
    Sockets,
    /// Descriptors 3, 4 and 5, handed over by the supervisor through bwrap, whose own
    /// stdio are not the agent's (see `harvest_supervisor::LaunchSpec::stdio_as_fds`).
    Fds,
}

async fn run(
    pairs: Vec<(String, std::path::PathBuf)>,
    command: Vec<std::ffi::OsString>,
    stdio: Stdio,
) -> ExitCode {
    let mut listeners = Vec::new();
    for (listen, to) in pairs {
        match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => listeners.push((l, to)),
            Err(e) => {
                eprintln!("harvest forward: cannot listen on {listen}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]).kill_on_drop(false);
    // The agent and its tools reach no abstract Unix socket of the host and signal
    // nothing outside their own domain (see `scope.rs`).
    let scope = match crate::scope::ruleset() {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!(
                "harvest forward: {e}; the agent can reach the abstract Unix sockets of its network namespace"
            );
            None
        }
    };
    if let Some(fd) = &scope {
        let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
        // SAFETY: the closure makes only async-signal-safe calls (prctl, a syscall).
        unsafe {
            cmd.pre_exec(move || crate::scope::restrict_self(raw));
        }
    }
    let mut relayed = None;
    if stdio == Stdio::Fds {
        handed_stdio(&mut cmd);
    }
    if stdio == Stdio::Sockets {
        match socket_stdio(&mut cmd) {
            Ok(done) => relayed = Some(done),
            Err(e) => {
                eprintln!("harvest forward: cannot give the agent socket stdio: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harvest forward: cannot start {:?}: {e}", command[0]);
            return ExitCode::from(127);
        }
    };
    // The command keeps what it was given for the child's stdio: dropped now, so that
    // the agent's end of each socket is the agent's alone and its exit is seen as EOF.
    drop(cmd);
    drop(scope);
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    for (listener, to) in listeners {
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let to = to.clone();
                tokio::spawn(async move {
                    if let Ok(unix) = tokio::net::UnixStream::connect(&to).await {
                        relay(tcp, unix).await;
                    }
                });
            }
        });
    }
    // The supervisor signals the jail's first process, which is us: pass it on.
    if let Some(pid) = pid {
        use tokio::signal::unix::{SignalKind, signal};
        for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
            if let Ok(mut s) = signal(kind) {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        // SAFETY: kill(2) on our own child's pid (it cannot have been
                        // reaped and reused: we reap it below, after which we exit).
                        unsafe {
                            libc::kill(pid, kind.as_raw_value());
                        }
                    }
                });
            }
        }
    }
    let status = child.wait().await;
    // The agent's last lines (its `result`) are still in the relay: out before we go.
    if let Some(done) = relayed {
        let _ = tokio::task::spawn_blocking(move || {
            done.recv_timeout(std::time::Duration::from_secs(5))
        })
        .await;
    }
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
            _ => ExitCode::from(1),
        },
        Err(_) => ExitCode::from(1),
    }
}

/// Copy both ways, each on its own: an answer the far side sent before it stopped reading
/// (a refusal given before the request's body was read) still reaches the client, where
/// one copy failing would otherwise drop the other.
async fn relay(tcp: tokio::net::TcpStream, unix: tokio::net::UnixStream) {
    use tokio::io::AsyncWriteExt;
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut unix_read, mut unix_write) = unix.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut tcp_read, &mut unix_write).await;
        let _ = unix_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut unix_read, &mut tcp_write).await;
        let _ = tcp_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Descriptors 3-5 become the child's stdin, stdout and stderr; our own copies close
/// with the spawn (`Command` drops them), so this process holds none of them after.
fn handed_stdio(cmd: &mut tokio::process::Command) {
    use std::os::fd::FromRawFd;
    let [stdin, stdout, stderr] = [3, 4, 5].map(|fd| {
        // SAFETY: the supervisor opened exactly these for us and nothing else in this
        // process uses them; each is owned once, here. Close-on-exec, so the child has
        // them only as its 0, 1 and 2.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }
    });
    cmd.stdin(std::process::Stdio::from(stdin))
        .stdout(std::process::Stdio::from(stdout))
        .stderr(std::process::Stdio::from(stderr));
}

/// Give the child socket pairs for its stdio and relay them to ours (threads: plain
/// blocking copies), after closing our own `/proc` entries to the agent's uid. The
/// receiver hears when the child's stdout has been relayed to its end.
fn socket_stdio(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<std::sync::mpsc::Receiver<()>> {
    use std::os::unix::net::UnixStream;
    let (stdin_ours, stdin_theirs) = UnixStream::pair()?;
    let (stdout_ours, stdout_theirs) = UnixStream::pair()?;
    let (stderr_ours, stderr_theirs) = UnixStream::pair()?;
    let _ = stdin_theirs.shutdown(std::net::Shutdown::Write);
    let _ = stdout_theirs.shutdown(std::net::Shutdown::Read);
    let _ = stderr_theirs.shutdown(std::net::Shutdown::Read);
    cmd.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
        stdin_theirs,
    )))
    .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
        stdout_theirs,
    )))
    .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(
        stderr_theirs,
    )));
    std::thread::spawn(move || {
        let mut to = stdin_ours;
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut from = stdout_ours;
        let mut out = std::io::stdout().lock();
        let mut buf = vec![0u8; 256 * 1024];
        use std::io::{Read, Write};
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = done_tx.send(());
    });
    std::thread::spawn(move || {
        let mut from = stderr_ours;
        let _ = std::io::copy(&mut from, &mut std::io::stderr().lock());
    });
    Ok(done_rx)
}
