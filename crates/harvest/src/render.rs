//! Printing events for `run`, `logs` and `demo`: one JSON object per line, or a readable
//! stream for a person.

use harvest_protocol::event::ToolOutput;
use harvest_protocol::methods::NOTIFY_LAGGED;
use harvest_protocol::rpc::Notification;
use harvest_protocol::{Event, EventBody};
pub use harvest_tui::format::{age, tokens, tool_summary};
use std::io::Write;

pub struct Renderer {
    json: bool,
    /// Live text printed since the last complete block, so the block is not printed twice.
    streamed: String,
}

impl Renderer {
    pub fn new(json: bool) -> Self {
        Renderer {
            json,
            streamed: String::new(),
        }
    }

    /// Print a notification; return the event it carried, if any.
    pub fn notification(&mut self, note: &Notification) -> Option<Event> {
        if note.method == NOTIFY_LAGGED {
            if !self.json {
                eprintln!("(this terminal fell behind; catching up from the store)");
            }
            return None;
        }
        let raw = note.params.get("event")?;
        let event: Event = serde_json::from_value(raw.clone()).ok()?;
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{}", json_line(&raw.to_string()));
        } else {
            self.human(&mut out, &event);
        }
        let _ = out.flush();
        Some(event)
    }

    fn human(&mut self, out: &mut impl Write, event: &Event) {
        match &event.body {
            EventBody::AssistantDelta { text } => {
                let _ = write!(out, "{text}");
                self.streamed.push_str(text);
                return;
            }
            EventBody::AssistantText { text } => {
                if self.streamed.is_empty() {
                    let _ = writeln!(out, "{text}");
                } else {
                    let _ = writeln!(out);
                }
                self.streamed.clear();
                return;
            }
            _ => {}
        }
        if !self.streamed.is_empty() {
            let _ = writeln!(out);
            self.streamed.clear();
        }
        for line in describe(event) {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Print text the agent controls (a file of its sandbox): on a terminal, without anything
/// the terminal would act on; into a pipe, as it is.
pub fn print_agent_text(text: &str) {
    use std::io::IsTerminal;
    let mut out = std::io::stdout().lock();
    if std::io::stdout().is_terminal() {
        let _ = out.write_all(harvest_termsafe::text(text, harvest_termsafe::Sgr::Drop).as_bytes());
    } else {
        let _ = out.write_all(text.as_bytes());
    }
    let _ = out.flush();
}

/// A JSON line safe to print on a terminal. JSON escapes C0 controls already; C1 controls
/// and bidirectional overrides, which some terminals act on, are escaped here too (they
/// can only occur inside strings, where `\u` escapes mean the same).
pub fn json_line(line: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !line.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The human lines for one event.
pub fn describe(event: &Event) -> Vec<String> {
    match &event.body {
        EventBody::Status { state, reason } => vec![match reason {
            Some(r) => format!("· {} ({r})", state.as_str()),
            None => format!("· {}", state.as_str()),
        }],
        EventBody::UserMessage { text } => vec![format!("› {text}")],
        EventBody::MessageQueued { id, text } => {
            vec![format!("› {text}  (queued behind the running turn: {id})")]
        }
        EventBody::MessageDequeued {
            id,
            withdrawn: true,
        } => {
            vec![format!("· queued message {id} withdrawn")]
        }
        EventBody::MessageDequeued { .. } => vec![],
        EventBody::AssistantText { text } | EventBody::AssistantDelta { text } => {
            vec![text.clone()]
        }
        EventBody::Thinking { text } => vec![format!("∴ {}", first_line(text, 100))],
        EventBody::ToolCall { name, input, .. } => {
            vec![format!(
                "▸ {name}  {}",
                first_line(&tool_summary(name, input), 120)
            )]
        }
        EventBody::ToolResult {
            is_error,
            content,
            output,
            ..
        } => tool_result_lines(*is_error, content, output.as_ref()),
        // A running command, once a second: how long, how much, and what it printed last.
        EventBody::ToolProgress {
            elapsed_secs,
            lines,
            tail,
            ..
        } => vec![format!(
            "  ⋯ running {elapsed_secs} s · {lines} line{}{}",
            if *lines == 1 { "" } else { "s" },
            tail.last()
                .map(|l| format!(": {}", first_line(l, 120)))
                .unwrap_or_default()
        )],
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
            let what = if *interrupted {
                "turn interrupted"
            } else if *is_error {
                "turn failed"
            } else {
                "turn done"
            };
            let mut lines = vec![format!(
                "■ {what} · ${cost_usd:.4} · {} in / {} out · {:.1}s",
                tokens(*input_tokens),
                tokens(*output_tokens),
                *duration_ms as f64 / 1000.0
            )];
            if *is_error && let Some(r) = result {
                lines.push(format!("  {}", first_line(r, 200)));
            }
            lines
        }
        EventBody::ApiRetry {
            attempt,
            limit,
            http_status,
            delay_ms,
            error,
        } => vec![format!(
            "! API retry {attempt}/{limit}: {} {} (next try in {:.1}s)",
            http_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no response".into()),
            error.as_deref().unwrap_or(""),
            *delay_ms as f64 / 1000.0
        )],
        EventBody::AgentInit { model, .. } => vec![format!("· agent ready ({model})")],
        EventBody::PermissionRequest {
            request_id,
            tool,
            summary,
            ..
        } => vec![
            format!("? {tool} asks permission to {summary}"),
            format!(
                "  answer: harvest approve {} {request_id} --allow | --always | --deny",
                event.session
            ),
        ],
        EventBody::PermissionResolved {
            decision,
            message,
            input,
            ..
        } => {
            let edited = input
                .as_ref()
                .and_then(|i| i["command"].as_str())
                .map(|c| format!(" (edited: runs `{c}`)"))
                .unwrap_or_default();
            vec![match message {
                Some(m) => format!("· permission {decision}{edited}: {m}"),
                None => format!("· permission {decision}{edited}"),
            }]
        }
        EventBody::Sandbox { message } => vec![format!("· {message}")],
        EventBody::Preview { port, url } => vec![format!("· preview: port {port} is at {url}")],
        EventBody::Error { message } => vec![format!("✗ {message}")],
        EventBody::GitOperation {
            operation,
            ok,
            detail,
        } => vec![format!(
            "{} git {operation}: {detail}",
            if *ok { "·" } else { "✗" }
        )],
        EventBody::PrCreated { url, number, .. } => {
            vec![format!("· pull request #{number}: {url}")]
        }
        EventBody::NetworkDenied { host, port } => vec![format!(
            "⊘ network: a connection to {host}:{port} was refused (not on the allow-list)"
        )],
        EventBody::AgentRaw {} | EventBody::Unknown | EventBody::TurnUsage { .. } => Vec::new(),
    }
}

fn tool_result_lines(is_error: bool, content: &str, output: Option<&ToolOutput>) -> Vec<String> {
    const MAX: usize = 12;
    if is_error && harvest_protocol::event::is_cli_rejection(content) {
        return vec!["  ✗ cancelled (not run, or stopped)".into()];
    }
    let mut lines = Vec::new();
    match output {
        Some(ToolOutput::Bash {
            stdout, exit_code, ..
        }) => {
            lines.push(format!(
                "  {} exit {}",
                if is_error { "✗" } else { "✓" },
                exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "?".into())
            ));
            lines.extend(clip(stdout, MAX).into_iter().map(|l| format!("  │ {l}")));
        }
        Some(ToolOutput::Patch {
            file_path,
            hunks,
            operation,
            content,
            ..
        }) => {
            let (add, del) = hunks
                .iter()
                .flat_map(|h| &h.lines)
                .fold((0, 0), |(a, d), l| match l.chars().next() {
                    Some('+') => (a + 1, d),
                    Some('-') => (a, d + 1),
                    _ => (a, d),
                });
            let add = if operation == "create" {
                content.as_deref().map(|c| c.lines().count()).unwrap_or(0)
            } else {
                add
            };
            lines.push(format!("  ✓ {operation} {file_path}  +{add} −{del}"));
            for h in hunks {
                lines.push(format!(
                    "  @@ -{},{} +{},{} @@",
                    h.old_start, h.old_lines, h.new_start, h.new_lines
                ));
                lines.extend(h.lines.iter().take(MAX).map(|l| format!("  {l}")));
            }
        }
        Some(ToolOutput::Read {
            file_path,
            num_lines,
            ..
        }) => lines.push(format!("  ✓ read {num_lines} lines of {file_path}")),
        _ => {
            lines.push(format!(
                "  {} {}",
                if is_error { "✗" } else { "✓" },
                first_line(content, 160)
            ));
        }
    }
    lines
}

/// `harvest logs --full`: tool outputs whole.
static WHOLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn show_outputs_whole(whole: bool) {
    WHOLE.store(whole, std::sync::atomic::Ordering::Relaxed);
}

fn clip(text: &str, max: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().collect();
    if WHOLE.load(std::sync::atomic::Ordering::Relaxed) {
        return all.iter().map(|s| s.to_string()).collect();
    }
    let mut out: Vec<String> = all.iter().take(max).map(|s| s.to_string()).collect();
    if all.len() > max {
        out.push(format!(
            "… {} more lines (`harvest logs --full` prints them)",
            all.len() - max
        ));
    }
    out
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || s.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}
