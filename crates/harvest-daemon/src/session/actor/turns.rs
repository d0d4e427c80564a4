//! Turns: messages to the agent (now, or queued for a running slot), starting the agent
//! again to resume its conversation, and cancelling or stopping what runs.

use super::super::spec::Undelivered;
use super::{Actor, Ending, Ladder, status};
use crate::{policy, redact};
use harvest_agent::{AgentCommand, input};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, Secret, SessionState};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

impl Actor {
    /// A slot freed up: the waiting messages go to the agent.
    pub(super) async fn start_queued(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.slot = Some(permit);
        self.emit(vec![status(SessionState::Running, None)]).await;
        if let Err(e) = self.deliver_pending().await {
            self.emit(vec![EventBody::Error {
                message: format!("a queued message could not reach the agent: {}", e.message),
            }])
            .await;
        }
    }

    /// Deliver what waits now if a running slot allows it, else say the session waits.
    pub(super) async fn deliver_or_queue(&mut self) -> Result<(), RpcError> {
        if self.undelivered.is_empty() || self.agent.is_none() {
            return Ok(());
        }
        if let Some(slots) = self.daemon.running_slots.clone()
            && self.slot.is_none()
        {
            match slots.try_acquire_owned() {
                Ok(permit) => self.slot = Some(permit),
                Err(_) => {
                    if self.state != SessionState::Queued {
                        self.emit(vec![self.queued_status()]).await;
                    }
                    return Ok(());
                }
            }
        }
        if self.state != SessionState::Running {
            self.emit(vec![status(SessionState::Running, None)]).await;
        }
        self.deliver_pending().await
    }

    /// Write every undelivered message to the agent, oldest first. Each goes under its id,
    /// so one that reached the agent just before a crash is not written twice; each leaves
    /// the list only once written, and the list is committed with the next checkpoint.
    pub(super) async fn deliver_pending(&mut self) -> Result<(), RpcError> {
        while let Some(m) = self.undelivered.front().cloned() {
            let Some(agent) = self.agent.as_mut() else {
                return Err(RpcError::new(
                    codes::SESSION_STATE,
                    "the agent is not running",
                ));
            };
            crate::failpoint::crash("before_delivery");
            agent
                .input
                .deliver(&m.id, &input::user_message(&m.text))
                .await
                .map_err(|e| RpcError::new(codes::SESSION_STATE, e.to_string()))?;
            crate::failpoint::crash("after_delivery");
            self.undelivered.pop_front();
            self.pending_turns += 1;
        }
        Ok(())
    }

    fn queued_status(&self) -> EventBody {
        status(
            SessionState::Queued,
            Some(format!(
                "waiting for a free slot: at most {} sessions run at once (agent.max_running_sessions)",
                self.daemon.config.agent.max_running_sessions
            )),
        )
    }

    /// One line to the agent's input, or why it cannot take one.
    pub(super) async fn write_to_agent(&mut self, line: &str) -> Result<(), RpcError> {
        let Some(agent) = self.agent.as_mut() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the agent is not running",
            ));
        };
        agent
            .input
            .write_line(line)
            .await
            .map_err(|e| RpcError::new(codes::SESSION_STATE, e.to_string()))
    }

    /// Why no further turn may run, when the session has spent its budget.
    pub(super) fn over_budget(&self) -> Option<String> {
        let limit = self.daemon.config.agent.max_budget_usd;
        (limit > 0.0 && self.spent_usd >= limit).then(|| {
            format!(
                "the session reached its budget: ${:.4} of ${limit:.4}; raise agent.max_budget_usd in harvest.toml to go on",
                self.spent_usd
            )
        })
    }

    /// Start the agent again if it is not running (a finished, stopped or interrupted
    /// session), resuming its conversation; idle until the next message.
    pub(super) async fn restart(&mut self, env: BTreeMap<String, Secret>) -> Result<(), RpcError> {
        if self.ending.is_some() {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the session is stopping",
            ));
        }
        if self.agent.is_some() {
            return Ok(());
        }
        if !env.is_empty() {
            self.redact_values = redact::values(&env);
            self.secrets = env;
        }
        self.resume().await?;
        if self.state != SessionState::Idle {
            self.emit(vec![status(SessionState::Idle, None)]).await;
        }
        // Messages the last agent never got (a crash between storing and writing them).
        self.deliver_or_queue().await
    }

    pub(super) async fn send(
        &mut self,
        text: String,
        env: BTreeMap<String, Secret>,
    ) -> Result<Option<String>, RpcError> {
        if let Some(why) = self.over_budget() {
            return Err(RpcError::new(codes::SESSION_STATE, why));
        }
        if self.ending.is_some() {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                "the session is stopping",
            ));
        }
        if self.agent.is_none() {
            self.restart(env).await?;
        }
        let message = super::super::spec::Undelivered {
            id: uuid::Uuid::new_v4().simple().to_string(),
            text: text.clone(),
        };
        if self.turn_under_way() {
            // Held until the turn ends, so the user can still edit or withdraw it; stored
            // (with the checkpoint's held list), so a crash loses nothing.
            let id = message.id.clone();
            self.held.push_back(message);
            self.emit(vec![EventBody::MessageQueued {
                id: id.clone(),
                text,
            }])
            .await;
            return Ok(Some(id));
        }
        // Stored, with the message in the checkpoint's undelivered list, before the agent
        // sees it: a crash from here on delivers it after the restart, once.
        self.undelivered.push_back(message);
        self.emit(vec![EventBody::UserMessage { text }]).await;
        self.deliver_or_queue().await.map(|()| None)
    }

    /// The agent is working on a turn (or winding one down): a follow-up waits for it.
    fn turn_under_way(&self) -> bool {
        self.agent.is_some()
            && (self.pending_turns > 0
                || !self.held.is_empty()
                || matches!(
                    self.state,
                    SessionState::Running | SessionState::Cancelling | SessionState::NeedsInput
                ))
    }

    /// The running turn ended: the messages held behind it go to the agent, oldest
    /// first, each shown as taken (its `user_message`) in the same commit.
    pub(super) async fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut events = Vec::new();
        if self.state != SessionState::Running && self.agent.is_some() {
            events.push(status(SessionState::Running, None));
        }
        let taken: Vec<_> = self.held.drain(..).collect();
        events.extend(taken_by_the_agent(&taken));
        self.undelivered.extend(taken);
        self.emit(events).await;
        if let Err(e) = self.deliver_or_queue().await {
            self.emit(vec![EventBody::Error {
                message: format!("a queued message could not reach the agent: {}", e.message),
            }])
            .await;
        }
    }

    /// Held messages (one by id, or all) to the running turn now, which takes them at its
    /// next tool call (the CLI folds a message that arrives mid-turn into the turn under
    /// way). The turn still ends when the CLI says it is idle, so the accounting stays
    /// one turn, whatever it folded in.
    pub(super) async fn send_now(&mut self, id: Option<String>) -> Result<Vec<String>, RpcError> {
        let taken = self.take_held(id.as_deref())?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let mut events = taken_by_the_agent(&taken);
        events.push(EventBody::Sandbox {
            message: "sent into the running turn: the agent reads it at its next tool call".into(),
        });
        let ids = taken.iter().map(|m| m.id.clone()).collect();
        self.undelivered.extend(taken);
        self.emit(events).await;
        self.deliver_or_queue().await?;
        Ok(ids)
    }

    /// Held messages out of the queue: the one with `id`, or all of them.
    fn take_held(&mut self, id: Option<&str>) -> Result<Vec<Undelivered>, RpcError> {
        let Some(id) = id else {
            return Ok(self.held.drain(..).collect());
        };
        let Some(at) = self.held.iter().position(|m| m.id == id) else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!(
                    "message {id} is not queued: the agent has already taken it, or it was withdrawn"
                ),
            ));
        };
        Ok(self.held.remove(at).into_iter().collect())
    }

    /// Take back held messages before the agent has them: one by id, or all.
    pub(super) async fn withdraw(&mut self, id: Option<String>) -> Result<Vec<String>, RpcError> {
        let taken = self.take_held(id.as_deref())?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        self.emit(
            taken
                .iter()
                .map(|m| EventBody::MessageDequeued {
                    id: m.id.clone(),
                    withdrawn: true,
                })
                .collect(),
        )
        .await;
        Ok(taken.into_iter().map(|m| m.text).collect())
    }

    /// Start the agent again in the same sandbox and workspace, resuming its conversation.
    pub(super) async fn resume(&mut self) -> Result<(), RpcError> {
        policy::require_credentials(&self.secrets)?;
        if self.sandbox.is_none() {
            let spec = policy::sandbox_spec(&self.daemon, self.id.as_str(), &self.spec);
            let sandbox = self
                .provider
                .create(&spec)
                .await
                .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;
            self.sandbox = Some(sandbox);
        }
        let transcript_exists = self.conversation_started;
        let Some(sandbox) = self.sandbox.as_mut() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        let opts = policy::claude_options(
            &self.daemon,
            &self.spec,
            transcript_exists,
            self.spent_usd,
            sandbox.as_ref(),
        );
        let cmd = AgentCommand::claude(sandbox.agent_program(), &opts);
        let process = sandbox
            .spawn_agent(&cmd, &self.secrets)
            .await
            .map_err(|e| RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()))?;
        let persisted = sandbox.persisted();
        self.pending_turns = 0;
        // A new agent process: its sandbox's ports are announced again (a container
        // started again has new host ports).
        self.previews.clear();
        self.preview_check = Instant::now();
        self.attach(process, super::super::spec::Checkpoint::default(), false)
            .await
            .map_err(|e| RpcError::new(codes::AGENT_UNAVAILABLE, e.to_string()))?;
        // A fresh process has taken none of the messages left for the old one.
        self.store_sandbox_state(persisted).await;
        // Committed with the new log's checkpoint (offset 0): from here a restarted daemon
        // reads this process's log, never the old one's offset.
        self.emit(vec![EventBody::Sandbox {
            message: if transcript_exists {
                "agent restarted; resuming the conversation".into()
            } else {
                "agent started".into()
            },
        }])
        .await;
        Ok(())
    }

    pub(super) async fn cancel(&mut self) -> Result<(), RpcError> {
        let Some(agent) = self.agent.as_mut() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!("nothing to cancel: the session is {}", self.state.as_str()),
            ));
        };
        if !matches!(
            self.state,
            SessionState::Running | SessionState::Cancelling | SessionState::NeedsInput
        ) {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!("nothing to cancel: the session is {}", self.state.as_str()),
            ));
        }
        if self.ladder.is_some() {
            return Ok(()); // already on its way down
        }
        let request_id = format!("harvest-cancel-{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = agent.input.write_line(&input::interrupt(&request_id)).await {
            tracing::warn!(error = %e, "interrupt could not be written; escalating");
        }
        self.ladder = Some((Ladder::Interrupted, Instant::now() + self.grace()));
        self.emit(vec![status(SessionState::Cancelling, None)])
            .await;
        Ok(())
    }

    /// Returns whether an agent is on its way down (the caller waits for its exit).
    pub(super) async fn stop(&mut self) -> Result<bool, RpcError> {
        let Some(agent) = self.agent.as_ref() else {
            return Ok(false);
        };
        if self.ending.is_none() {
            self.ending = Some(Ending::Stop);
            let _ = agent.control.stop().await;
            self.ladder = Some((Ladder::Terminated, Instant::now() + self.grace()));
        }
        Ok(true)
    }

    pub(super) async fn escalate(&mut self) {
        let Some((step, _)) = self.ladder else { return };
        let Some(agent) = self.agent.as_ref() else {
            self.ladder = None;
            return;
        };
        let next = match step {
            Ladder::Interrupted => match agent.control.interrupt().await {
                Ok(true) => {
                    tracing::warn!("the agent ignored the interrupt request; signalled it");
                    Ladder::Signalled
                }
                // No signal in this provider: on to its stop.
                _ => {
                    tracing::warn!("the agent ignored the interrupt request; stopping it");
                    let _ = agent.control.stop().await;
                    Ladder::Terminated
                }
            },
            Ladder::Signalled => {
                tracing::warn!("the agent ignored the interrupt signal; stopping it");
                let _ = agent.control.stop().await;
                Ladder::Terminated
            }
            Ladder::Terminated => {
                tracing::warn!("the agent did not stop; killing everything in its sandbox");
                let _ = agent.control.kill().await;
                Ladder::Killed
            }
            Ladder::Killed => return,
        };
        let wait = if next == Ladder::Killed {
            Duration::from_secs(3600)
        } else {
            self.grace()
        };
        self.ladder = Some((next, Instant::now() + wait));
    }
}

/// Held messages going to the agent, each shown as taken (its `user_message`).
fn taken_by_the_agent(messages: &[Undelivered]) -> Vec<EventBody> {
    messages
        .iter()
        .flat_map(|m| {
            [
                EventBody::MessageDequeued {
                    id: m.id.clone(),
                    withdrawn: false,
                },
                EventBody::UserMessage {
                    text: m.text.clone(),
                },
            ]
        })
        .collect()
}
