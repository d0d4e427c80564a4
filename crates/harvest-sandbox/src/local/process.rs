//! Agent processes of the local provider: started under a supervisor, found again through
//! its record, controlled through its socket.

use super::{LocalSandbox, bwrap, check};
use crate::{AgentControl, AgentExit, AgentInput, AgentLog, AgentProcess, Result, SandboxError};
use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use harvest_supervisor::{LaunchSpec, Record, SignalKind, Supervisor, SupervisorError};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub async fn spawn(
    sandbox: &LocalSandbox,
    cmd: &AgentCommand,
    secrets: &BTreeMap<String, Secret>,
) -> Result<AgentProcess> {
    // bwrap binds the workspace by its path, so the path is checked again at each launch,
    // not only when the session was created.
    crate::local::unchanged_folder(&sandbox.policy.workspace)?;
    let log_id = harvest_supervisor::last_log_id(&sandbox.state_dir) + 1;
    let mut args: Vec<Vec<u8>> = bwrap::bwrap_args(&sandbox.policy, &bwrap::host_system_entries())
        .into_iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    // The MCP relays' sockets, beside the model's, without a network (with one, the jail
    // shares the host's loopback, where the supervisor listens).
    let relay_place = |i: usize| {
        sandbox.policy.model_link.as_ref().map(|_| {
            (
                sandbox.state_dir.join(crate::mcp::relay_socket_file(i)),
                crate::mcp::relay_addr(i),
            )
        })
    };
    let (mcp_links, mcp_env) = crate::mcp::links(cmd, relay_place);
    let in_jail = |i: usize| format!("/harvest/run/{}", crate::mcp::relay_socket_file(i));
    for (index, link) in mcp_links.iter().enumerate() {
        if let Some(socket) = &link.socket {
            args.extend([
                b"--bind".to_vec(),
                socket.as_os_str().as_bytes().to_vec(),
                in_jail(index).into_bytes(),
            ]);
        }
    }
    args.push(b"--".to_vec());
    // The jail's first command is `harvest forward`, non-dumpable: it gives the CLI its
    // stdio sockets (handed to bwrap as descriptors 3-5, so bwrap's init, which anything
    // of the agent's uid can write through /proc, never holds them) and, without a
    // network, relays the agent's loopback to the supervisor's proxy socket.
    let mut fwd = vec![bwrap::FORWARDER, "forward", "--stdio-fds"];
    if let Some(link) = &sandbox.policy.model_link {
        fwd.extend(["--listen", bwrap::MODEL_ADDR, "--to", bwrap::MODEL_SOCKET]);
        if link.egress.is_some() {
            fwd.extend(["--listen", bwrap::EGRESS_ADDR, "--to", bwrap::EGRESS_SOCKET]);
        }
    }
    let relay_args = if sandbox.policy.model_link.is_some() {
        crate::mcp::forward_args(mcp_links.len(), in_jail)
    } else {
        Vec::new()
    };
    fwd.extend(relay_args.iter().map(String::as_str));
    fwd.push("--");
    args.extend(fwd.iter().map(|a| a.as_bytes().to_vec()));
    args.push(sandbox.agent_program.as_os_str().as_bytes().to_vec());
    args.extend(cmd.args.iter().map(|a| a.as_bytes().to_vec()));
    let mut env: Vec<(String, String)> = bwrap::base_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if sandbox
        .policy
        .model_link
        .as_ref()
        .is_some_and(|l| l.egress.is_some())
    {
        // Tools that honour the usual proxy variables get out through the egress proxy;
        // the model's address (loopback) goes direct. Anything else has no way out.
        let proxy = format!("http://{}", bwrap::EGRESS_ADDR);
        for k in [
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
        ] {
            env.push((k.to_owned(), proxy.clone()));
        }
        for k in ["NO_PROXY", "no_proxy"] {
            env.push((k.to_owned(), "127.0.0.1,localhost".to_owned()));
        }
    }
    // The user's credentials stay with the supervisor's model proxy; the agent gets a
    // token for it.
    let (agent_env, mut upstream) = harvest_proxy::split(secrets);
    upstream.allowance_usd = cmd.budget_usd;
    env.extend(
        agent_env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned())),
    );
    env.extend(mcp_env);
    // The CLI's temporary files (a running command's output among them) in the agent's
    // HOME, which this machine sees: the daemon shows the output while it runs. The CLI
    // makes the folder itself, inside the jail (made from here, a link the agent planted
    // on the way would be followed on this machine).
    env.push((
        "CLAUDE_CODE_TMPDIR".into(),
        format!("{}/{}", bwrap::AGENT_HOME, crate::task_output::IN_HOME),
    ));
    let spec = LaunchSpec {
        state_dir: sandbox.state_dir.clone(),
        log_id,
        program: sandbox.bwrap.as_os_str().as_bytes().to_vec(),
        args,
        env,
        proxy: Some(upstream),
        proxy_socket: sandbox.policy.model_link.as_ref().map(|l| l.socket.clone()),
        proxy_url: sandbox
            .policy
            .model_link
            .as_ref()
            .map(|_| format!("http://{}", bwrap::MODEL_ADDR)),
        egress: sandbox
            .policy
            .model_link
            .as_ref()
            .and_then(|l| l.egress.clone())
            .map(|(socket, allow)| harvest_supervisor::Egress { socket, allow }),
        mcp: mcp_links,
        direct: false,
        stdio_as_fds: true,
        seccomp: Some(crate::seccomp::bpf_program()),
    };
    let (program, prog_args) = &sandbox.supervisor;
    let record = match harvest_supervisor::spawn(program, prog_args, &spec).await {
        Ok(r) => r,
        Err(SupervisorError::Launch(detail)) => return Err(check::classify(&detail)),
        Err(e) => return Err(SandboxError::Spawn(e.to_string())),
    };
    Ok(attach(&sandbox.state_dir, record))
}

/// The process a supervisor record names, running or finished.
pub fn attach(state_dir: &Path, record: Record) -> AgentProcess {
    let supervisor = Supervisor::at(state_dir);
    AgentProcess {
        log_id: record.log_id,
        input: Box::new(SupervisedInput {
            supervisor: supervisor.clone(),
        }),
        control: Box::new(LocalControl {
            supervisor,
            state_dir: state_dir.to_owned(),
            record,
        }),
    }
}

/// End a jail and its supervisor, then wait (bounded) for the exit record.
pub async fn kill_record(state_dir: &Path, record: Record) {
    let control = LocalControl {
        supervisor: Supervisor::at(state_dir),
        state_dir: state_dir.to_owned(),
        record,
    };
    let _ = control.kill().await;
    for _ in 0..100 {
        if control.finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

struct SupervisedInput {
    supervisor: Supervisor,
}

#[async_trait]
impl AgentInput for SupervisedInput {
    async fn write_line(&mut self, line: &str) -> Result<()> {
        self.supervisor
            .write_line(line, None)
            .await
            .map_err(|_| SandboxError::InputClosed)
    }

    async fn deliver(&mut self, id: &str, line: &str) -> Result<()> {
        self.supervisor
            .write_line(line, Some(id))
            .await
            .map_err(|_| SandboxError::InputClosed)
    }
}

struct LocalControl {
    supervisor: Supervisor,
    state_dir: PathBuf,
    record: Record,
}

impl LocalControl {
    fn finished(&self) -> bool {
        harvest_supervisor::exit_path(&self.state_dir, self.record.log_id).exists()
            || !self.record.supervisor_alive()
    }
}

#[async_trait]
impl AgentControl for LocalControl {
    async fn interrupt(&self) -> Result<bool> {
        self.supervisor
            .signal(SignalKind::Interrupt)
            .await
            .map_err(|e| SandboxError::Spawn(e.to_string()))?;
        Ok(true)
    }

    async fn stop(&self) -> Result<()> {
        self.supervisor
            .signal(SignalKind::Terminate)
            .await
            .map_err(|e| SandboxError::Spawn(e.to_string()))
    }

    async fn kill(&self) -> Result<()> {
        if self.supervisor.kill().await.is_ok() {
            return Ok(());
        }
        // The supervisor is gone (killed itself): end the jail directly.
        self.record.kill_jail();
        Ok(())
    }

    async fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>> {
        let (dir, record) = (self.state_dir.clone(), self.record);
        let finished = Box::new(move || {
            harvest_supervisor::exit_path(&dir, record.log_id).exists()
                || !record.supervisor_alive()
        });
        let path = harvest_supervisor::log_path(&self.state_dir, self.record.log_id);
        Ok(Box::new(super::FileLog::open(&path, offset, finished)?))
    }

    async fn exit_status(&self) -> Option<AgentExit> {
        if let Some(e) = harvest_supervisor::read_exit(&self.state_dir, self.record.log_id) {
            return Some(AgentExit {
                code: e.code,
                signal: e.signal,
                lost: None,
            });
        }
        if self.record.supervisor_alive() {
            return None;
        }
        // The supervisor died without its exit record (killed): nothing reads the
        // agent's output any more, so what is left of the jail is ended too.
        self.record.kill_jail();
        Some(AgentExit {
            code: None,
            signal: None,
            lost: Some(
                "its supervisor died without recording the agent's end (killed?), so the turn \
                 under way was lost"
                    .into(),
            ),
        })
    }

    async fn diagnostics(&self) -> String {
        stderr_tail(&harvest_supervisor::stderr_path(
            &self.state_dir,
            self.record.log_id,
        ))
    }

    async fn compact(&self, committed: u64) -> Result<()> {
        let path = harvest_supervisor::log_path(&self.state_dir, self.record.log_id);
        tokio::task::spawn_blocking(move || super::log::punch_hole(&path, committed))
            .await
            .map_err(|e| SandboxError::Spawn(e.to_string()))?
    }
}

fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
    if tail.is_empty() {
        "nothing on stderr".to_owned()
    } else {
        format!("stderr: {tail}")
    }
}

/// Read a file as the agent sees it, from inside a one-shot jail of the same shape: a
/// symlink resolves inside the jail, so it cannot lead to a host file, and a FIFO or a
/// device that blocks is ended by the timeout instead of blocking the caller.
pub async fn read_confined(
    bwrap_bin: &Path,
    policy: &bwrap::JailPolicy,
    path: &Path,
    limit: u64,
) -> Result<Vec<u8>> {
    if !path.is_absolute() {
        return Err(SandboxError::Spawn(format!(
            "{} is not an absolute path inside the sandbox",
            path.display()
        )));
    }
    let mut read_only = policy.clone();
    read_only.network = false;
    read_only.model_link = None;
    let mut command = tokio::process::Command::new(bwrap_bin);
    let _seccomp = confine(&mut command)?;
    let out = command
        .args(bwrap::bwrap_args(&read_only, &bwrap::host_system_entries()))
        // This one may die with us: it is a read, not an agent.
        .arg("--die-with-parent")
        .arg("--")
        .arg("/usr/bin/head")
        .arg("-c")
        .arg(limit.to_string())
        .arg("--")
        .arg(path)
        .env_clear()
        .envs(bwrap::base_env())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), out).await {
        Ok(Ok(o)) if o.status.success() => Ok(o.stdout),
        Ok(Ok(o)) => Err(SandboxError::Spawn(format!(
            "cannot read {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Ok(Err(source)) => Err(SandboxError::Io {
            path: bwrap_bin.to_owned(),
            source,
        }),
        Err(_) => Err(SandboxError::Spawn(format!(
            "reading {} did not finish (a FIFO or device?)",
            path.display()
        ))),
    }
}

/// The jail's seccomp program handed to a one-shot bwrap (its arguments name the
/// descriptor, as the agent's do): what runs there is the agent's too (its git config).
fn confine(command: &mut tokio::process::Command) -> Result<Vec<(std::os::fd::OwnedFd, i32)>> {
    harvest_supervisor::fds::seccomp_for(command.as_std_mut(), &crate::seccomp::bpf_program())
        .map_err(SandboxError::Spawn)
}

/// A one-shot command in a jail of the session's shape (its workspace and HOME, the
/// system folders, no network), that dies with its caller and is bounded in time and
/// output.
pub async fn exec_confined(
    bwrap_bin: &Path,
    policy: &bwrap::JailPolicy,
    argv: &[String],
    limits: crate::ExecLimits,
) -> Result<crate::ExecOutput> {
    use tokio::io::AsyncReadExt;
    let Some((program, args)) = argv.split_first() else {
        return Err(SandboxError::Spawn("an empty command".into()));
    };
    let mut jail = policy.clone();
    jail.network = limits.network && policy.network;
    jail.model_link = None;
    let mut command = tokio::process::Command::new(bwrap_bin);
    let _seccomp = confine(&mut command)?;
    let mut child = command
        .args(bwrap::bwrap_args(&jail, &bwrap::host_system_entries()))
        .arg("--die-with-parent")
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .envs(bwrap::base_env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SandboxError::Io {
            path: bwrap_bin.to_owned(),
            source,
        })?;
    let limit = limits.output_bytes as u64;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        // Past the limit the rest is read and dropped, so the command is never stuck on
        // a full pipe.
        let read_out = async {
            if let Some(mut s) = stdout {
                let mut buf = vec![0u8; 16 * 1024];
                let mut said = 0;
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if (out.len() as u64) <= limit {
                        out.extend_from_slice(&buf[..n]);
                    }
                    // Whole lines as they come, for a caller that streams them.
                    while let Some(nl) = out[said..].iter().position(|b| *b == b'\n') {
                        limits
                            .lines
                            .say(String::from_utf8_lossy(&out[said..said + nl]).trim_end());
                        said += nl + 1;
                    }
                }
            }
        };
        let read_err = async {
            if let Some(mut s) = stderr {
                let _ = (&mut s).take(limit + 1).read_to_end(&mut err).await;
                let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
            }
        };
        tokio::join!(read_out, read_err);
        child.wait().await
    };
    let status = match tokio::time::timeout(limits.timeout, run).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(SandboxError::Io {
                path: bwrap_bin.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(SandboxError::Spawn(format!(
                "{program} did not finish within {:?}",
                limits.timeout
            )));
        }
    };
    let truncated = out.len() as u64 > limit || err.len() as u64 > limit;
    out.truncate(limits.output_bytes);
    err.truncate(limits.output_bytes);
    Ok(crate::ExecOutput {
        code: status.code(),
        stdout: out,
        stderr: err,
        truncated,
    })
}

/// `cp -a from/. to/` inside a jail that sees only the two trees (see
/// [`bwrap::copy_args`]).
pub async fn copy_confined(bwrap_bin: &Path, from: &Path, to: &Path) -> Result<()> {
    let out = tokio::process::Command::new(bwrap_bin)
        .args(bwrap::copy_args(from, to, &bwrap::host_system_entries()))
        .env_clear()
        .envs(bwrap::base_env())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(600), out).await {
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => Err(SandboxError::Spawn(format!(
            "cannot copy {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Ok(Err(source)) => Err(SandboxError::Io {
            path: bwrap_bin.to_owned(),
            source,
        }),
        Err(_) => Err(SandboxError::Spawn(format!(
            "copying {} took over 10 minutes and was stopped",
            from.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn bwrap() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("bwrap"))
            .find(|p| p.is_file())
    }

    /// The attack from the field: while the host copies a tree the agent controls, the
    /// agent swaps a folder and a link to the user's `~/.ssh` back and forth
    /// (rename-exchange). A copy that follows the link at the wrong moment takes the key.
    /// Inside the copy's jail the link leads nowhere.
    #[tokio::test]
    async fn a_copy_racing_a_folder_link_swap_never_takes_host_files() {
        let Some(bwrap) = bwrap() else {
            panic!("bubblewrap is needed for this test (tests/setup.sh installs it)");
        };
        let dir = tempfile::tempdir().unwrap();
        let secret_dir = dir.path().join("host-ssh");
        std::fs::create_dir_all(&secret_dir).unwrap();
        std::fs::write(secret_dir.join("id_rsa"), "HOST-PRIVATE-KEY").unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        for i in 0..200 {
            std::fs::write(src.join("d").join(format!("f{i}")), "x").unwrap();
        }
        std::os::unix::fs::symlink(&secret_dir, src.join("l")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, src) = (stop.clone(), src.clone());
            std::thread::spawn(move || {
                let a = std::ffi::CString::new(src.join("d").as_os_str().as_bytes()).unwrap();
                let b = std::ffi::CString::new(src.join("l").as_os_str().as_bytes()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: renameat2(2) with two valid NUL-terminated paths.
                    unsafe {
                        libc::syscall(
                            libc::SYS_renameat2,
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        );
                    }
                }
            })
        };
        for round in 0..60 {
            let dst = dir.path().join(format!("dst{round}"));
            std::fs::create_dir_all(&dst).unwrap();
            // A copy may fail midway (a file vanished under it); it must never leak.
            let _ = copy_confined(&bwrap, &src, &dst).await;
            let leaked = walk(&dst)
                .into_iter()
                .any(|p| std::fs::read_to_string(&p).is_ok_and(|t| t.contains("HOST-PRIVATE-KEY")));
            assert!(
                !leaked,
                "round {round}: the host key was copied into the fork"
            );
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
    }

    #[tokio::test]
    async fn a_one_shot_command_runs_in_the_workspace_bounded_and_confined() {
        let Some(bwrap) = bwrap() else {
            panic!("bubblewrap is needed for this test (tests/setup.sh installs it)");
        };
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(ws.join("f.txt"), "in the workspace").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "HOST-ONLY").unwrap();
        let policy = bwrap::JailPolicy {
            workspace: ws.clone(),
            workspace_in_jail: ws.clone(),
            home,
            agent_binary: PathBuf::from("/bin/true"),
            hidden: vec![],
            network: true,
            harvest: PathBuf::from("/bin/true"),
            model_link: None,
            home_binds: vec![],
            identity: None,
        };
        let run = |argv: &[&str], limits| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let (bwrap, policy) = (bwrap.clone(), policy.clone());
            async move { exec_confined(&bwrap, &policy, &argv, limits).await.unwrap() }
        };
        let out = run(&["/bin/cat", "f.txt"], crate::ExecLimits::default()).await;
        assert_eq!(
            (out.code, out.stdout.as_slice()),
            (Some(0), &b"in the workspace"[..])
        );
        let outside = dir.path().join("outside.txt");
        let out = run(
            &["/bin/cat", outside.to_str().unwrap()],
            crate::ExecLimits::default(),
        )
        .await;
        assert_ne!(out.code, Some(0), "the host file was readable");
        let head = run(
            &["/bin/sh", "-c", "head -c 5000 /dev/zero"],
            crate::ExecLimits {
                output_bytes: 1000,
                timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        )
        .await;
        assert!(
            head.truncated && head.stdout.len() == 1000,
            "output is bounded"
        );
        // `yes` never ends: the time limit does.
        let timed_out = exec_confined(
            &bwrap,
            &policy,
            &["/usr/bin/yes".to_string()],
            crate::ExecLimits {
                output_bytes: 1000,
                timeout: std::time::Duration::from_millis(500),
                ..Default::default()
            },
        )
        .await;
        assert!(
            timed_out.is_err(),
            "an endless command must hit the time limit"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => out.extend(walk(&p)),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
        out
    }
}
