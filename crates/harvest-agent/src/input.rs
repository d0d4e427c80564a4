//! Lines written to the CLI's stdin. An invalid JSON line is fatal to the CLI, so every
//! line is built by serde here, never by string formatting.

use serde_json::json;

/// A user message; sent while a turn runs it is queued by the CLI as the next turn.
pub fn user_message(text: &str) -> String {
    line(json!({
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": null,
        "session_id": "",
    }))
}

/// Interrupt the turn in progress: the CLI kills a running tool, emits an aborted
/// `result` within ~50 ms and stays alive for the next message.
pub fn interrupt(request_id: &str) -> String {
    line(json!({
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": "interrupt"},
    }))
}

/// The host's answer to a `can_use_tool` request. `Allow` must carry the input to run
/// (the original, or an edited one: the CLI runs what it is given).
pub enum PermissionAnswer<'a> {
    Allow { input: &'a serde_json::Value },
    Deny { message: &'a str },
}

pub fn permission_response(request_id: &str, answer: PermissionAnswer<'_>) -> String {
    let response = match answer {
        PermissionAnswer::Allow { input } => json!({"behavior": "allow", "updatedInput": input}),
        PermissionAnswer::Deny { message } => json!({"behavior": "deny", "message": message}),
    };
    line(json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    }))
}

fn line(v: serde_json::Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_single_line_json_even_with_newlines_in_text() {
        let l = user_message("a\nb \"q\"");
        assert!(l.ends_with('\n'));
        assert_eq!(l.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["message"]["content"], "a\nb \"q\"");
    }
}
