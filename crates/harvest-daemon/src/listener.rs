//! The daemon's front door: a private socket folder, one daemon per socket (a lock file),
//! stale-socket recovery, and an accept loop that checks each peer's uid.

use crate::context::Daemon;
use crate::{connection, session};
use harvest_config::{Config, Paths};
use harvest_store::Store;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "cannot create the private socket folder {path}: {source}; check that you own its \
         parent, or set HARVEST_SOCKET to a path in a folder you own"
    )]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the socket folder {path} belongs to uid {owner} or is open to others (mode {mode:o}); \
         remove it or set HARVEST_SOCKET elsewhere"
    )]
    UnsafeSocketDir {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("a harvest daemon is already running for {socket} (`harvest daemon status` shows it)")]
    AlreadyRunning { socket: PathBuf },
    #[error(
        "another harvest daemon already uses the store in {data_dir} ({holder}); two daemons \
         on one store would number events twice. Use that daemon (set HARVEST_SOCKET or \
         XDG_RUNTIME_DIR to its socket), or stop it with `harvest daemon stop` there"
    )]
    StoreInUse { data_dir: PathBuf, holder: String },
    #[error("cannot listen on {socket}: {source}")]
    Bind {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] harvest_store::StoreError),
}

/// Make every file and folder this process creates private to the user (0600/0700): the
/// store, logs and session folders. Call it first, before the log file is opened.
pub fn private_files() {
    // SAFETY: umask(2) only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
}

/// Run the daemon until `daemon/stop` or a termination signal.
pub async fn serve(paths: Paths, config: Config) -> Result<(), ListenError> {
    private_files();
    private_dir(paths.socket_dir())?;
    let _lock = lock(&paths)?;
    for dir in [&paths.data_dir, &paths.state_dir, &paths.sessions_dir()] {
        make_dir(dir)?;
    }
    // One daemon per store, whatever socket it listens on (an SSH login without
    // XDG_RUNTIME_DIR falls back to another socket folder than the desktop's).
    let _store_lock = lock_store(&paths)?;
    let store = Arc::new(Store::open(&paths.store())?);
    let providers = crate::providers::build(&paths, &config, &store);
    let rows = store.sessions()?;
    let daemon = Arc::new(Daemon::new(paths.clone(), config, store, providers));
    let cleanup = session::restore_all(&daemon, rows);

    // We hold the lock, so a socket file left here is stale (its daemon died).
    let _ = std::fs::remove_file(&paths.socket);
    let name = paths
        .socket
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| ListenError::Bind {
            socket: paths.socket.clone(),
            source,
        })?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .map_err(|source| ListenError::Bind {
            socket: paths.socket.clone(),
            source,
        })?;
    tracing::info!(socket = %paths.socket.display(), pid = std::process::id(), "daemon listening");
    // Every session has its actor already; each re-adopts on its own task, so a daemon
    // with many sessions answers `hello` at once, and a session's calls wait in its
    // actor's queue until it is restored. Cleaning up after a dead daemon runs meanwhile.
    {
        let daemon = daemon.clone();
        tokio::spawn(async move { cleanup.run(&daemon).await });
    }

    raise_fd_limit();
    spawn_signal_handler(daemon.clone());
    spawn_checkpointer(daemon.clone());
    // SAFETY: getuid(2) cannot fail.
    let my_uid = unsafe { libc::getuid() };
    loop {
        let conn = tokio::select! {
            _ = daemon.shutdown.cancelled() => break,
            conn = listener.accept() => conn,
        };
        match conn {
            Ok(stream) if daemon.clients() >= MAX_CONNECTIONS => {
                tracing::warn!(
                    clients = daemon.clients(),
                    "too many connections; refusing one"
                );
                tokio::spawn(refuse(
                    stream,
                    "the daemon has as many connections as it takes (close idle `harvest` clients)",
                ));
            }
            Ok(stream) => {
                let creds = stream.peer_creds().ok();
                let peer = creds.as_ref().and_then(|c| c.euid());
                if peer != Some(my_uid) {
                    tracing::warn!(?peer, "refused a connection from another user");
                    continue;
                }
                // A sandbox runs with the user's uid, so the uid says nothing about it; its
                // namespaces do. A peer in another PID or mount namespace than ours is
                // refused: nothing in a jail may create sessions or read another's.
                let pid = creds.as_ref().and_then(|c| c.pid());
                if let Some(why) = pid.and_then(foreign_namespace) {
                    tracing::warn!(?pid, why, "refused a connection from inside a sandbox");
                    tokio::spawn(refuse(stream, why));
                    continue;
                }
                tokio::spawn(connection::run(daemon.clone(), stream));
            }
            // Out of descriptors and the like: log and keep serving.
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("daemon stopping");
    session::shutdown_all(&daemon).await;
    let store = daemon.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.checkpoint(true)).await;
    drop(listener);
    let _ = std::fs::remove_file(&paths.socket);
    Ok(())
}

/// Connections served at once. Each costs a descriptor and a little memory; the bound
/// keeps descriptors free for agents' logs and the store, whatever a peer opens.
const MAX_CONNECTIONS: u64 = 2048;

/// The soft descriptor limit a shell gives (often 1 024) is too few for a daemon with
/// many clients and sessions: raise it to the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max.min(1 << 20),
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &want);
        }
    }
}

/// Why a peer lives elsewhere than the daemon: its PID or mount namespace differs.
fn foreign_namespace(pid: i32) -> Option<&'static str> {
    for (ns, why) in [
        ("pid", "its PID namespace is not the daemon's"),
        ("mnt", "its mount namespace is not the daemon's"),
    ] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"));
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t != o => return Some(why),
            // A peer we cannot look at (it exited already) is not let in either.
            (Err(_), Ok(_)) => return Some("its namespaces cannot be read"),
            _ => {}
        }
    }
    None
}

async fn refuse(stream: interprocess::local_socket::tokio::Stream, why: &'static str) {
    let code = if why.starts_with("the daemon has") {
        harvest_protocol::rpc::codes::TOO_MANY_CONNECTIONS
    } else {
        harvest_protocol::rpc::codes::PEER_REFUSED
    };
    use tokio::io::AsyncWriteExt;
    let resp = harvest_protocol::rpc::Response::err(
        None,
        harvest_protocol::rpc::RpcError::new(
            code,
            if code == harvest_protocol::rpc::codes::PEER_REFUSED {
                format!(
                    "connection refused: {why}. Harvest does not take calls from inside a \
                     sandbox or container; run harvest on the host, where the daemon runs"
                )
            } else {
                format!("connection refused: {why}")
            },
        ),
    );
    let (_, mut w) = tokio::io::split(stream);
    if let Ok(mut line) = serde_json::to_string(&resp) {
        line.push('\n');
        let _ = w.write_all(line.as_bytes()).await;
    }
}

fn spawn_signal_handler(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("termination signal");
        daemon.shutdown.cancel();
    });
}

/// Checkpoint the store's WAL every second, on a blocking thread, so appends never pay
/// for it.
fn spawn_checkpointer(daemon: Arc<Daemon>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = daemon.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let store = daemon.store.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.checkpoint(false)).await {
                tracing::warn!(error = %e, "store checkpoint failed");
            }
        }
    });
}

/// Create the socket folder 0700 (with the mode, never chmod after) and refuse one that
/// another user owns or others can enter.
fn private_dir(dir: &Path) -> Result<(), ListenError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(source) => {
            return Err(ListenError::SocketDir {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let meta = std::fs::metadata(dir).map_err(|source| ListenError::SocketDir {
        path: dir.to_owned(),
        source,
    })?;
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(ListenError::UnsafeSocketDir {
            path: dir.to_owned(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), ListenError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ListenError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The store's own lock, with who holds it written inside for the next one's message.
fn lock_store(paths: &Paths) -> Result<std::fs::File, ListenError> {
    use std::io::{Read, Seek, Write};
    let path = paths.data_dir.join("harvest.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ListenError::Io {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock(2) on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(ListenError::StoreInUse {
            data_dir: paths.data_dir.clone(),
            holder: if holder.trim().is_empty() {
                "unknown pid".into()
            } else {
                holder.trim().to_owned()
            },
        });
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(
        file,
        "pid {}, socket {}",
        std::process::id(),
        paths.socket.display()
    );
    Ok(file)
}

/// Hold an exclusive flock for the daemon's life; a second daemon fails at once. The
/// kernel drops the lock when the process dies, so a crash never leaves it stale.
fn lock(paths: &Paths) -> Result<std::fs::File, ListenError> {
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ListenError::Io {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock(2) on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ListenError::AlreadyRunning {
            socket: paths.socket.clone(),
        });
    }
    Ok(file)
}
