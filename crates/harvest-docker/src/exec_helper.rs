//! `harvest docker-exec`: the agent's stand-in on the host. The supervisor runs it as it
//! runs bwrap for the local provider; it starts the agent in the session's container
//! through the Engine API (an exec with stdin, stdout and stderr attached) and relays
//! between its own stdio, which are the supervisor's socket pairs, and the exec's. SIGINT
//! and SIGTERM are passed to the agent (by its host pid, through a pidfd). It exits with
//! the agent's exit code once the exec's output ends.
//!
//! Everything in its environment but `DOCKER_HOST` is the agent's, passed to the exec.

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::ffi::OsString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    container: String,
    user: String,
    workdir: String,
    cmd: Vec<String>,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let (mut container, mut user, mut workdir) = (None, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--container" => container = it.next(),
            "--user" => user = it.next(),
            "--workdir" => workdir = it.next(),
            "--" => break,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let cmd: Vec<String> = it.collect();
    if cmd.is_empty() {
        return Err("no command after --".into());
    }
    Ok(Args {
        container: container.ok_or("--container is required")?,
        user: user.ok_or("--user is required")?,
        workdir: workdir.unwrap_or_else(|| "/workspace".into()),
        cmd,
    })
}

/// Entry point. Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("harvest docker-exec: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harvest docker-exec: cannot start: {e}");
            return 2;
        }
    };
    let code = match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harvest docker-exec: {e}");
            125
        }
    };
    // The stdin relay sits in a blocking read of our stdin (the supervisor keeps it open):
    // leave it behind rather than waiting for it, or the agent's end would never be ours.
    rt.shutdown_background();
    code
}

async fn run(args: Args) -> Result<i32, String> {
    let docker = crate::engine::connect().await.map_err(|e| e.to_string())?;
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k != "DOCKER_HOST")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let exec = docker
        .create_exec(
            &args.container,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                env: Some(env),
                cmd: Some(args.cmd.clone()),
                user: Some(args.user.clone()),
                working_dir: Some(args.workdir.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot start the agent in {}: {e}", args.container))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                // Output comes in chunks of up to this much; lines are the log's business.
                output_capacity: Some(1024 * 1024),
            }),
        )
        .await
        .map_err(|e| format!("cannot attach to the agent: {e}"))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err("the engine started the agent detached".into());
    };
    // Signals are passed on to the agent by its host pid (through a pidfd: never a reused
    // pid), which the engine reports once the process runs, a moment after the attach:
    // looked up on the side, so nothing waits for it.
    {
        let (docker, exec_id) = (docker.clone(), exec.id.clone());
        let container = args.container.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            // The engine's pid means a process here only if the engine shares our pid
            // namespace (not so for a remote DOCKER_HOST or a VM's engine): the process
            // must be in the container's cgroup, or nothing is signalled.
            let id = docker
                .inspect_container(
                    &container,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .ok()
                .and_then(|c| c.id)
                .unwrap_or_default();
            let ours = |pid: i32| {
                !id.is_empty()
                    && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                        .is_ok_and(|c| c.contains(&id))
            };
            let mut pidfd = None;
            for _ in 0..500 {
                let pid = docker
                    .inspect_exec(&exec_id)
                    .await
                    .ok()
                    .and_then(|i| i.pid)
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| *p > 0);
                if let Some(p) = pid {
                    // Opened before the check, so the checked pid is the one signalled.
                    pidfd = harvest_supervisor::PidFd::open(p).ok().filter(|_| ours(p));
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            if pidfd.is_none() {
                eprintln!(
                    "harvest docker-exec: the agent's pid is unknown; signals will not reach it"
                );
            }
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                };
                if let Some(fd) = pidfd.as_ref()
                    && let Err(e) = fd.signal(sig)
                {
                    eprintln!("harvest docker-exec: cannot signal the agent: {e}");
                }
            }
        });
    }
    // Our stdin → the agent's; its end closes the agent's stdin.
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let _ = input.flush().await;
                }
            }
        }
        let _ = input.shutdown().await;
    });
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                if stdout.write_all(&message).await.is_err() {
                    break;
                }
                let _ = stdout.flush().await;
            }
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                let _ = stderr.write_all(&message).await;
                let _ = stderr.flush().await;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("harvest docker-exec: the agent's output broke off: {e}");
                break;
            }
        }
    }
    // The exit code, once the engine has it (a moment after the stream ends).
    for _ in 0..250 {
        match docker.inspect_exec(&exec.id).await {
            Ok(i) if i.running != Some(true) => {
                // What the agent left running ends with it, as in a local jail.
                crate::container::end_agent_processes(&docker, &args.container, &args.user).await;
                return Ok(i.exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(1));
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => return Err(format!("cannot learn how the agent ended: {e}")),
        }
    }
    Err("the agent's output ended but it still runs".into())
}
