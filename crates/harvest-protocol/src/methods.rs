//! The table of methods: each is one type tying its wire name to its params and result,
//! so the daemon's dispatch and the client's calls cannot disagree.

use crate::event::{Event, SessionState};
use crate::ids::{Seq, SessionId};
use crate::secret::Secret;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned;
    type Result: Serialize + DeserializeOwned;
}

macro_rules! methods {
    ($($ty:ident => $name:literal, $params:ty, $result:ty;)*) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub enum $ty {}
            impl Method for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )*
        /// Every method name the daemon serves.
        pub const ALL: &[&str] = &[$($name),*];

        /// A call with its decoded params, one variant per method of the table, so a
        /// server matches them exhaustively: a method added to the table and not served
        /// does not compile.
        #[derive(Debug)]
        pub enum Call {
            $($ty($params),)*
        }

        impl Call {
            /// Decode a call from its wire name and params (`null` counts as `{}`).
            pub fn parse(method: &str, params: serde_json::Value) -> Result<Call, CallError> {
                let params = if params.is_null() {
                    serde_json::Value::Object(Default::default())
                } else {
                    params
                };
                match method {
                    $($name => serde_json::from_value(params)
                        .map(Call::$ty)
                        .map_err(|e| CallError::InvalidParams { method: $name, detail: e.to_string() }),)*
                    other => Err(CallError::UnknownMethod(other.to_owned())),
                }
            }

            pub fn name(&self) -> &'static str {
                match self {
                    $(Call::$ty(_) => $name,)*
                }
            }
        }
    };
}

/// Why a call could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no method {0:?}")]
    UnknownMethod(String),
    #[error("invalid params for {method}: {detail}")]
    InvalidParams {
        method: &'static str,
        detail: String,
    },
}

/// The result of method `M`, encoded: the type comes from the table, so a handler cannot
/// answer with another method's result.
pub fn result_of<M: Method>(r: M::Result) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(r)
}

methods! {
    Hello => "hello", HelloParams, HelloResult;
    SessionCreate => "session/create", CreateParams, SessionInfo;
    SessionList => "session/list", Empty, SessionListResult;
    SessionGet => "session/get", SessionRef, SessionInfo;
    SessionSubscribe => "session/subscribe", SubscribeParams, SubscribeResult;
    SessionEvents => "session/events", EventsParams, EventsResult;
    SessionUnsubscribe => "session/unsubscribe", UnsubscribeParams, Empty;
    SessionSend => "session/send", SendParams, SendResult;
    SessionWithdraw => "session/withdraw", WithdrawParams, WithdrawResult;
    SessionSendNow => "session/send_now", WithdrawParams, SendNowResult;
    SessionCancel => "session/cancel", SessionRef, Empty;
    SessionStop => "session/stop", SessionRef, Empty;
    SessionResume => "session/resume", ResumeParams, Empty;
    SessionRename => "session/rename", RenameParams, SessionInfo;
    SessionApprove => "session/approve", ApproveParams, Empty;
    SessionFork => "session/fork", ForkParams, SessionInfo;
    SessionRemove => "session/remove", SessionRef, Empty;
    SessionReadFile => "session/read_file", ReadFileParams, ReadFileResult;
    SessionChanges => "session/changes", SessionRef, ChangesResult;
    SessionDiff => "session/diff", DiffParams, DiffResult;
    SessionPr => "session/pr", PrParams, PrResult;
    DaemonStatus => "daemon/status", Empty, DaemonStatusResult;
    DaemonStop => "daemon/stop", DaemonStopParams, Empty;
}

/// Notification carrying one event of a subscription.
pub const NOTIFY_EVENT: &str = "event/appended";
/// Notification: the subscriber fell behind; the daemon re-sends from `next_seq` out of
/// the store, so nothing is lost, but the client learns that it was slow.
pub const NOTIFY_LAGGED: &str = "subscription/lagged";
/// Notification to the client whose `session/create` is under way: how far a long step
/// of making the sandbox is (a large upload).
pub const NOTIFY_PROGRESS: &str = "session/progress";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloParams {
    pub protocol: u32,
    pub client: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloResult {
    pub protocol: u32,
    pub daemon_version: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRef {
    /// A session id, or an unambiguous prefix of one.
    pub session: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateParams {
    /// Use this folder as the workspace, as it is (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Clone this repository (https URL or local path) into a fresh workspace first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The first message; a session without one waits idle for `session/send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sandbox provider: the daemon's `sandbox.default` (`local`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// `open` or `none` (loopback only; the model is still reached through the daemon's
    /// proxy). The config's `sandbox.network` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `bypass` (default: the sandbox is the boundary) or `ask` (tool calls wait for
    /// `session/approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Ports the agent will serve on, to reach from this machine (`preview` events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// The docker provider's image for this session (default: the config's `docker.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Bring the user's own Claude Code configuration along (memory, settings, commands,
    /// skills, agents, output styles, MCP servers; the config's `agent.user_config` says
    /// which). Default: yes; `false` runs clean (`--no-user-config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_config: Option<bool>,
    /// The workspace's `.mcp.json` as the user trusted it ([`crate::content_name`] of its
    /// bytes): its servers start only while the file is still exactly that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_mcp: Option<String>,
    /// Run the repository's setup (`.harvest/setup`) before the first turn. Default: yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<bool>,
    /// Variables forwarded from the client's environment into the agent's environment
    /// only (API keys, base URL). Never stored, never logged.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub name: String,
    pub state: SessionState,
    pub sandbox: String,
    pub workspace: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub last_seq: Seq,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,
    /// The newest message of the conversation (user, assistant or error), for pickers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
    /// The first prompt, to recognise an old session by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_prompt: Option<String>,
    /// Set while the session cannot store what its agent prints (a full disk): why, and
    /// since when. Nothing is lost meanwhile (the agent's log keeps it); clients show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<String>,
    /// Where the ports the session serves (`--port`) are reached from this machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previews: Vec<Preview>,
    /// The provider's name for the sandbox (a docker container's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_name: Option<String>,
    /// The provider's word on the sandbox's state (a Daytona sandbox: `started`,
    /// `stopped`, `archived`…), in listings, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_state: Option<String>,
    /// The session's own git branch (`harvest/<slug>-<id>`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The pull request opened for it, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// Secrets the user named for the session's stdio MCP servers, which are inside its
    /// sandbox (`server: VARIABLE`, never a value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_inside: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub port: u16,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionListResult {
    pub sessions: Vec<SessionInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeParams {
    pub session: String,
    /// First seq wanted; 1 replays the whole session.
    #[serde(default = "first_seq")]
    pub from_seq: Seq,
    /// Send each event's `raw` agent line too (default true). A client that only renders
    /// events can leave it out and receive about half the bytes.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub include_raw: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn first_seq() -> Seq {
    Seq(1)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeResult {
    pub subscription: u64,
    pub session: SessionId,
    /// The session's last stored seq when the subscription began.
    pub last_seq: Seq,
}

/// Most events one `session/events` call returns; page with `from_seq`.
pub const EVENTS_PAGE: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsParams {
    pub session: String,
    pub from_seq: Seq,
    /// Exclusive end; omitted means up to the newest event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<Seq>,
    /// Include each event's `raw` agent line (default false).
    #[serde(default)]
    pub include_raw: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsResult {
    /// Stored events in seq order, at most [`EVENTS_PAGE`].
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsubscribeParams {
    pub subscription: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendParams {
    pub session: String,
    pub text: String,
    /// Credentials for the agent, as in `session/create`; used only when the agent has to
    /// be started again to resume the conversation (after `session/stop` or a restart).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

/// What became of a message sent: delivered to the agent now, or queued behind the
/// running turn (with the id to withdraw it by).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SendResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<String>,
}

/// Take back queued messages before the agent has them: the one with `message` as its
/// id, or (without it) every queued one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawParams {
    pub session: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// The texts withdrawn, oldest first, for the client to put back in its input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WithdrawResult {
    pub texts: Vec<String>,
}

/// `session/send_now` (with [`WithdrawParams`]: one queued message by id, or all): the
/// queued messages go to the running turn now, which takes them at its next tool call,
/// instead of waiting for it to end. The ids sent, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SendNowResult {
    pub sent: Vec<String>,
}

/// `daemon/stop`: the daemon ends. Its agents keep running (as after a crash) and the next
/// daemon takes them up again, turns and all; with `end_sessions` each is stopped first and
/// its session marked exited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonStopParams {
    #[serde(default)]
    pub end_sessions: bool,
}

/// `session/fork`: a new session that starts as a copy of one (its workspace, and its
/// conversation so far), and then goes its own way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForkParams {
    pub session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Credentials for the fork's agent, as in `session/create`.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

/// An answer to a `permission_request`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApproveParams {
    pub session: String,
    pub request_id: String,
    /// `allow` (once), `always` (this tool, for the rest of the session) or `deny`.
    pub decision: String,
    /// For `deny`: what the agent is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `allow`/`always`: run this input instead of the requested one (an edited command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

/// `session/read_file`: a file as the agent sees it (a path inside its sandbox, such as a
/// tool output the CLI saved), read by the sandbox's provider so that a link or a FIFO the
/// agent planted never reaches outside it or blocks the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadFileParams {
    pub session: String,
    /// An absolute path inside the sandbox.
    pub path: String,
    /// At most this many bytes (default and cap [`READ_FILE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// The most `session/read_file` returns at once.
pub const READ_FILE_MAX: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadFileResult {
    /// The content, as UTF-8 with invalid bytes replaced.
    pub text: String,
    /// The file was longer than what was returned.
    pub truncated: bool,
}

/// `session/changes`: what the agent changed in a workspace that is not on this machine
/// (a remote sandbox's), against what was uploaded, for `harvest pull`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesResult {
    /// The user's folder the workspace was uploaded from, if it was.
    pub local_workspace: Option<String>,
    pub changes: Vec<FileChange>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffParams {
    pub session: String,
    /// A summary of the changed files (`git diff --stat`) instead of the patch.
    #[serde(default)]
    pub stat: bool,
}

/// The session's changes against the commit it started from, as the sandbox's git makes
/// them: every file the agent changed, made or deleted (committed or not; ignored files
/// left out), in git's binary-safe patch format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffResult {
    /// The commit the session started from.
    pub base: String,
    /// The session's branch, when it has one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The repository on this machine the session was made from (`--repo PATH`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_repo: Option<String>,
    /// The session works in the user's folder itself (`--workspace`, `--in-place`): its
    /// changes are there already.
    #[serde(default)]
    pub in_place: bool,
    /// The patch (or the `--stat` summary), base64: the bytes exactly as git made them,
    /// which a file not in UTF-8 needs. Produced by the sandbox: hostile until checked
    /// (paths, modes, escapes).
    pub patch_b64: String,
}

/// `session/pr`: Harvest commits the session's work in the sandbox, pushes its branch from
/// this machine and opens the pull request (or finds the one open for the branch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrParams {
    pub session: String,
    /// The forge token, from the client's environment: used for this call, never stored,
    /// never given to the sandbox.
    pub token: crate::Secret,
    /// GitHub's API (`GITHUB_API_URL`); absent: the one for the remote's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The branch to merge into; absent: the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default)]
    pub draft: bool,
    /// The commit's author (`Name <email>`), from the user's git config; absent: Harvest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrResult {
    pub url: String,
    pub number: u64,
    pub branch: String,
    /// It was open already (nothing new was opened).
    #[serde(default)]
    pub existing: bool,
}

/// The most a `session/diff` patch carries.
pub const DIFF_MAX: usize = 8 * 1024 * 1024;

/// One changed file. Its path is the sandbox's report: the client checks it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileChange {
    /// Relative to the workspace.
    pub path: String,
    /// The git blob hash of the uploaded version; absent: the agent made the file.
    pub base: Option<String>,
    /// The agent's version, base64; absent: the agent deleted the file.
    pub content_b64: Option<String>,
    /// The version it started from, base64, when only the sandbox holds it (a clone
    /// made inside the sandbox); absent for an uploaded folder, whose base is local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_b64: Option<String>,
}

/// The most a `session/changes` answer carries (under the frame limit, base64 included).
pub const CHANGES_MAX: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameParams {
    pub session: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeParams {
    pub session: String,
    /// Credentials for the restarted agent, as in `session/create`.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatusResult {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub socket: String,
    pub data_dir: String,
    pub state_dir: String,
    pub uptime_secs: u64,
    pub sessions: u64,
    pub running: u64,
    pub clients: u64,
}

/// Params of [`NOTIFY_EVENT`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventNotification {
    pub subscription: u64,
    pub event: Event,
}

/// Params of [`NOTIFY_PROGRESS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressNotification {
    pub session: String,
    pub message: String,
}

/// Params of [`NOTIFY_LAGGED`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaggedNotification {
    pub subscription: u64,
    pub next_seq: Seq,
}
