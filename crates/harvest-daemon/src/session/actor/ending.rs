//! How a session's agent ends: it exits (on its own, stopped, cancelled the hard way, idle),
//! the session is removed, or the daemon shuts down. Each leaves a status that says why.

use super::{Actor, Agent, Ending, status};
use harvest_protocol::{EventBody, SessionState};
use harvest_sandbox::AgentExit;
use std::time::Duration;

impl Actor {
    /// The agent's log has ended: every line it wrote is stored. Record how it ended.
    pub(super) async fn on_exit(&mut self) {
        let Some(a) = self.agent.as_ref() else {
            return;
        };
        let exit = a.control.exit_status().await.unwrap_or(AgentExit {
            code: None,
            signal: None,
            lost: None,
        });
        let diagnostics = a.control.diagnostics().await;
        let ended_unseen = a.ended_unseen;
        // Only an unclean end may have been the provider's doing (an idle stop).
        let by_provider = match exit.code {
            Some(0) => None,
            _ => a.control.ended_by_provider().await,
        };
        // The ending is committed with the final checkpoint (`ended`), so a restarted
        // daemon never handles this process's end twice.
        let checkpoint = self
            .checkpoint(true)
            .and_then(|c| serde_json::to_value(c).ok());
        self.agent = None;
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
            None if exit.lost.is_some() => {
                events.push(status(
                    SessionState::Interrupted,
                    Some(format!(
                        "{}; send a message to resume the conversation",
                        exit.lost.as_deref().unwrap_or_default()
                    )),
                ));
            }
            None if ended_unseen && exit.code != Some(0) => {
                events.push(status(
                    SessionState::Interrupted,
                    Some(format!(
                        "the agent ended while the daemon was down ({exit}); send a message to resume the conversation"
                    )),
                ));
            }
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
            None if by_provider.is_some() && !was_cancelling => {
                let why = by_provider.unwrap_or_default();
                events.push(status(
                    SessionState::Exited,
                    Some(format!(
                        "{why}; send a message to start it again and resume the conversation"
                    )),
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
        self.commit_with(
            events
                .into_iter()
                .map(harvest_store::NewEvent::new)
                .collect(),
            checkpoint,
        )
        .await;
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        // No turn runs any more: what was held behind the last one goes to the next agent
        // (on the next message or resume).
        self.release_held().await;
    }

    pub(super) async fn remove(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.control.kill().await;
            let _ = tokio::time::timeout(Duration::from_secs(3), wait_for_end(&mut agent)).await;
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
        self.daemon.sessions.unregister(&self.id);
        tracing::info!("session removed");
    }

    pub(super) async fn shutdown(&mut self) {
        self.ending = Some(Ending::Shutdown);
        if !self
            .daemon
            .end_agents
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // The agent runs on under its supervisor, writing its log; the next daemon
            // reads on from the stored checkpoint, as after a crash, and no turn is lost.
            tracing::info!("the daemon stops; the agent runs on for the next one");
            return;
        }
        if let Some(agent) = self.agent.as_ref() {
            let _ = agent.control.stop().await;
            let grace = self.grace();
            let wait = match self.agent.as_mut() {
                Some(a) => tokio::time::timeout(grace, wait_for_end(a)).await.is_ok(),
                None => true,
            };
            if !wait && let Some(a) = self.agent.as_ref() {
                let _ = a.control.kill().await;
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

/// Read (and drop) the rest of a log until it ends: used only when the session is going
/// away or the daemon stops, where the events no longer matter.
async fn wait_for_end(agent: &mut Agent) {
    loop {
        match agent.log.next(Duration::from_millis(100)).await {
            Ok(harvest_sandbox::LogRead::End) | Err(_) => return,
            _ => {}
        }
    }
}
