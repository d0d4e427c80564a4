//! Permission prompts of a session in `ask` mode: requests the agent makes, answers from
//! clients (the first wins), and tools allowed for the rest of the session.

use super::{Actor, status};
use harvest_agent::input;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, SessionState};

impl Actor {
    /// Follow-up events for a permission event, as it is ingested: the state change, or
    /// the answer when the tool is allowed for the session.
    pub(super) fn on_permission_event(
        &mut self,
        body: &EventBody,
        auto_answers: &mut Vec<String>,
    ) -> Vec<EventBody> {
        match body {
            EventBody::PermissionRequest {
                request_id,
                tool,
                input,
                summary,
                ..
            } => {
                if self.always_allowed.contains(tool) {
                    auto_answers.push(input::permission_response(
                        request_id,
                        input::PermissionAnswer::Allow { input },
                    ));
                    return vec![EventBody::PermissionResolved {
                        request_id: request_id.clone(),
                        decision: "always".into(),
                        message: Some(format!("{tool} is allowed for this session")),
                        input: None,
                    }];
                }
                self.pending_permissions
                    .insert(request_id.clone(), (tool.clone(), input.clone()));
                vec![status(
                    SessionState::NeedsInput,
                    Some(format!("{tool} wants to {summary}")),
                )]
            }
            EventBody::PermissionResolved { request_id, .. } => {
                // Withdrawn by the agent (an interrupt): nothing to answer any more.
                if self.pending_permissions.remove(request_id).is_some()
                    && self.pending_permissions.is_empty()
                    && self.state == SessionState::NeedsInput
                {
                    return vec![status(SessionState::Running, None)];
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// `session/approve`: the first answer to a request wins.
    pub(super) async fn approve(
        &mut self,
        p: harvest_protocol::methods::ApproveParams,
    ) -> Result<(), RpcError> {
        let Some((tool, requested)) = self.pending_permissions.get(&p.request_id).cloned() else {
            return Err(RpcError::new(
                codes::SESSION_STATE,
                format!(
                    "no pending permission request {:?} (already answered?)",
                    p.request_id
                ),
            ));
        };
        // What runs, when the user changed it: recorded with the answer, so every client
        // shows the command that ran and that it was edited.
        let edited = p
            .input
            .clone()
            .filter(|run| *run != requested && p.decision != "deny");
        let line = match p.decision.as_str() {
            "allow" | "always" => {
                let run = p.input.clone().unwrap_or(requested);
                input::permission_response(
                    &p.request_id,
                    input::PermissionAnswer::Allow { input: &run },
                )
            }
            "deny" => input::permission_response(
                &p.request_id,
                input::PermissionAnswer::Deny {
                    message: p.message.as_deref().unwrap_or("The user denied this."),
                },
            ),
            other => {
                return Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    format!("decision {other:?}: use allow, always or deny"),
                ));
            }
        };
        self.write_to_agent(&line).await?;
        self.pending_permissions.remove(&p.request_id);
        let mut events = vec![EventBody::PermissionResolved {
            request_id: p.request_id,
            decision: p.decision.clone(),
            message: p.message,
            input: edited,
        }];
        if p.decision == "always" {
            // Requests for the same tool already waiting are answered the same way.
            let waiting: Vec<(String, serde_json::Value)> = self
                .pending_permissions
                .iter()
                .filter(|(_, (t, _))| *t == tool)
                .map(|(id, (_, input))| (id.clone(), input.clone()))
                .collect();
            for (id, input) in waiting {
                let line = input::permission_response(
                    &id,
                    input::PermissionAnswer::Allow { input: &input },
                );
                if self.write_to_agent(&line).await.is_ok() {
                    self.pending_permissions.remove(&id);
                    events.push(EventBody::PermissionResolved {
                        request_id: id,
                        decision: "always".into(),
                        message: Some(format!("{tool} is allowed for this session")),
                        input: None,
                    });
                }
            }
            self.always_allowed.insert(tool);
        }
        if self.pending_permissions.is_empty() && self.state == SessionState::NeedsInput {
            events.push(status(SessionState::Running, None));
        }
        self.emit(events).await;
        Ok(())
    }
}
