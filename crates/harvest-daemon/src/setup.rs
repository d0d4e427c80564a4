//! The repository's setup: `.harvest/setup` in the workspace, run once in the sandbox
//! when a session is made, before its first turn (installing dependencies should not be
//! every session's first turn again). Its output streams, line by line, to the client
//! waiting on `session/create` and is stored as the session's first events; a failure
//! says so with its exit code and the session stays usable; `--no-setup` skips it. It
//! runs as the agent, in the agent's sandbox, with the session's network.

use harvest_protocol::EventBody;
use harvest_sandbox::{ExecLimits, Progress, Sandbox};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const SCRIPT: &str = ".harvest/setup";
/// How long a setup may take.
const TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of its output kept as events (the rest is counted, not stored).
const MAX_LINES: usize = 500;
/// What the wrapper exits with when there is no script: no setup, nothing to say.
const NO_SCRIPT: i32 = 213;

/// Run the setup if the workspace has one; the events that tell how it went.
pub async fn run(sandbox: &dyn Sandbox, progress: &Progress) -> Vec<EventBody> {
    // A workspace on this machine is looked at here: no script, no exec in the sandbox
    // (which costs a container's exec a few hundred milliseconds of every start).
    if let Some(host) = sandbox.host_workspace()
        && std::fs::symlink_metadata(host.join(SCRIPT)).is_err()
    {
        return Vec::new();
    }
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
    let wrapper = format!(
        "test -f {SCRIPT} || exit {NO_SCRIPT}; exec 2>&1; \
         if [ -x {SCRIPT} ]; then exec ./{SCRIPT}; else exec sh {SCRIPT}; fi"
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
                    "the repository's setup ({SCRIPT}) did not finish: {e}; the session is usable"
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
            message: format!("the repository's setup ({SCRIPT}) finished in {took:.1} s"),
        },
        other => EventBody::Error {
            message: format!(
                "the repository's setup ({SCRIPT}) failed ({}) after {took:.1} s; the session is usable, its output is above",
                other.map_or("killed".to_owned(), |c| format!("exit code {c}"))
            ),
        },
    });
    events
}
