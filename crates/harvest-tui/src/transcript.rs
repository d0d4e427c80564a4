//! The session as the client sees it: events folded into the items of the conversation
//! (a tool call and its result become one item), plus the figures for the status line.
//! Each item carries a revision, bumped when it changes, which keys the render cache.

use harvest_protocol::event::ToolOutput;
use harvest_protocol::{Event, EventBody, Seq, SessionState};
use serde_json::Value;
use std::collections::HashMap;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    User(String),
    Assistant { text: String, streaming: bool },
    Thinking(String),
    Tool(Box<ToolItem>),
    Turn(TurnSummary),
    Notice { level: Level, text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolItem {
    pub id: String,
    pub name: String,
    pub input: Value,
    /// The user edited the input when allowing the call: `input` is what ran.
    pub edited: bool,
    pub result: Option<ToolResult>,
    pub started: Option<OffsetDateTime>,
    pub finished: Option<OffsetDateTime>,
    /// How a running command is getting on (until its result replaces it).
    pub progress: Option<ToolProgress>,
    /// Its turn (or agent) ended without its result: it is not running any more.
    pub ended_unanswered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolProgress {
    pub elapsed_secs: u64,
    pub lines: u64,
    pub tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub is_error: bool,
    pub content: String,
    pub output: Option<ToolOutput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurnSummary {
    pub is_error: bool,
    pub interrupted: bool,
    pub result: Option<String>,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
}

/// A permission request waiting for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPermission {
    pub request_id: String,
    pub tool: String,
    pub input: Value,
    pub summary: String,
    pub tool_use_id: Option<String>,
}

/// An API retry in progress, for the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub attempt: u64,
    pub limit: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Transcript {
    items: Vec<Item>,
    revs: Vec<u64>,
    next_rev: u64,
    tools: HashMap<String, usize>,
    pub last_seq: Seq,
    pub state: Option<SessionState>,
    pub state_reason: Option<String>,
    pub cost_usd: f64,
    pub tokens: u64,
    pub retry: Option<Retry>,
    /// When the running turn started (for the elapsed time).
    pub turn_started: Option<OffsetDateTime>,
    /// Tokens of the running turn so far, from its model responses (live, before the
    /// turn's result brings the exact figures).
    pub turn_tokens: u64,
    pub model: Option<String>,
    /// Permission requests not answered yet, oldest first.
    pub permissions: Vec<PendingPermission>,
    /// Follow-ups held behind the running turn (id, text), oldest first: shown as queued
    /// until the agent takes them, and withdrawable until then.
    pub queued: Vec<(String, String)>,
    /// Ports the session serves and where this machine reaches them (port, url).
    pub previews: Vec<(u16, String)>,
}

impl Transcript {
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    pub fn rev(&self, i: usize) -> u64 {
        self.revs.get(i).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Index of the newest tool item.
    pub fn last_tool(&self) -> Option<usize> {
        self.items.iter().rposition(|i| matches!(i, Item::Tool(_)))
    }

    /// Fold one event in, by value (a session of 100 000 events is folded at attach, so
    /// nothing is copied that can be moved). Events at or below the last seq are ignored
    /// (a re-subscription after a reconnect may repeat them).
    pub fn apply(&mut self, ev: Event) {
        if ev.seq <= self.last_seq && self.last_seq != Seq(0) {
            return;
        }
        self.last_seq = ev.seq;
        // Only the events whose time is shown need it parsed.
        let timed = matches!(
            ev.body,
            EventBody::ToolCall { .. } | EventBody::ToolResult { .. } | EventBody::Status { .. }
        );
        let ts = if timed {
            OffsetDateTime::parse(&ev.ts, &time::format_description::well_known::Rfc3339).ok()
        } else {
            None
        };
        if !matches!(ev.body, EventBody::ApiRetry { .. }) {
            self.retry = None;
        }
        match ev.body {
            EventBody::Status { state, reason } => {
                self.state = Some(state);
                self.state_reason = reason.clone();
                if state == SessionState::Running {
                    self.turn_started = ts;
                }
                let notable = matches!(
                    state,
                    SessionState::Failed | SessionState::Exited | SessionState::Interrupted
                );
                if notable {
                    self.end_unanswered_tools();
                }
                if notable {
                    let level = if state == SessionState::Failed {
                        Level::Error
                    } else {
                        Level::Info
                    };
                    let text = match reason {
                        Some(r) => format!("session {}: {r}", state.as_str()),
                        None => format!("session {}", state.as_str()),
                    };
                    self.push(Item::Notice { level, text });
                }
            }
            EventBody::UserMessage { text } => self.push(Item::User(text)),
            EventBody::MessageQueued { id, text } => self.queued.push((id, text)),
            EventBody::MessageDequeued { id, .. } => self.queued.retain(|(q, _)| *q != id),
            EventBody::AssistantDelta { text } => match self.items.last_mut() {
                Some(Item::Assistant {
                    text: t,
                    streaming: true,
                }) => {
                    t.push_str(&text);
                    self.touch_last();
                }
                _ => self.push(Item::Assistant {
                    text,
                    streaming: true,
                }),
            },
            EventBody::AssistantText { text } => match self.items.last_mut() {
                Some(Item::Assistant { text: t, streaming }) if *streaming => {
                    *t = text;
                    *streaming = false;
                    self.touch_last();
                }
                _ => self.push(Item::Assistant {
                    text,
                    streaming: false,
                }),
            },
            EventBody::Thinking { text } => self.push(Item::Thinking(text)),
            EventBody::ToolCall { id, name, input } => {
                self.tools.insert(id.clone(), self.items.len());
                self.push(Item::Tool(Box::new(ToolItem {
                    id,
                    name,
                    input,
                    edited: false,
                    result: None,
                    started: ts,
                    finished: None,
                    progress: None,
                    ended_unanswered: false,
                })));
            }
            EventBody::ToolProgress {
                tool_use_id,
                elapsed_secs,
                lines,
                tail,
                ..
            } => {
                if let Some(&i) = self.tools.get(&tool_use_id)
                    && let Some(Item::Tool(t)) = self.items.get_mut(i)
                    && t.result.is_none()
                {
                    t.progress = Some(ToolProgress {
                        elapsed_secs,
                        lines,
                        tail,
                    });
                    self.bump(i);
                }
            }
            EventBody::ToolResult {
                tool_use_id,
                is_error,
                content,
                output,
            } => {
                if let Some(&i) = self.tools.get(&tool_use_id)
                    && let Some(Item::Tool(t)) = self.items.get_mut(i)
                {
                    t.result = Some(ToolResult {
                        is_error,
                        content,
                        output,
                    });
                    t.finished = ts;
                    self.bump(i);
                }
            }
            EventBody::TurnResult {
                is_error,
                interrupted,
                result,
                cost_usd,
                input_tokens,
                output_tokens,
                duration_ms,
                ..
            } => {
                self.cost_usd += cost_usd;
                self.tokens += input_tokens + output_tokens;
                self.turn_started = None;
                self.turn_tokens = 0;
                self.end_unanswered_tools();
                self.push(Item::Turn(TurnSummary {
                    is_error,
                    interrupted,
                    result,
                    cost_usd,
                    input_tokens,
                    output_tokens,
                    duration_ms,
                }));
            }
            EventBody::ApiRetry {
                attempt,
                limit,
                http_status,
                error,
                ..
            } => {
                self.retry = Some(Retry {
                    attempt,
                    limit,
                    status: http_status,
                    error,
                });
            }
            EventBody::AgentInit { model, .. } => self.model = Some(model),
            EventBody::Error { message } => self.push(Item::Notice {
                level: Level::Error,
                text: message,
            }),
            EventBody::GitOperation {
                operation,
                ok,
                detail,
            } => self.push(Item::Notice {
                level: if ok { Level::Info } else { Level::Error },
                text: format!("git {operation}: {detail}"),
            }),
            EventBody::PrCreated { url, number, .. } => self.push(Item::Notice {
                level: Level::Info,
                text: format!("pull request #{number}: {url}"),
            }),
            EventBody::PermissionRequest {
                request_id,
                tool,
                input,
                summary,
                tool_use_id,
            } => {
                self.push(Item::Notice {
                    level: Level::Warn,
                    text: format!("? {tool} asks permission to {summary}"),
                });
                self.permissions.push(PendingPermission {
                    request_id,
                    tool,
                    input,
                    summary,
                    tool_use_id,
                });
            }
            EventBody::PermissionResolved {
                request_id,
                decision,
                message,
                input,
            } => {
                let asked = self
                    .permissions
                    .iter()
                    .find(|p| p.request_id == request_id)
                    .and_then(|p| p.tool_use_id.clone());
                self.permissions.retain(|p| p.request_id != request_id);
                // An edited command: the tool call shows what runs, marked as edited.
                let mut edited = String::new();
                if let Some(run) = input {
                    if let Some(c) = run["command"].as_str() {
                        edited = format!(" (edited: runs `{c}`)");
                    }
                    if let Some(id) = asked {
                        self.edit_tool_input(&id, run);
                    }
                }
                let text = match message {
                    Some(m) => format!("permission {decision}{edited}: {m}"),
                    None => format!("permission {decision}{edited}"),
                };
                self.push(Item::Notice {
                    level: Level::Info,
                    text,
                });
            }
            EventBody::NetworkDenied { host, port } => self.push(Item::Notice {
                level: Level::Warn,
                text: format!(
                    "network: a connection to {host}:{port} was refused (not on the allow-list)"
                ),
            }),
            EventBody::TurnUsage {
                input_tokens,
                output_tokens,
            } => self.turn_tokens += input_tokens + output_tokens,
            EventBody::Preview { port, url } => {
                self.previews.retain(|(p, _)| *p != port);
                self.previews.push((port, url.clone()));
                self.push(Item::Notice {
                    level: Level::Info,
                    text: format!("preview: port {port} is at {url}"),
                });
            }
            EventBody::Sandbox { .. } | EventBody::AgentRaw {} | EventBody::Unknown => {}
        }
    }

    /// The tool call `id` runs this input instead of the one it asked for (the user edited
    /// it when allowing it): shown as what runs, marked as edited.
    fn edit_tool_input(&mut self, id: &str, input: Value) {
        let found = self.tools.get(id).copied();
        if let Some(i) = found {
            if let Some(Item::Tool(t)) = self.items.get_mut(i) {
                t.input = input;
                t.edited = true;
            }
            self.bump(i);
        }
    }

    /// A notice of this client's own (a call the daemon refused), shown in the
    /// conversation where it wraps and stays, unlike a toast; it is not in the store.
    pub fn local_notice(&mut self, level: Level, text: String) {
        self.push(Item::Notice { level, text });
    }

    fn push(&mut self, item: Item) {
        self.items.push(item);
        self.next_rev += 1;
        self.revs.push(self.next_rev);
    }

    fn bump(&mut self, i: usize) {
        self.next_rev += 1;
        if let Some(r) = self.revs.get_mut(i) {
            *r = self.next_rev;
        }
    }

    /// Calls still without a result when their turn or agent ended will never get one:
    /// their rows stop saying "running".
    fn end_unanswered_tools(&mut self) {
        let open: Vec<usize> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Item::Tool(t) if t.result.is_none() && !t.ended_unanswered => Some(i),
                _ => None,
            })
            .collect();
        for i in open {
            if let Some(Item::Tool(t)) = self.items.get_mut(i) {
                t.ended_unanswered = true;
                t.progress = None;
            }
            self.bump(i);
        }
    }

    fn touch_last(&mut self) {
        if let Some(i) = self.items.len().checked_sub(1) {
            self.bump(i);
        }
    }
}

impl ToolItem {
    /// "exit 1 · 2.1s", "+3 −1", "12 lines": the outcome shown on the tool's line.
    pub fn outcome(&self) -> String {
        if let Some(r) = &self.result
            && r.is_error
            && harvest_protocol::event::is_cli_rejection(&r.content)
        {
            return "cancelled".into();
        }
        let Some(r) = &self.result else {
            if self.ended_unanswered {
                return "ended without a result".into();
            }
            // As Claude Code shows a running command: how long, and how much it printed.
            return match &self.progress {
                Some(p) => format!(
                    "running… ({} s · {} line{})",
                    p.elapsed_secs,
                    p.lines,
                    if p.lines == 1 { "" } else { "s" }
                ),
                None => "running…".into(),
            };
        };
        let mut parts = Vec::new();
        match &r.output {
            Some(ToolOutput::Bash {
                exit_code,
                interrupted,
                ..
            }) => {
                if *interrupted {
                    parts.push("interrupted".to_owned());
                } else if let Some(c) = exit_code {
                    parts.push(format!("exit {c}"));
                }
            }
            Some(ToolOutput::Patch {
                hunks,
                operation,
                content,
                ..
            }) => {
                let (add, del) = patch_counts(hunks);
                let add = if operation == "create" {
                    content.as_deref().map(|c| c.lines().count()).unwrap_or(add)
                } else {
                    add
                };
                parts.push(format!("+{add} −{del}"));
            }
            Some(ToolOutput::Read { num_lines, .. }) => parts.push(format!("{num_lines} lines")),
            _ if r.is_error => parts.push("error".into()),
            _ => {}
        }
        if r.is_error && !matches!(r.output, Some(ToolOutput::Bash { .. })) && parts.is_empty() {
            parts.push("error".into());
        }
        if let (Some(s), Some(f)) = (self.started, self.finished) {
            let secs = (f - s).as_seconds_f64();
            if secs >= 0.05 {
                parts.push(format!("{secs:.1}s"));
            }
        }
        parts.join(" · ")
    }

    /// The one-line summary of the call: the command, the file, the pattern.
    pub fn summary(&self) -> String {
        crate::format::tool_summary(&self.name, &self.input)
    }
}

pub fn patch_counts(hunks: &[harvest_protocol::event::PatchHunk]) -> (usize, usize) {
    hunks
        .iter()
        .flat_map(|h| &h.lines)
        .fold((0, 0), |(a, d), l| match l.as_bytes().first() {
            Some(b'+') => (a + 1, d),
            Some(b'-') => (a, d + 1),
            _ => (a, d),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use harvest_protocol::SessionId;
    use serde_json::json;

    fn ev(seq: u64, body: EventBody) -> Event {
        Event {
            seq: Seq(seq),
            ts: format!("2026-11-23T10:00:{:02}Z", seq.min(59)),
            session: SessionId::from("s"),
            body,
            raw: None,
        }
    }

    #[test]
    fn deltas_stream_into_one_item_that_the_full_text_completes() {
        let mut t = Transcript::default();
        t.apply(ev(1, EventBody::AssistantDelta { text: "Hel".into() }));
        t.apply(ev(2, EventBody::AssistantDelta { text: "lo".into() }));
        assert_eq!(
            t.items(),
            &[Item::Assistant {
                text: "Hello".into(),
                streaming: true
            }]
        );
        let r = t.rev(0);
        t.apply(ev(
            3,
            EventBody::AssistantText {
                text: "Hello.".into(),
            },
        ));
        assert_eq!(
            t.items(),
            &[Item::Assistant {
                text: "Hello.".into(),
                streaming: false
            }]
        );
        assert!(t.rev(0) > r, "a change bumps the revision");
    }

    #[test]
    fn a_result_joins_its_call_and_repeats_are_ignored() {
        let mut t = Transcript::default();
        let call = ev(
            1,
            EventBody::ToolCall {
                id: "t1".into(),
                name: "Bash".into(),
                input: json!({"command": "ls"}),
            },
        );
        t.apply(call.clone());
        t.apply(call);
        t.apply(ev(
            3,
            EventBody::ToolResult {
                tool_use_id: "t1".into(),
                is_error: true,
                content: "Exit code 2".into(),
                output: Some(ToolOutput::Bash {
                    stdout: "x".into(),
                    stderr: String::new(),
                    interrupted: false,
                    exit_code: Some(2),
                    persisted_output_path: None,
                }),
            },
        ));
        assert_eq!(t.len(), 1);
        let Item::Tool(tool) = &t.items()[0] else {
            panic!()
        };
        assert_eq!(tool.outcome(), "exit 2 · 2.0s");
        assert_eq!(tool.summary(), "ls");
    }
}
