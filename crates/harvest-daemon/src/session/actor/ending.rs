//! How a session's agent ends: it exits (on its own, stopped, cancelled the hard way, idle),
//! the session is removed, or the daemon shuts down. Each leaves a status that says why.

use super::{Actor, Ending, status};
use harvest_protocol::{EventBody, SessionState};
use harvest_sandbox::AgentExit;
use std::time::Duration;

impl Actor {
    pub(super) async fn on_exit(&mut self, exit: AgentExit) {
        // The log may still hold lines written just before the exit.
        while let Some(agent) = self.agent.as_mut() {
            match agent.log.next_chunk(Duration::from_millis(1)).await {
                Ok(chunk) if !chunk.is_empty() => self.ingest(&chunk).await,
                _ => break,
            }
        }
        let diagnostics = match self.agent.take() {
            Some(a) => {
                // Whatever the agent left running (tool commands in their own sessions keep
                // the jail's init alive after the agent itself is gone) has no one to
                // report to any more: end it.
                let _ = a.control.kill_all().await;
                a.control.diagnostics()
            }
            None => String::new(),
        };
        let was_cancelling = self.ladder.take().is_some() && self.state == SessionState::Cancelling;
        tracing::info!(%exit, "agent exited");
        let mut events = Vec::new();
        match self.ending {
            Some(Ending::Stop) => {
                events.push(status(
                    SessionState::Exited,
                    Some("stopped; send a message to resume the conversation".into()),
                ));
                self.ending = None;
            }
            Some(Ending::Idle) => {
                events.push(status(
                    SessionState::Exited,
                    Some(format!(
                        "idle for {}s: the agent was stopped; send a message to resume the conversation",
                        self.daemon.config.agent.idle_timeout_secs
                    )),
                ));
                self.ending = None;
            }
            Some(Ending::Shutdown) => {}
            None if was_cancelling => {
                events.push(EventBody::TurnResult {
                    is_error: true,
                    subtype: "cancelled".into(),
                    terminal_reason: Some("killed".into()),
                    interrupted: true,
                    result: Some("the agent did not stop on interrupt and was ended".into()),
                    cost_usd: 0.0,
                    input_tokens: 0,
                    output_tokens: 0,
                    duration_ms: 0,
                    num_turns: 0,
                });
                events.push(status(
                    SessionState::Idle,
                    Some("the next message resumes the conversation".into()),
                ));
            }
            None if exit.code == Some(0) => {
                events.push(status(SessionState::Exited, Some(format!("agent {exit}"))));
            }
            None => {
                events.push(EventBody::Error {
                    message: format!("the agent ended unexpectedly ({exit}); {diagnostics}"),
                });
                events.push(status(
                    SessionState::Failed,
                    Some(format!(
                        "agent {exit}; send a message to resume the conversation"
                    )),
                ));
            }
        }
        self.pending_turns = 0;
        self.slot = None;
        self.emit(events).await;
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }

    pub(super) async fn remove(&mut self) {
        if let Some(agent) = self.agent.take() {
            let _ = agent.control.kill_all().await;
            let _ = tokio::time::timeout(Duration::from_secs(3), agent.exited).await;
        }
        if let Some(mut sandbox) = self.sandbox.take()
            && let Err(e) = sandbox.destroy().await
        {
            tracing::warn!(error = %e, "sandbox teardown incomplete");
        }
        // Live subscribers learn the end before the history goes.
        self.emit(vec![status(SessionState::Exited, Some("removed".into()))])
            .await;
        let (store, id) = (self.daemon.store.clone(), self.id.clone());
        let _ = tokio::task::spawn_blocking(move || store.delete_session(&id)).await;
        let state_dir = self.daemon.paths.session_state_dir(self.id.as_str());
        if let Err(e) = std::fs::remove_dir_all(&state_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %state_dir.display(), error = %e, "state folder not removed");
        }
        if self.spec.owns_workspace {
            let _ = std::fs::remove_dir_all(&self.spec.workspace);
        }
        self.daemon.unregister(&self.id);
        tracing::info!("session removed");
    }

    pub(super) async fn shutdown(&mut self) {
        self.ending = Some(Ending::Shutdown);
        if let Some(agent) = self.agent.as_ref() {
            let _ = agent.control.terminate().await;
            let wait = tokio::time::timeout(self.grace(), async {
                if let Some(a) = self.agent.as_mut() {
                    let _ = (&mut a.exited).await;
                }
            })
            .await;
            if wait.is_err()
                && let Some(a) = self.agent.as_ref()
            {
                let _ = a.control.kill_all().await;
            }
            self.agent = None;
            self.emit(vec![status(
                SessionState::Exited,
                Some("the daemon stopped; send a message to resume the conversation".into()),
            )])
            .await;
        }
    }
}
