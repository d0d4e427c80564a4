//! The live sessions by id: registered by their actors, found by id or unambiguous prefix.

use crate::session::handle::SessionHandle;
use harvest_protocol::SessionId;
use harvest_protocol::rpc::{RpcError, codes};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
}

impl Registry {
    /// Why a session cannot store right now, if it cannot.
    pub fn stalled(&self, id: &SessionId) -> Option<String> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .and_then(|h| h.stalled())
    }

    pub fn register(&self, id: SessionId, handle: SessionHandle) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handle);
    }

    pub fn unregister(&self, id: &SessionId) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub fn handles(&self) -> Vec<SessionHandle> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Find a session by id or unambiguous id prefix.
    pub fn resolve(&self, key: &str) -> Result<(SessionId, SessionHandle), RpcError> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, h)) = sessions.get_key_value(&SessionId::from(key)) {
            return Ok((id.clone(), h.clone()));
        }
        let matches: Vec<_> = if key.is_empty() {
            Vec::new()
        } else {
            sessions
                .iter()
                .filter(|(id, _)| id.as_str().starts_with(key))
                .collect()
        };
        match matches.as_slice() {
            [(id, h)] => Ok(((*id).clone(), (*h).clone())),
            [] => Err(RpcError::new(
                codes::SESSION_NOT_FOUND,
                format!("no session {key:?}; `harvest ls` lists the sessions"),
            )),
            many => Err(RpcError::new(
                codes::SESSION_AMBIGUOUS,
                format!(
                    "{key:?} matches {} sessions ({}); give more of the id",
                    many.len(),
                    many.iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}
