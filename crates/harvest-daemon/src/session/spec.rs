//! What a session is made of, as stored: its spec (the creation parameters, minus
//! secrets) and its ingestion checkpoint.

use harvest_sandbox::{LogPosition, WorkspaceSource};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a session was created with, minus secrets; stored as the session's `spec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSpec {
    /// The workspace on this machine, when it is on this machine (for `ls` and hidden
    /// paths); what the sandbox works on is [`SessionSpec::workspace_source`].
    pub workspace: PathBuf,
    #[serde(default)]
    pub repo: Option<String>,
    /// The workspace was made by Harvest (a clone, a fork's copy) and goes with the session.
    #[serde(default)]
    pub owns_workspace: bool,
    /// Where the workspace comes from (absent in sessions stored before providers had
    /// sources; derived from the fields above then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<WorkspaceSource>,
    #[serde(default)]
    pub model: Option<String>,
    /// The CLI's conversation id, chosen up front so it can always be resumed.
    pub agent_session_id: String,
    /// The host's claude CLI, for providers that need one; `None` when the sandbox brings
    /// its own.
    #[serde(default)]
    pub claude: Option<PathBuf>,
    #[serde(default)]
    pub permissions: harvest_agent::Permissions,
    /// A fork not started yet: its first agent resumes this conversation as a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_from: Option<String>,
    /// `open` or `none`; absent: the config's `sandbox.network` (sessions made before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Ports the agent serves on, reached from this machine (`preview` events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// The docker provider's image for this session; absent: the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The session's own branch (a clone's `harvest/<slug>-<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit the session started from, when its workspace is a git repository:
    /// what `harvest diff` and `harvest apply` measure against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The pull request opened for the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// The user's own Claude Code configuration comes along (`agent.user_config`);
    /// absent in sessions made before there was such a thing: they stay as they were.
    #[serde(default)]
    pub user_config: bool,
    /// The workspace's `.mcp.json` the user trusted (its content name); its servers start
    /// only while the file is exactly that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_mcp: Option<String>,
    /// The secrets the user named for stdio MCP servers (`server: VAR`), which enter the
    /// sandbox; shown with the session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_inside: Vec<String>,
    /// Where the agent sees its workspace when not at its path here: a fork's copy, shown
    /// where the conversation it continues saw the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_at: Option<std::path::PathBuf>,
}

impl SessionSpec {
    pub fn workspace_source(&self) -> WorkspaceSource {
        match (&self.source, self.owns_workspace) {
            (Some(s), _) => s.clone(),
            (None, true) => WorkspaceSource::Owned {
                path: self.workspace.clone(),
            },
            (None, false) => WorkspaceSource::Folder {
                path: self.workspace.clone(),
            },
        }
    }
}

/// A permission request the agent waits on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingPermission {
    pub request_id: String,
    pub tool: String,
    pub input: serde_json::Value,
}

/// The ingestion checkpoint, committed with the events it covers (in the same
/// transaction): where in which log ingestion stands, and everything the actor derived from
/// the lines before that point. A restarted daemon starts from it as it is: nothing is
/// re-read and nothing is recounted from the session's history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub at: LogPosition,
    #[serde(default)]
    pub parser: harvest_agent::StreamParser,
    /// Turns the agent has begun and not yet ended.
    #[serde(default)]
    pub pending_turns: u32,
    #[serde(default)]
    pub pending_permissions: Vec<PendingPermission>,
    /// Tools the user allowed for the rest of the session.
    #[serde(default)]
    pub always_allowed: Vec<String>,
    /// Messages stored (their `user_message` is in the store) and not yet written to the
    /// agent: waiting for a running slot, or caught by a crash between storing and
    /// writing. A restarted daemon delivers them, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<Undelivered>,
    /// Follow-ups sent while a turn ran (their `message_queued` is in the store), held
    /// until it ends; they move to `undelivered` (with their `user_message`) then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Undelivered>,
    /// The CLI reports its own running/idle state (so a turn's end is its `idle`, not its
    /// `result`): known again at once after a restart, before its next report.
    #[serde(default)]
    pub cli_reports_state: bool,
}

/// A message on its way to the agent; `id` makes its delivery happen once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Undelivered {
    pub id: String,
    pub text: String,
}
