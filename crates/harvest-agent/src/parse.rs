//! From the CLI's stdout lines to Harvest events.
//!
//! Parsing is lenient, as the CLI adds fields freely: unknown keys are ignored, unknown
//! line types become `agent_raw` (stored and passed on, never dropped), and a line that is
//! not JSON at all becomes an `error` event carrying the text. Known lines that carry
//! nothing a client renders (stream framing, status pings, control acks) produce no event;
//! they stay in the durable log.

mod tool_result;

use harvest_protocol::EventBody;
use serde_json::Value;
use std::collections::HashMap;

/// Parser state for one CLI process: the names of tools by call id (a result names only
/// the call id) and the process's running cost total, from which each turn's own cost is
/// derived. Start a new parser for each new process (`--resume` restarts the totals).
///
/// It is small and serialisable: the daemon commits it with the events it produced, so a
/// restarted daemon restores it from the store instead of re-reading the log. Names are
/// kept only for calls whose result has not arrived yet.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamParser {
    tool_names: HashMap<String, String>,
    total_cost_usd: f64,
    /// The input tokens of the model response streaming now (from its `message_start`).
    #[serde(default)]
    response_input_tokens: u64,
    /// MCP servers already reported as failed to start.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    failed_mcp: std::collections::BTreeSet<String>,
}

/// One parsed line: the events it yields and the line itself as JSON (kept as `raw`).
#[derive(Debug)]
pub struct Parsed {
    pub events: Vec<EventBody>,
    pub raw: Value,
    /// What the CLI said of its own state on this line (`system/session_state_changed`):
    /// the source of truth for whether a turn runs, since the CLI may fold a message that
    /// arrives mid-turn into the turn under way (two messages, one result).
    pub agent_state: Option<AgentState>,
}

/// The CLI's own account of whether it is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Running,
    Idle,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restore the running cost total after re-adopting a process mid-life.
    pub fn with_total_cost(total_cost_usd: f64) -> Self {
        StreamParser {
            total_cost_usd,
            ..Self::default()
        }
    }

    pub fn total_cost_usd(&self) -> f64 {
        self.total_cost_usd
    }

    pub fn parse_line(&mut self, line: &str) -> Parsed {
        let line = line.trim_end_matches(['\r', '\n']);
        let raw: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                return Parsed {
                    events: vec![EventBody::AgentRaw {}],
                    raw: other,
                    agent_state: None,
                };
            }
            // The CLI's own diagnostics after an interrupt (`[ede_diagnostic] …`, observed
            // on 2.1.330): its business, not the user's; kept in the daemon's log.
            Err(_) if line.starts_with("[ede_diagnostic]") => {
                tracing::debug!(line, "the CLI's diagnostic line");
                return Parsed {
                    events: vec![EventBody::AgentRaw {}],
                    raw: Value::String(line.to_owned()),
                    agent_state: None,
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent printed a line that is not JSON");
                return Parsed {
                    events: vec![EventBody::Error {
                        message: format!("the agent printed a line that is not JSON: {line}"),
                    }],
                    raw: Value::String(line.to_owned()),
                    agent_state: None,
                };
            }
        };
        let events = self.events_of(&raw);
        let agent_state = (str_at(&raw, "type") == "system"
            && str_at(&raw, "subtype") == "session_state_changed")
            .then(|| match str_at(&raw, "state") {
                "idle" => Some(AgentState::Idle),
                "running" => Some(AgentState::Running),
                _ => None,
            })
            .flatten();
        Parsed {
            events,
            raw,
            agent_state,
        }
    }

    fn events_of(&mut self, v: &Value) -> Vec<EventBody> {
        let kind = str_at(v, "type");
        let subtype = str_at(v, "subtype");
        match (kind, subtype) {
            ("system", "init") => {
                let mut out = vec![EventBody::AgentInit {
                    agent_session_id: str_at(v, "session_id").to_owned(),
                    model: str_at(v, "model").to_owned(),
                    cwd: str_at(v, "cwd").to_owned(),
                    tools: v["tools"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                }];
                // An MCP server that did not start is something the user must see (the
                // CLI only lists it in its init, every turn: said once per agent).
                for server in v["mcp_servers"].as_array().into_iter().flatten() {
                    let name = str_at(server, "name");
                    if str_at(server, "status") == "failed"
                        && self.failed_mcp.insert(name.to_owned())
                    {
                        out.push(EventBody::Error {
                            message: format!(
                                "the MCP server {name} failed to start; its tools are missing \
                                 from this session (check its command inside the sandbox)"
                            ),
                        });
                    }
                }
                out
            }
            ("system", "api_retry") => vec![EventBody::ApiRetry {
                attempt: v["attempt"].as_u64().unwrap_or(0),
                limit: v["max_retries"].as_u64().unwrap_or(0),
                http_status: v["error_status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok()),
                delay_ms: v["retry_delay_ms"].as_u64().unwrap_or(0),
                error: v["error"].as_str().map(str::to_owned),
            }],
            (
                "system",
                "status"
                | "session_state_changed"
                | "thinking_tokens"
                | "hook_started"
                | "hook_response",
            ) => Vec::new(),
            // Markers the session supervisor writes in place of lines it would not keep.
            ("harvest_line_too_long", _) => vec![EventBody::Error {
                message: format!(
                    "the agent printed a line of {} bytes, over the limit of {}; it was dropped",
                    v["bytes"], v["limit"]
                ),
            }],
            ("harvest_network_denied", _) => vec![EventBody::NetworkDenied {
                host: str_at(v, "host").to_owned(),
                port: v["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0),
            }],
            ("harvest_proxy_refused", _) => vec![EventBody::Error {
                message: format!(
                    "the model proxy refused {} {} from inside the sandbox: it forwards only the \
                     calls Claude Code makes, never the key's other powers",
                    str_at(v, "method"),
                    str_at(v, "path")
                ),
            }],
            ("harvest_proxy_quiet", _) => vec![EventBody::Error {
                message: "the model proxy refused more calls; further refusals are not reported"
                    .into(),
            }],
            ("harvest_budget_reached", _) => vec![EventBody::Error {
                message: format!(
                    "the session reached its budget: ${:.4} spent through the model proxy of \
                     ${:.4} left for this agent; the session is paused. Raise agent.max_budget_usd \
                     in harvest.toml, then send a message to go on",
                    v["spent_usd"].as_f64().unwrap_or(0.0),
                    v["allowance_usd"].as_f64().unwrap_or(0.0)
                ),
            }],
            ("harvest_torn_line", _) => vec![EventBody::Error {
                message: format!(
                    "the agent ended in the middle of a line ({} bytes without a newline were dropped)",
                    v["bytes"]
                ),
            }],
            ("assistant", _) => self.assistant(v),
            ("user", _) => self.user(v),
            ("result", _) => vec![self.result(v)],
            ("stream_event", _) => self.stream_event(v).into_iter().collect(),
            ("control_request", _) if str_at(&v["request"], "subtype") == "can_use_tool" => {
                let req = &v["request"];
                let tool = str_at(req, "tool_name").to_owned();
                let input = req["input"].clone();
                vec![EventBody::PermissionRequest {
                    request_id: str_at(v, "request_id").to_owned(),
                    summary: permission_summary(&tool, &input),
                    tool,
                    input,
                    tool_use_id: req["tool_use_id"].as_str().map(str::to_owned),
                }]
            }
            ("control_cancel_request", _) => vec![EventBody::PermissionResolved {
                request_id: str_at(v, "request_id").to_owned(),
                decision: "cancelled".into(),
                message: None,
                input: None,
            }],
            ("control_response", _) => Vec::new(),
            _ => vec![EventBody::AgentRaw {}],
        }
    }

    fn assistant(&mut self, v: &Value) -> Vec<EventBody> {
        let synthetic_error = v["is_api_error_message"].as_bool().unwrap_or(false);
        let mut out = Vec::new();
        for block in blocks(&v["message"]["content"]) {
            match str_at(block, "type") {
                "text" if synthetic_error => out.push(EventBody::Error {
                    message: str_at(block, "text").to_owned(),
                }),
                "text" => out.push(EventBody::AssistantText {
                    text: str_at(block, "text").to_owned(),
                }),
                "thinking" => out.push(EventBody::Thinking {
                    text: str_at(block, "thinking").to_owned(),
                }),
                "tool_use" => {
                    let id = str_at(block, "id").to_owned();
                    let name = str_at(block, "name").to_owned();
                    self.tool_names.insert(id.clone(), name.clone());
                    out.push(EventBody::ToolCall {
                        id,
                        name,
                        input: block["input"].clone(),
                    });
                }
                _ => {}
            }
        }
        if out.is_empty() {
            out.push(EventBody::AgentRaw {});
        }
        out
    }

    fn user(&mut self, v: &Value) -> Vec<EventBody> {
        let mut out = Vec::new();
        for block in blocks(&v["message"]["content"]) {
            if str_at(block, "type") != "tool_result" {
                // Interrupt markers ("[Request interrupted by user]"): the turn_result
                // that follows says the same, with its figures.
                continue;
            }
            let tool_use_id = str_at(block, "tool_use_id").to_owned();
            let is_error = block["is_error"].as_bool().unwrap_or(false);
            let name = self.tool_names.remove(&tool_use_id);
            let tool = name.as_deref();
            out.push(EventBody::ToolResult {
                output: tool_result::structured(tool, &v["tool_use_result"]),
                tool_use_id,
                is_error,
                content: text_of(&block["content"]),
            });
        }
        out
    }

    fn result(&mut self, v: &Value) -> EventBody {
        // total_cost_usd is the process's running total; this turn's cost is the growth.
        let total = v["total_cost_usd"].as_f64().unwrap_or(self.total_cost_usd);
        let cost_usd = (total - self.total_cost_usd).max(0.0);
        self.total_cost_usd = total;
        let subtype = str_at(v, "subtype").to_owned();
        let terminal_reason = v["terminal_reason"].as_str().map(str::to_owned);
        let interrupted = terminal_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("aborted"));
        let result = v["result"].as_str().map(str::to_owned).or_else(|| {
            v["errors"].as_array().map(|errs| {
                errs.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
        EventBody::TurnResult {
            is_error: v["is_error"].as_bool().unwrap_or(subtype != "success"),
            subtype,
            terminal_reason,
            interrupted,
            result,
            cost_usd,
            input_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
            duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
            num_turns: v["num_turns"].as_u64().unwrap_or(0),
        }
    }
}

/// What a permission request is about, readably: the command, the file and its change.
fn permission_summary(tool: &str, input: &Value) -> String {
    let s = |k: &str| input[k].as_str().unwrap_or("").to_owned();
    match tool {
        "Bash" => format!("run: {}", s("command")),
        "Write" => format!("write {}", s("file_path")),
        "Edit" | "MultiEdit" => format!(
            "edit {}: {:?} → {:?}",
            s("file_path"),
            s("old_string"),
            s("new_string")
        ),
        "WebFetch" => format!("fetch {}", s("url")),
        _ => format!("use {tool}: {input}"),
    }
}

/// Live text: `text_delta` fragments become `assistant_delta`; the complete block follows
/// as an `assistant` line. Other stream events are framing.
impl StreamParser {
    /// Text deltas, and each model response's tokens once it ends (`message_delta`).
    fn stream_event(&mut self, v: &Value) -> Option<EventBody> {
        let ev = &v["event"];
        match str_at(ev, "type") {
            "content_block_delta" if str_at(&ev["delta"], "type") == "text_delta" => {
                Some(EventBody::AssistantDelta {
                    text: str_at(&ev["delta"], "text").to_owned(),
                })
            }
            "message_start" => {
                let u = &ev["message"]["usage"];
                self.response_input_tokens = u["input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_read_input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
                None
            }
            "message_delta" => Some(EventBody::TurnUsage {
                input_tokens: std::mem::take(&mut self.response_input_tokens),
                output_tokens: ev["usage"]["output_tokens"].as_u64().unwrap_or(0),
            }),
            _ => None,
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn blocks(content: &Value) -> impl Iterator<Item = &Value> {
    content.as_array().into_iter().flatten()
}

/// Tool-result content is a string or a list of blocks; the text of either.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
