//! The repository's setup: `.harvest/setup` in the workspace (or `setup.script`), run
//! once in the sandbox when a session is made, before its first turn (installing
//! dependencies should not be every session's first turn again). Its output streams, line
//! by line, to the client waiting on `session/create` and is stored as the session's
//! first events; a failure says so with its exit code and the session stays usable;
//! `--no-setup` skips it. It runs as the agent, in the agent's sandbox, with the
//! session's network, before the agent has run there.
//!
//! Where the sandbox keeps setups (containers), a successful one's state is kept by the
//! script and the lockfiles, and the next session of the repository starts from it
//! instead of running it again (see `Sandbox::restore_setup`).

use harvest_protocol::EventBody;
use harvest_sandbox::{ExecLimits, Progress, Sandbox, SetupPlan};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a setup may take.
const TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of its output kept as events (the rest is counted, not stored).
const MAX_LINES: usize = 500;
/// What the wrapper exits with when there is no script: no setup, nothing to say.
const NO_SCRIPT: i32 = 213;

/// Run the setup if the workspace has one; the events that tell how it went.
pub async fn run(sandbox: &dyn Sandbox, plan: &SetupPlan, progress: &Progress) -> Vec<EventBody> {
    let script = plan.script.as_str();
    // A workspace on this machine is looked at here: no script, no exec in the sandbox
    // (which costs a container's exec a few hundred milliseconds of every start).
    if let Some(host) = sandbox.host_workspace()
        && std::fs::symlink_metadata(host.join(script)).is_err()
    {
        return Vec::new();
    }
    let keeps = sandbox.keeps_setup();
    if keeps {
        match sandbox.restore_setup().await {
            Ok(Some(what)) => {
                progress.say(&what);
                return vec![EventBody::Sandbox { message: what }];
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a kept setup could not be put in place; running it");
            }
        }
    }
    let before = if keeps {
        untracked(sandbox).await
    } else {
        Vec::new()
    };
    let kept: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines = {
        let (kept, progress) = (kept.clone(), progress.clone());
        Progress::new(move |line| {
            let line = harvest_termsafe::text(line, harvest_termsafe::Sgr::Drop).into_owned();
            progress.say(&format!("setup: {line}"));
            kept.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        })
    };
    // The script's path is plain (the config checks it): no quoting needed.
    let wrapper = format!(
        "test -f {script} || exit {NO_SCRIPT}; exec 2>&1; \
         if [ -x {script} ]; then exec ./{script}; else exec sh {script}; fi"
    );
    let started = Instant::now();
    let result = sandbox
        .exec(
            &["/bin/sh".into(), "-c".into(), wrapper],
            ExecLimits {
                output_bytes: 1 << 20,
                timeout: TIMEOUT,
                network: true,
                lines,
            },
        )
        .await;
    let took = started.elapsed().as_secs_f64();
    let mut kept = std::mem::take(&mut *kept.lock().unwrap_or_else(PoisonError::into_inner));
    let (code, rest) = match result {
        Ok(out) if out.code == Some(NO_SCRIPT) => return Vec::new(),
        Ok(out) => (out.code, String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) => {
            return vec![EventBody::Error {
                message: format!(
                    "the repository's setup ({script}) did not finish: {e}; the session is usable"
                ),
            }];
        }
    };
    // A provider that cannot stream gives the output at the end.
    if kept.is_empty() {
        kept = rest
            .lines()
            .map(|l| harvest_termsafe::text(l, harvest_termsafe::Sgr::Drop).into_owned())
            .collect();
    }
    let total = kept.len();
    let mut events: Vec<EventBody> = kept
        .into_iter()
        .take(MAX_LINES)
        .map(|line| EventBody::Sandbox {
            message: format!("setup: {line}"),
        })
        .collect();
    if total > MAX_LINES {
        events.push(EventBody::Sandbox {
            message: format!("setup: … {} more lines not kept", total - MAX_LINES),
        });
    }
    events.push(match code {
        Some(0) => EventBody::Sandbox {
            message: format!("the repository's setup ({script}) finished in {took:.1} s"),
        },
        other => EventBody::Error {
            message: format!(
                "the repository's setup ({script}) failed ({}) after {took:.1} s; the session is usable, its output is above",
                other.map_or("killed".to_owned(), |c| format!("exit code {c}"))
            ),
        },
    });
    if keeps && code == Some(0) {
        let after = untracked(sandbox).await;
        let made: Vec<String> = after.into_iter().filter(|p| !before.contains(p)).collect();
        match sandbox.save_setup(&made).await {
            Ok(Some(what)) => events.push(EventBody::Sandbox { message: what }),
            Ok(None) => {}
            Err(e) => events.push(EventBody::Error {
                message: format!("the setup's result was not kept for the next session: {e}"),
            }),
        }
    }
    events
}

/// The workspace's paths git does not track (a folder wholly untracked as one entry), or
/// without git its top-level entries: what a setup made is what is new in this list.
async fn untracked(sandbox: &dyn Sandbox) -> Vec<String> {
    let list = "if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
                git -c core.quotePath=false ls-files --others --directory; \
                else ls -A; fi";
    match sandbox
        .exec(
            &["/bin/sh".into(), "-c".into(), list.into()],
            ExecLimits {
                output_bytes: 4 << 20,
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
    {
        Ok(out) if out.code == Some(0) && !out.truncated => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches('/').to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}
