//! Finding a stored session's sandbox and agent again when the daemon starts: from the
//! committed checkpoint, never by re-reading the log or recounting history.

use super::super::spec::Checkpoint;
use super::{Actor, Ladder, status};
use crate::policy;
use harvest_protocol::SessionState;
use harvest_sandbox::Adopted;
use tokio::time::Instant;

impl Actor {
    pub(super) async fn restore(&mut self, row: harvest_store::SessionRow) {
        let checkpoint: Checkpoint = serde_json::from_value(row.ingest.clone()).unwrap_or_default();
        // "Always allow" outlives any restart: it is part of the checkpoint, as are the
        // messages stored and not yet delivered.
        self.always_allowed = checkpoint.always_allowed.iter().cloned().collect();
        self.undelivered = checkpoint.undelivered.iter().cloned().collect();
        self.held = checkpoint.held.iter().cloned().collect();
        if self.state.is_terminal() {
            return;
        }
        let spec = policy::sandbox_spec(&self.daemon, self.id.as_str(), &self.spec);
        let found = self
            .provider
            .adopt(&spec, &row.sandbox_state, checkpoint.at)
            .await;
        let reason = match found {
            Ok(Some(Adopted {
                sandbox,
                process: Some(process),
            })) => {
                self.sandbox = Some(sandbox);
                let ended_unseen = process.control.exit_status().await.is_some();
                let same = checkpoint.at.log_id == process.log_id;
                if same {
                    self.pending_turns = checkpoint.pending_turns;
                    self.cli_reports_state = checkpoint.cli_reports_state;
                    self.pending_permissions = checkpoint
                        .pending_permissions
                        .iter()
                        .map(|p| (p.request_id.clone(), (p.tool.clone(), p.input.clone())))
                        .collect();
                }
                match self.attach(process, checkpoint, ended_unseen).await {
                    Ok(()) => {
                        tracing::info!(ended_unseen, "re-adopted the agent");
                        if self.pending_turns > 0 {
                            // A turn under way keeps going; it takes a slot when there is one.
                            self.slot = self
                                .daemon
                                .running_slots
                                .clone()
                                .and_then(|s| s.try_acquire_owned().ok());
                        }
                        if self.state == SessionState::Cancelling {
                            // A cancel was under way when the last daemon died: carry it on.
                            self.ladder =
                                Some((Ladder::Interrupted, Instant::now() + self.grace()));
                        }
                        if let Err(e) = self.deliver_or_queue().await {
                            tracing::warn!(error = %e.message, "undelivered messages still wait");
                        }
                        if self.pending_turns == 0 && !ended_unseen {
                            // The turn they waited for ended while no daemon watched.
                            self.release_held().await;
                        }
                        return;
                    }
                    Err(e) => format!("its log cannot be read ({e})"),
                }
            }
            Ok(Some(Adopted {
                sandbox,
                process: None,
            })) => {
                self.sandbox = Some(sandbox);
                "its agent was not running".to_owned()
            }
            Ok(None) => "its sandbox is gone".to_owned(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-adopt the agent");
                format!("its sandbox could not be found again ({e})")
            }
        };
        self.emit(vec![status(
            SessionState::Interrupted,
            Some(format!(
                "the daemon stopped while this session was live and {reason}; send a message to resume the conversation"
            )),
        )])
        .await;
    }
}
