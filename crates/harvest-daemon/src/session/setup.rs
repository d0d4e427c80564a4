//! What a session actor starts from: its stored facts, and its sandbox and agent when the
//! caller already has them (a session just created).

use super::spec::{Checkpoint, SessionSpec};
use harvest_protocol::{Secret, SessionId, SessionState};
use harvest_sandbox::{AgentProcess, Sandbox};
use std::collections::BTreeMap;

/// What an actor starts from.
pub struct Setup {
    pub id: SessionId,
    pub spec: SessionSpec,
    pub state: SessionState,
    /// Credentials for the agent, in memory only.
    pub secrets: BTreeMap<String, Secret>,
    /// The CLI has already created the conversation (so a restart resumes it).
    pub conversation_started: bool,
    /// What the session's turns have cost so far.
    pub spent_usd: f64,
    /// A stored session to find again (its sandbox and agent) before anything else.
    pub restore: Option<harvest_store::SessionRow>,
}

/// A running agent handed to an actor: just started, or found again after a restart.
pub struct Live {
    pub sandbox: Box<dyn Sandbox>,
    pub process: AgentProcess,
    pub checkpoint: Checkpoint,
}
