//! The normalized event model. The agent's stream-json lines become these typed events;
//! clients render events and never parse agent output.
//!
//! JSON form: `{"seq":7,"ts":"2026-…Z","session":"3f9a2c1d","type":"tool_call",…,"raw":{…}}`.
//! `raw` keeps the agent line an event came from, for fidelity and for fields this model
//! does not name yet. New event types may appear within a protocol version; a client keeps
//! unknown ones (see [`EventBody::Unknown`]) rather than disconnecting.

use crate::ids::{Seq, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One stored, sequenced event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: Seq,
    /// RFC 3339 UTC time the daemon stored the event.
    pub ts: String,
    pub session: SessionId,
    #[serde(flatten)]
    pub body: EventBody,
    /// The agent line this event was parsed from, when it came from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

/// Lifecycle of a session. "Detached" is a client's state, never a session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Creating,
    /// A message waits for a free slot (`agent.max_running_sessions`).
    Queued,
    Running,
    Idle,
    NeedsInput,
    Cancelling,
    Exited,
    Failed,
    /// The daemon died while the session ran; it waits to be re-adopted or resumed.
    Interrupted,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Creating => "creating",
            SessionState::Queued => "queued",
            SessionState::Running => "running",
            SessionState::Idle => "idle",
            SessionState::NeedsInput => "needs_input",
            SessionState::Cancelling => "cancelling",
            SessionState::Exited => "exited",
            SessionState::Failed => "failed",
            SessionState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<SessionState> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    /// True when the agent process is gone and no further turn can run without a resume.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Exited | SessionState::Failed | SessionState::Interrupted
        )
    }
}

/// What happened. The `type` tag is the wire name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// The session changed state; `reason` says why when it is not obvious.
    Status {
        state: SessionState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A message the user sent (the first prompt or a follow-up), as the agent takes it.
    UserMessage { text: String },
    /// A follow-up sent while a turn runs: the daemon holds it until that turn ends, then
    /// it goes to the agent (`message_dequeued` and its `user_message`). Until then it can
    /// be withdrawn (`session/withdraw`), to edit it or drop it.
    MessageQueued { id: String, text: String },
    /// A queued message left the queue: taken by the agent (its `user_message` follows
    /// at once), or `withdrawn` by a client.
    MessageDequeued { id: String, withdrawn: bool },
    /// A complete assistant text block.
    AssistantText { text: String },
    /// A live fragment of an assistant text block that is still streaming; the complete
    /// block follows as `assistant_text`.
    AssistantDelta { text: String },
    /// A complete thinking block.
    Thinking { text: String },
    /// The agent calls a tool.
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool's outcome, with the structured payload the CLI reports.
    ToolResult {
        tool_use_id: String,
        is_error: bool,
        /// What the model was shown.
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<ToolOutput>,
    },
    /// How a running command is getting on, before its result: how long it has run, how
    /// many lines and bytes it printed, and its last lines (terminal-safe, each at most
    /// 300 characters). At most one a second per command; the `tool_result` replaces it.
    ToolProgress {
        tool_use_id: String,
        elapsed_secs: u64,
        lines: u64,
        bytes: u64,
        tail: Vec<String>,
    },
    /// The end of a turn with this turn's own figures (not the CLI's running totals).
    TurnResult {
        is_error: bool,
        /// `success`, `error_during_execution`, `error_max_turns`, ...
        subtype: String,
        /// `completed`, `api_error`, `aborted_streaming`, `aborted_tools`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal_reason: Option<String>,
        /// True when the turn ended because it was cancelled.
        #[serde(default)]
        interrupted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
        cost_usd: f64,
        input_tokens: u64,
        output_tokens: u64,
        duration_ms: u64,
        num_turns: u64,
    },
    /// The CLI is retrying an API call: shown at once so a rejected key or an overloaded
    /// API is visible within seconds.
    ApiRetry {
        attempt: u64,
        limit: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        delay_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The agent started a turn (`system/init`): its model and the CLI's session id.
    AgentInit {
        agent_session_id: String,
        model: String,
        cwd: String,
        #[serde(default)]
        tools: Vec<String>,
    },
    /// The agent asks before using a tool (sessions in `ask` mode); answer with
    /// `session/approve`. The session is `needs_input` until every request is answered.
    PermissionRequest {
        request_id: String,
        tool: String,
        input: Value,
        /// Readable: the command, the file and its change.
        summary: String,
        /// The tool call this asks about (its `tool_call` event follows or came before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
    },
    /// A permission request was answered (`allow`, `always`, `deny`) or withdrawn by the
    /// agent (`cancelled`, e.g. after an interrupt).
    PermissionResolved {
        request_id: String,
        decision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// The input that runs, when the user edited it before allowing (the tool call's
        /// own event shows what was asked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// Something about the sandbox itself (created, removed, the agent process exited).
    Sandbox { message: String },
    /// A port the agent serves on (`--port`) reachable from this machine at `url`.
    Preview { port: u16, url: String },
    /// Under `--network allow=…`, a connection the agent's tools tried to a host not on
    /// the list was refused.
    NetworkDenied { host: String, port: u16 },
    /// One model response of the running turn ended, with its tokens: live figures while
    /// a turn runs (the `turn_result` brings the exact totals and the cost).
    TurnUsage {
        input_tokens: u64,
        output_tokens: u64,
    },
    /// Harvest's own git work on the session's repository (not the agent's): `clone`,
    /// `branch`, `commit`, `push`, with its outcome and what it was about (the branch,
    /// the base commit, the error).
    GitOperation {
        operation: String,
        ok: bool,
        detail: String,
    },
    /// A pull request was opened for the session's branch (or found open already).
    PrCreated {
        url: String,
        number: u64,
        branch: String,
    },
    /// An error worth the user's attention, with what to do about it.
    Error { message: String },
    /// An agent line this model does not know: stored and passed on, never dropped.
    AgentRaw {},
    /// An event type from a newer daemon; kept, rendered as "unsupported event".
    #[serde(other)]
    Unknown,
}

impl EventBody {
    /// The wire name of the `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::Status { .. } => "status",
            EventBody::UserMessage { .. } => "user_message",
            EventBody::MessageQueued { .. } => "message_queued",
            EventBody::MessageDequeued { .. } => "message_dequeued",
            EventBody::AssistantText { .. } => "assistant_text",
            EventBody::AssistantDelta { .. } => "assistant_delta",
            EventBody::Thinking { .. } => "thinking",
            EventBody::ToolCall { .. } => "tool_call",
            EventBody::ToolResult { .. } => "tool_result",
            EventBody::ToolProgress { .. } => "tool_progress",
            EventBody::TurnResult { .. } => "turn_result",
            EventBody::ApiRetry { .. } => "api_retry",
            EventBody::AgentInit { .. } => "agent_init",
            EventBody::PermissionRequest { .. } => "permission_request",
            EventBody::PermissionResolved { .. } => "permission_resolved",
            EventBody::Sandbox { .. } => "sandbox",
            EventBody::Preview { .. } => "preview",
            EventBody::NetworkDenied { .. } => "network_denied",
            EventBody::TurnUsage { .. } => "turn_usage",
            EventBody::GitOperation { .. } => "git_operation",
            EventBody::PrCreated { .. } => "pr_created",
            EventBody::Error { .. } => "error",
            EventBody::AgentRaw {} => "agent_raw",
            EventBody::Unknown => "unknown",
        }
    }
}

/// The structured part of a tool result, for rendering Bash output and diffs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolOutput {
    Bash {
        stdout: String,
        stderr: String,
        interrupted: bool,
        /// Known only when the command failed (the CLI reports "Exit code N").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Where the CLI saved output too large to inline (inside the sandbox).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        persisted_output_path: Option<String>,
    },
    /// Edit or Write: the file and the unified-diff hunks of the change.
    Patch {
        file_path: String,
        /// `create`, `update` (Write) or `edit` (Edit).
        operation: String,
        hunks: Vec<PatchHunk>,
        /// The whole new content, for a created file (its patch has no hunks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
    Read {
        file_path: String,
        content: String,
        start_line: u64,
        num_lines: u64,
        total_lines: u64,
    },
    /// Any other structured result, as the CLI gave it.
    Other { value: Value },
}

/// One unified-diff hunk; `lines` carry their ' ', '-' or '+' prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchHunk {
    pub old_start: u64,
    pub old_lines: u64,
    pub new_start: u64,
    pub new_lines: u64,
    pub lines: Vec<String>,
}

/// Whether a tool result is the CLI's own note that the call was cancelled or refused
/// (its fixed text to the model, observed on 2.1.330), which clients show as such rather
/// than as the boilerplate it is.
pub fn is_cli_rejection(content: &str) -> bool {
    content.starts_with("The user doesn't want to proceed with this tool use")
        || content.starts_with("The user doesn't want to take this action right now")
        || content.starts_with("[Request interrupted by user")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_json_is_flat_with_type_tag() {
        let ev = Event {
            seq: Seq(3),
            ts: "2026-11-23T00:00:00Z".into(),
            session: SessionId::from("abc"),
            body: EventBody::ToolCall {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: json!({"command": "ls"}),
            },
            raw: None,
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"seq":3,"ts":"2026-11-23T00:00:00Z","session":"abc","type":"tool_call",
                   "id":"toolu_1","name":"Bash","input":{"command":"ls"}})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn unknown_event_types_are_kept_not_rejected() {
        let v = json!({"seq":1,"ts":"t","session":"s","type":"from_the_future","x":1});
        let ev: Event = serde_json::from_value(v).unwrap();
        assert_eq!(ev.body, EventBody::Unknown);
    }

    #[test]
    fn agent_raw_round_trips_with_its_raw_line() {
        let ev = Event {
            seq: Seq(1),
            ts: "t".into(),
            session: SessionId::from("s"),
            body: EventBody::AgentRaw {},
            raw: Some(json!({"type":"brand_new"})),
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(s.contains("\"type\":\"agent_raw\""), "{s}");
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), ev);
    }

    #[test]
    fn states_have_snake_case_names() {
        for st in [SessionState::NeedsInput, SessionState::Interrupted] {
            assert_eq!(SessionState::parse(st.as_str()), Some(st));
        }
    }
}
