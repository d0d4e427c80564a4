//! Agent-controlled text, made safe for a terminal.
//!
//! Everything the agent controls (its text, tool inputs and outputs, file paths) may end
//! up on a user's terminal: `harvest run`, `harvest logs`, the terminal client, or any
//! tool that prints the daemon's events. A prompt-injected agent can use escape sequences
//! to set the window title, write the clipboard (OSC 52), clear the screen, move the
//! cursor to overwrite what the user reads, or (on some terminals) make it answer with
//! input. So before events leave the daemon, every string in them goes through
//! [`text`]: printable characters, newlines and tabs pass; colour and style (SGR,
//! `ESC [ … m`) pass only where the user may want them (command output); every other
//! control character and escape sequence, C1 controls included, is dropped. Bidirectional
//! overrides, which can make text read differently from what it is, are dropped too.

use harvest_protocol::EventBody;
use harvest_protocol::event::ToolOutput;
use std::borrow::Cow;

/// Whether colour and style sequences survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sgr {
    Keep,
    Drop,
}

/// The text without anything a terminal would act on (other than SGR when kept).
pub fn text(s: &str, sgr: Sgr) -> Cow<'_, str> {
    if s.chars().all(is_plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        // 7-bit introducers (ESC + a character) and their 8-bit C1 forms alike.
        let kind = match c {
            '\u{1b}' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    Intro::Csi
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    Intro::Str
                }
                Some(_) => {
                    chars.next();
                    continue;
                }
                None => continue,
            },
            '\u{9b}' => Intro::Csi,
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => Intro::Str,
            c if is_plain(c) => {
                out.push(c);
                continue;
            }
            _ => continue,
        };
        match kind {
            Intro::Csi => {
                let mut params = String::new();
                let mut final_byte = None;
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        final_byte = Some(c);
                        break;
                    }
                    params.push(c);
                    if params.len() > 64 {
                        break;
                    }
                }
                let params_ok = params
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ';' || c == ':');
                if sgr == Sgr::Keep && final_byte == Some('m') && params_ok {
                    out.push_str("\u{1b}[");
                    out.push_str(&params);
                    out.push('m');
                }
            }
            // OSC, DCS, SOS, PM, APC: a string up to BEL or ST, all dropped.
            Intro::Str => {
                let mut prev = '\0';
                for c in chars.by_ref() {
                    if c == '\u{7}' || (prev == '\u{1b}' && c == '\\') || c == '\u{9c}' {
                        break;
                    }
                    prev = c;
                }
            }
        }
    }
    Cow::Owned(out)
}

enum Intro {
    Csi,
    Str,
}

fn is_plain(c: char) -> bool {
    match c {
        '\n' | '\t' => true,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => false,
        // Bidirectional embeddings, overrides and isolates.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => false,
        _ => true,
    }
}

fn fix(s: &mut String, sgr: Sgr) {
    if let Cow::Owned(clean) = text(s, sgr) {
        *s = clean;
    }
}

fn fix_opt(s: &mut Option<String>) {
    if let Some(s) = s.as_mut() {
        fix(s, Sgr::Drop);
    }
}

/// Every string in a JSON value (tool inputs: commands, paths, file contents).
pub fn value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => fix(s, Sgr::Drop),
        serde_json::Value::Array(a) => a.iter_mut().for_each(value),
        serde_json::Value::Object(o) => o.values_mut().for_each(value),
        _ => {}
    }
}

/// Every agent-controlled string of an event. Command output keeps its colours; nothing
/// else does.
pub fn event(body: &mut EventBody) {
    match body {
        EventBody::Status { reason, .. } => fix_opt(reason),
        EventBody::UserMessage { text }
        | EventBody::MessageQueued { text, .. }
        | EventBody::AssistantText { text }
        | EventBody::AssistantDelta { text }
        | EventBody::Thinking { text } => fix(text, Sgr::Drop),
        EventBody::ToolCall { id, name, input } => {
            fix(id, Sgr::Drop);
            fix(name, Sgr::Drop);
            value(input);
        }
        EventBody::ToolResult {
            tool_use_id,
            content,
            output,
            ..
        } => {
            fix(tool_use_id, Sgr::Drop);
            fix(content, Sgr::Keep);
            match output {
                Some(ToolOutput::Bash {
                    stdout,
                    stderr,
                    persisted_output_path,
                    ..
                }) => {
                    fix(stdout, Sgr::Keep);
                    fix(stderr, Sgr::Keep);
                    fix_opt(persisted_output_path);
                }
                Some(ToolOutput::Patch {
                    file_path,
                    operation,
                    hunks,
                    content,
                }) => {
                    fix(file_path, Sgr::Drop);
                    fix(operation, Sgr::Drop);
                    for h in hunks {
                        h.lines.iter_mut().for_each(|l| fix(l, Sgr::Drop));
                    }
                    fix_opt(content);
                }
                Some(ToolOutput::Read {
                    file_path, content, ..
                }) => {
                    fix(file_path, Sgr::Drop);
                    fix(content, Sgr::Drop);
                }
                Some(ToolOutput::Other { value: v }) => value(v),
                None => {}
            }
        }
        EventBody::ToolProgress {
            tool_use_id, tail, ..
        } => {
            fix(tool_use_id, Sgr::Drop);
            tail.iter_mut().for_each(|l| fix(l, Sgr::Drop));
        }
        EventBody::TurnResult {
            subtype,
            terminal_reason,
            result,
            ..
        } => {
            fix(subtype, Sgr::Drop);
            fix_opt(terminal_reason);
            fix_opt(result);
        }
        EventBody::ApiRetry { error, .. } => fix_opt(error),
        EventBody::MessageDequeued { id, .. } => fix(id, Sgr::Drop),
        EventBody::Preview { url, .. } => fix(url, Sgr::Drop),
        EventBody::AgentInit {
            agent_session_id,
            model,
            cwd,
            tools,
        } => {
            fix(agent_session_id, Sgr::Drop);
            fix(model, Sgr::Drop);
            fix(cwd, Sgr::Drop);
            tools.iter_mut().for_each(|t| fix(t, Sgr::Drop));
        }
        EventBody::PermissionRequest {
            request_id,
            tool,
            input,
            summary,
            tool_use_id,
        } => {
            fix(request_id, Sgr::Drop);
            fix(tool, Sgr::Drop);
            value(input);
            fix(summary, Sgr::Drop);
            fix_opt(tool_use_id);
        }
        EventBody::PermissionResolved {
            request_id,
            decision,
            message,
            input,
        } => {
            fix(request_id, Sgr::Drop);
            fix(decision, Sgr::Drop);
            fix_opt(message);
            if let Some(v) = input {
                value(v);
            }
        }
        EventBody::Sandbox { message } | EventBody::Error { message } => fix(message, Sgr::Drop),
        EventBody::NetworkDenied { host, .. } => fix(host, Sgr::Drop),
        EventBody::GitOperation {
            operation, detail, ..
        } => {
            fix(operation, Sgr::Drop);
            fix(detail, Sgr::Drop);
        }
        EventBody::PrCreated { url, branch, .. } => {
            fix(url, Sgr::Drop);
            fix(branch, Sgr::Drop);
        }
        EventBody::AgentRaw {} | EventBody::Unknown | EventBody::TurnUsage { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_untouched() {
        assert!(matches!(
            text("héllo\n\tworld", Sgr::Drop),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn title_clipboard_and_clear_screen_are_dropped() {
        let hostile =
            "a\u{1b}]0;owned\u{7}b\u{1b}]52;c;ZXZpbA==\u{1b}\\c\u{1b}[2J\u{1b}[Hd\u{9b}2Je\r\u{8}f";
        assert_eq!(text(hostile, Sgr::Keep), "abcdef");
    }

    #[test]
    fn colours_survive_only_where_kept() {
        let coloured = "\u{1b}[1;31mred\u{1b}[0m";
        assert_eq!(text(coloured, Sgr::Keep), coloured);
        assert_eq!(text(coloured, Sgr::Drop), "red");
        // A CSI that is not SGR (cursor movement) never survives.
        assert_eq!(text("x\u{1b}[10Ay", Sgr::Keep), "xy");
        assert_eq!(text("x\u{1b}[?1049hy", Sgr::Keep), "xy");
    }

    #[test]
    fn bidi_overrides_are_dropped() {
        assert_eq!(text("ab\u{202e}cd\u{2066}e", Sgr::Drop), "abcde");
    }

    #[test]
    fn every_string_of_an_event_is_cleaned() {
        let mut ev = EventBody::ToolCall {
            id: "t\u{1b}]0;x\u{7}1".into(),
            name: "Write".into(),
            input: serde_json::json!({"file_path": "/w/\u{1b}]52;c;QQ==\u{7}f", "content": ["\u{1b}[2J"]}),
        };
        event(&mut ev);
        assert_eq!(
            ev,
            EventBody::ToolCall {
                id: "t1".into(),
                name: "Write".into(),
                input: serde_json::json!({"file_path": "/w/f", "content": [""]}),
            }
        );
    }
}
