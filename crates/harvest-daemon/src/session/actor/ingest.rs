//! Ingestion: agent lines → events → the store (with the checkpoint, in one transaction)
//! → subscribers. Nothing is broadcast before it is stored.

use super::super::spec::{Checkpoint, PendingPermission};
use super::{Actor, status};
use crate::redact;
use harvest_protocol::{EventBody, SessionState};
use harvest_sandbox::LogPosition;
use harvest_store::{NewEvent, StoredEvent};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

impl Actor {
    pub(super) async fn ingest(&mut self, chunk: &[u8]) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let lines = agent.lines.push(chunk);
        // Parse first (the parser lives in the agent), then fold the events into the state.
        let mut parsed = Vec::with_capacity(lines.len());
        for line in lines {
            // Secrets are masked before the line goes anywhere: the store, a log, a client.
            let line = redact::redact(&line, &self.redact_values).unwrap_or(line);
            tracing::trace!(line = %line, "agent line");
            parsed.push(agent.parser.parse_line(&line));
        }
        let mut out = Vec::new();
        let mut auto_answers = Vec::new();
        let mut release_slot = false;
        let mut release_held = false;
        // The state as of the events pushed so far in this batch.
        let mut state_now = self.state;
        for p in parsed {
            if p.agent_state.is_some() {
                self.cli_reports_state = true;
            }
            self.task_started(&p.raw);
            for body in p.events {
                match &body {
                    EventBody::ToolCall { id, name, .. } if name == "Bash" => self.bash_called(id),
                    EventBody::ToolResult { tool_use_id, .. } => self.task_done(tool_use_id),
                    EventBody::TurnResult { .. } => self.live_tasks.clear(),
                    _ => {}
                }
                if let EventBody::AgentInit {
                    agent_session_id, ..
                } = &body
                {
                    self.conversation_started = true;
                    if self.spec.fork_from.is_some() {
                        // The fork's own conversation exists now: resume that from here on.
                        self.spec.fork_from = None;
                        self.spec.agent_session_id = agent_session_id.clone();
                        self.persist_spec();
                    }
                }
                // Streamed text is held back just enough to mask a secret split across
                // deltas; anything else ends the block and lets the rest through first.
                let body = match body {
                    EventBody::AssistantDelta { text } => {
                        let shown = self.deltas.push(&text, &self.redact_values);
                        if shown.is_empty() {
                            continue;
                        }
                        EventBody::AssistantDelta { text: shown }
                    }
                    other => {
                        let rest = self.deltas.flush();
                        if !rest.is_empty() {
                            out.push(NewEvent::new(EventBody::AssistantDelta { text: rest }));
                        }
                        other
                    }
                };
                let is_delta = matches!(body, EventBody::AssistantDelta { .. });
                let follow = self.on_permission_event(&body, &mut auto_answers);
                let turn_ended = matches!(body, EventBody::TurnResult { .. });
                let was_over = self.over_budget().is_some();
                if let EventBody::TurnResult { cost_usd, .. } = &body {
                    self.spent_usd += cost_usd;
                }
                out.push(NewEvent {
                    body,
                    // A delta's raw line would hold the piece of a split secret.
                    raw: (!is_delta || self.redact_values.is_empty()).then(|| p.raw.clone()),
                });
                out.extend(follow.into_iter().map(NewEvent::new));
                if !was_over && let Some(why) = self.over_budget() {
                    out.push(NewEvent::new(EventBody::Error { message: why }));
                }
                state_now = last_state(&out, state_now);
                // Without the CLI's own account (an older CLI), a turn is one message.
                if turn_ended && !self.cli_reports_state {
                    self.pending_turns = self.pending_turns.saturating_sub(1);
                    if self.pending_turns == 0 && self.ending.is_none() {
                        self.ladder = None;
                        if self.held.is_empty() {
                            release_slot = true;
                            out.push(NewEvent::new(status(SessionState::Idle, None)));
                            state_now = SessionState::Idle;
                        } else {
                            release_held = true;
                        }
                    }
                }
            }
            // The CLI started a turn: a message sent just as the last turn ended may have
            // been taken after that turn's `idle` was read.
            if p.agent_state == Some(harvest_agent::AgentState::Running)
                && state_now == SessionState::Idle
                && self.ending.is_none()
            {
                out.push(NewEvent::new(status(SessionState::Running, None)));
                state_now = SessionState::Running;
            }
            // The CLI says it is idle: every message it was given is answered, however many
            // it folded into one turn.
            if p.agent_state == Some(harvest_agent::AgentState::Idle) {
                self.pending_turns = 0;
                if self.ending.is_none() {
                    self.ladder = None;
                    if !self.held.is_empty() {
                        // The turn is over: what waited behind it goes now, keeping the
                        // slot and without a passing `idle` that `harvest wait` would take
                        // for the end.
                        release_held = true;
                    } else {
                        release_slot = true;
                        if !matches!(state_now, SessionState::Idle | SessionState::Queued) {
                            out.push(NewEvent::new(status(SessionState::Idle, None)));
                            state_now = SessionState::Idle;
                        }
                    }
                }
            }
        }
        self.commit(out, false).await;
        self.compact_log().await;
        if release_held {
            self.release_held().await;
        }
        if release_slot && self.pending_turns == 0 {
            // Only once the turn's end is stored may another session take the slot.
            self.slot = None;
        }
        // Requests for tools the user allowed "always" are answered at once.
        for line in auto_answers {
            if let Some(agent) = self.agent.as_mut()
                && let Err(e) = agent.input.write_line(&line).await
            {
                tracing::warn!(error = %e, "cannot answer a permission request");
            }
        }
    }

    /// Let the provider free what of the log is committed, every so often.
    async fn compact_log(&mut self) {
        const EVERY: u64 = 16 * 1024 * 1024;
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let committed = agent.log.offset() - agent.lines.pending_len();
        if committed >= agent.compacted + EVERY {
            if let Err(e) = agent.control.compact(committed).await {
                tracing::warn!(error = %e, "cannot compact the agent log");
            }
            agent.compacted = committed;
        }
    }

    /// Where ingestion stands now, with all that was derived up to there. `ended`: the log
    /// has been read to its end and the process's ending is in these events.
    pub(super) fn checkpoint(&self, ended: bool) -> Option<Checkpoint> {
        let agent = self.agent.as_ref()?;
        Some(Checkpoint {
            at: LogPosition {
                log_id: agent.log_id,
                offset: agent.log.offset() - agent.lines.pending_len(),
                ended,
            },
            parser: agent.parser.clone(),
            pending_turns: self.pending_turns,
            pending_permissions: self
                .pending_permissions
                .iter()
                .map(|(id, (tool, input))| PendingPermission {
                    request_id: id.clone(),
                    tool: tool.clone(),
                    input: input.clone(),
                })
                .collect(),
            always_allowed: self.always_allowed.iter().cloned().collect(),
            undelivered: self.undelivered.iter().cloned().collect(),
            held: self.held.iter().cloned().collect(),
            cli_reports_state: self.cli_reports_state,
        })
    }

    /// Store and broadcast events that the daemon itself originates.
    pub async fn emit(&mut self, events: Vec<EventBody>) {
        self.commit(events.into_iter().map(NewEvent::new).collect(), false)
            .await;
    }

    /// Commit events with the current checkpoint, then broadcast them. A failing store (a
    /// full disk) is retried rather than losing the events: the agent keeps writing to its
    /// own log meanwhile.
    pub(super) async fn commit(&mut self, events: Vec<NewEvent>, ended: bool) {
        let checkpoint = self
            .checkpoint(ended)
            .and_then(|c| serde_json::to_value(c).ok());
        self.commit_with(events, checkpoint).await;
    }

    pub(super) async fn commit_with(
        &mut self,
        events: Vec<NewEvent>,
        checkpoint: Option<serde_json::Value>,
    ) {
        if events.is_empty() && checkpoint.is_none() {
            return;
        }
        let mut events = events;
        for ev in &mut events {
            // Nothing leaves the daemon that a terminal would act on (titles, clipboard,
            // cursor moves); the agent's bookkeeping above has seen the text as it was.
            harvest_termsafe::event(&mut ev.body);
        }
        for ev in &events {
            if let EventBody::Status { state, .. } = &ev.body {
                self.state = *state;
            }
        }
        *self
            .shared_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.state;
        if self.state != SessionState::Idle {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
        let Some(stored) = self.store_retrying(events, checkpoint).await else {
            return;
        };
        for ev in stored {
            // No receivers is fine: nobody is attached.
            let _ = self.events.send(Arc::new(ev));
        }
    }

    /// Store, retrying while the store refuses (a full disk): the agent keeps writing its
    /// own log meanwhile, so nothing is lost. While it refuses, the session is marked
    /// stalled (clients see why, and calls are answered with it instead of waiting).
    async fn store_retrying(
        &self,
        events: Vec<NewEvent>,
        checkpoint: Option<serde_json::Value>,
    ) -> Option<Vec<StoredEvent>> {
        let checkpoint = Arc::new(checkpoint);
        let mut events = Some(events);
        let mut stalled = false;
        loop {
            let batch = events.take().unwrap_or_default();
            let (store, id, cp) = (
                self.daemon.store.clone(),
                self.id.clone(),
                checkpoint.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                let r = if crate::failpoint::store_full() {
                    Err(harvest_store::StoreError::Sqlite(disk_full()))
                } else {
                    store.append(&id, clone_events(&batch), cp.as_ref().as_ref())
                };
                (r, batch)
            })
            .await;
            match result {
                Ok((Ok(stored), _)) => {
                    if stalled {
                        tracing::info!("the store takes events again");
                        *self.stalled.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    }
                    return Some(stored);
                }
                Ok((Err(e), mut batch)) => {
                    if !stalled {
                        tracing::error!(error = %e, "cannot store events; retrying");
                        let since = now();
                        *self.stalled.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(format!("stalled since {since}: cannot store events ({e})"));
                        stalled = true;
                        // Stored first once the store takes events again, so the history
                        // says where the gap in time came from.
                        batch.insert(
                            0,
                            NewEvent::new(EventBody::Error {
                                message: format!(
                                    "events could not be stored from {since} ({e}); they were held and nothing was lost; free space on the disk if this recurs"
                                ),
                            }),
                        );
                    }
                    events = Some(batch);
                    if self.daemon.shutdown.is_cancelled() {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => return None,
            }
        }
    }
}

fn clone_events(events: &[NewEvent]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            body: e.body.clone(),
            raw: e.raw.clone(),
        })
        .collect()
}

/// The state the last status event among `out` sets, or `before` when there is none.
fn last_state(out: &[NewEvent], before: SessionState) -> SessionState {
    out.iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::Status { state, .. } => Some(*state),
            _ => None,
        })
        .unwrap_or(before)
}

/// What SQLite says when the disk is full (for the test hook that pretends it is).
fn disk_full() -> harvest_store::RusqliteError {
    harvest_store::RusqliteError::SqliteFailure(
        harvest_store::ffi_error(harvest_store::SQLITE_FULL),
        Some("database or disk is full".into()),
    )
}

/// The time now, for messages (UTC, to the second).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}
