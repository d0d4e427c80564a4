//! `harvest forward`: the in-sandbox half of the model proxy, for a sandbox without a
//! network. It runs as the jail's command: it listens on the jail's own loopback (the only
//! interface there), starts the agent as its child with its stdio, relays every TCP
//! connection to the supervisor's proxy socket bound into the jail, passes SIGINT and
//! SIGTERM on to the agent, and exits with the agent's status.
//!
//! `harvest forward --listen 127.0.0.1:PORT --to /path/model.sock [--listen … --to …]
//! -- program args…` (one pair per relay: the model, and under an allow-list the egress
//! proxy).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let mut listens = Vec::new();
    let mut tos = Vec::new();
    let mut it = args.into_iter();
    let mut command = Vec::new();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--listen") => listens.extend(it.next().and_then(|v| v.into_string().ok())),
            Some("--to") => tos.extend(it.next().map(std::path::PathBuf::from)),
            Some("--") => {
                command = it.collect();
                break;
            }
            _ => {}
        }
    }
    if listens.is_empty() || listens.len() != tos.len() || command.is_empty() {
        eprintln!("usage: harvest forward --listen ADDR --to SOCKET [...] -- PROGRAM ARGS…");
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
    rt.block_on(run(pairs, command))
}

async fn run(
    pairs: Vec<(String, std::path::PathBuf)>,
    command: Vec<std::ffi::OsString>,
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
    let mut child = match tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .kill_on_drop(false)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harvest forward: cannot start {:?}: {e}", command[0]);
            return ExitCode::from(127);
        }
    };
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
                        let (mut a, mut b) = (tcp, unix);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
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
    match child.wait().await {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
            _ => ExitCode::from(1),
        },
        Err(_) => ExitCode::from(1),
    }
}
