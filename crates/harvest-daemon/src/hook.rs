//! The notification hook: a user's shell command, run when a session finishes a turn,
//! fails or needs input, with the event (and the session's name) as JSON on stdin. It is
//! a subscriber of the session's committed events like any client, so it runs beside the
//! session, never in its way, and is stopped after a time limit. It gets a small, fixed
//! environment: never the daemon's own (which may hold a client's variables).

use crate::context::Daemon;
use harvest_protocol::SessionId;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const TIME_LIMIT: Duration = Duration::from_secs(30);

/// Variables a hook may need to reach the user (a desktop notification, a chat webhook
/// through a proxy); nothing else of the daemon's environment is passed on.
const HOOK_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Run the hook for each notable event the session commits from now on.
pub fn subscribe(
    hook: String,
    daemon: Arc<Daemon>,
    session: SessionId,
    mut events: tokio::sync::broadcast::Receiver<Arc<harvest_store::StoredEvent>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ev) if notable(&ev.json) => {
                    run(
                        hook.clone(),
                        daemon.clone(),
                        session.clone(),
                        ev.json.clone(),
                    );
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(%session, missed = n, "notification hook fell behind; some events were not notified");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Events a user wants to hear about: a turn ended, the session failed or needs input.
fn notable(json: &str) -> bool {
    json.contains("\"type\":\"turn_result\"")
        || json.contains("\"state\":\"failed\"")
        || json.contains("\"state\":\"needs_input\"")
}

fn run(hook: String, daemon: Arc<Daemon>, session: SessionId, event_json: String) {
    tokio::spawn(async move {
        let name = {
            let (store, id) = (daemon.store.clone(), session.clone());
            tokio::task::spawn_blocking(move || store.session(&id))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .map(|row| row.info.name)
                .unwrap_or_default()
        };
        // The stored event plus the session's name, as one object.
        let payload = match serde_json::from_str::<serde_json::Value>(&event_json) {
            Ok(serde_json::Value::Object(mut o)) => {
                o.insert("name".into(), serde_json::Value::String(name));
                serde_json::Value::Object(o).to_string()
            }
            _ => event_json,
        };
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&hook)
            .env_clear()
            .envs(
                HOOK_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .env("HARVEST_SESSION", session.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%session, error = %e, "notification hook could not start");
                return;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(payload.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        match tokio::time::timeout(TIME_LIMIT, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {}
            Ok(Ok(out)) => tracing::warn!(
                %session,
                status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "notification hook failed"
            ),
            Ok(Err(e)) => tracing::warn!(%session, error = %e, "notification hook failed"),
            Err(_) => {
                tracing::warn!(%session, "notification hook ran over {TIME_LIMIT:?} and was stopped")
            }
        }
    });
}
