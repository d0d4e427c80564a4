//! One command run once in a session's container (reads of agent files, `git diff`): as
//! the agent's user, bounded in output and in time (coreutils `timeout` inside, so a
//! command that never ends is ended there too).

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use harvest_sandbox::{ExecLimits, ExecOutput, SandboxError};

pub async fn run(
    docker: &Docker,
    container: &str,
    user: &str,
    argv: &[String],
    limits: ExecLimits,
) -> Result<ExecOutput, SandboxError> {
    let secs = limits.timeout.as_secs().max(1).to_string();
    let mut cmd = vec!["timeout".to_owned(), "-s".into(), "KILL".into(), secs];
    cmd.extend(argv.iter().cloned());
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd),
                user: Some(user.to_owned()),
                working_dir: Some(crate::WORKSPACE.to_owned()),
                env: Some(vec![
                    format!("HOME={}", crate::HOME),
                    "LANG=C.UTF-8".into(),
                    "PATH=/usr/local/bin:/usr/bin:/bin".into(),
                ]),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| crate::engine::failed("cannot run a command in the sandbox", e))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(256 * 1024),
            }),
        )
        .await
        .map_err(|e| crate::engine::failed("cannot run a command in the sandbox", e))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(SandboxError::Spawn("the command started detached".into()));
    };
    let (mut stdout, mut stderr, mut truncated) = (Vec::new(), Vec::new(), false);
    // How far stdout has been told line by line (a setup's output streams).
    let mut said = 0;
    let exec_id = exec.id.clone();
    let collect = async {
        // The stream ends when every holder of the command's output has closed it, and a
        // process of the agent's could hold it open: the command's own end (watched)
        // ends the read too, a moment later.
        let mut watch = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut ended: Option<tokio::time::Instant> = None;
        loop {
            let chunk = tokio::select! {
                c = output.next() => c,
                _ = watch.tick() => {
                    match ended {
                        Some(at) if at.elapsed() >= std::time::Duration::from_millis(200) => break,
                        Some(_) => {}
                        None => {
                            if docker
                                .inspect_exec(&exec_id)
                                .await
                                .is_ok_and(|i| i.running == Some(false) && i.exit_code.is_some())
                            {
                                ended = Some(tokio::time::Instant::now());
                            }
                        }
                    }
                    continue;
                }
            };
            let Some(chunk) = chunk else { break };
            let (buf, bytes) = match chunk {
                Ok(bollard::container::LogOutput::StdOut { message }) => (&mut stdout, message),
                Ok(bollard::container::LogOutput::StdErr { message }) => (&mut stderr, message),
                Ok(_) => continue,
                Err(_) => break,
            };
            let room = limits.output_bytes.saturating_sub(buf.len());
            if bytes.len() > room {
                truncated = true;
            }
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            while let Some(nl) = stdout[said..].iter().position(|b| *b == b'\n') {
                limits
                    .lines
                    .say(String::from_utf8_lossy(&stdout[said..said + nl]).trim_end());
                said += nl + 1;
            }
        }
    };
    // The inner `timeout` ends the command; this bound is for an engine that hangs.
    let _ = tokio::time::timeout(limits.timeout + std::time::Duration::from_secs(5), collect).await;
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .ok()
        .and_then(|i| i.exit_code)
        .and_then(|c| i32::try_from(c).ok());
    Ok(ExecOutput {
        code,
        stdout,
        stderr,
        truncated,
    })
}
