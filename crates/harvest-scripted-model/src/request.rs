//! Reading a Messages API request the way the step logic needs it: the user's prompt, the
//! tool results that came after it, and the session's working directory.

use serde_json::Value;

/// A request as the server received it, for tests to assert on.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl RecordedRequest {
    /// The user prompt, as the step logic saw it.
    pub fn prompt(&self) -> Option<String> {
        Conversation::read(&self.body).prompt
    }

    /// How many `tool_result` blocks follow the prompt: what picks the step.
    pub fn tool_results_after_prompt(&self) -> usize {
        Conversation::read(&self.body).tool_results_after_prompt
    }

    /// The session's working directory as the request states it (what `{cwd}` becomes).
    pub fn cwd(&self) -> Option<String> {
        Conversation::read(&self.body).cwd
    }

    /// Every text of every message (text blocks, tool results, the `system`-role
    /// environment message; not the top-level system prompt), one per line: to check that
    /// a follow-up request carried the earlier turns.
    pub fn all_text(&self) -> String {
        let mut out = String::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            for text in texts(&m["content"]) {
                out.push_str(text);
                out.push('\n');
            }
        }
        out
    }
}

/// What the step logic reads from a request.
#[derive(Debug, Default, PartialEq)]
pub struct Conversation {
    pub prompt: Option<String>,
    pub tool_results_after_prompt: usize,
    pub cwd: Option<String>,
}

impl Conversation {
    pub fn read(body: &Value) -> Conversation {
        let messages: Vec<&Value> = body["messages"].as_array().into_iter().flatten().collect();
        // The prompt: the last user text that is neither a system reminder nor an
        // interrupt marker. After an interrupt the CLI merges tool results, the marker and
        // the next prompt into one message, so look at blocks, not whole messages.
        let mut prompt = None;
        let mut at = (0, 0);
        for (mi, m) in messages.iter().enumerate() {
            if m["role"] != "user" {
                continue;
            }
            let texts = blocks(&m["content"])
                .enumerate()
                .filter(|(_, b)| b["type"] == "text")
                .map(|(bi, b)| (bi, b["text"].as_str().unwrap_or("").to_owned()));
            for (bi, text) in texts {
                let t = text.trim_start();
                if t.starts_with("<system-reminder>") || t.starts_with("[Request interrupted") {
                    continue;
                }
                prompt = Some(text.clone());
                at = (mi, bi);
            }
        }
        let mut tool_results = 0;
        if prompt.is_some() {
            for (mi, m) in messages.iter().enumerate().skip(at.0) {
                for (bi, b) in blocks(&m["content"]).enumerate() {
                    if (mi, bi) > at && b["type"] == "tool_result" {
                        tool_results += 1;
                    }
                }
            }
        }
        Conversation {
            prompt,
            tool_results_after_prompt: tool_results,
            cwd: find_cwd(body),
        }
    }
}

/// CLI 2.1.330 states it as " - Primary working directory: /path" in a `"role": "system"`
/// message of `messages` (content an array of text blocks in the first request, a plain
/// string in later ones). The top-level system prompt is searched too, for other versions.
fn find_cwd(body: &Value) -> Option<String> {
    // Only what the CLI itself wrote: user prompts and tool results may mention any path.
    let system_messages = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "system")
        .flat_map(|m| texts(&m["content"]));
    let sources: Vec<&str> = system_messages.chain(texts(&body["system"])).collect();
    ["Primary working directory: ", "working directory: "]
        .iter()
        .find_map(|mark| {
            sources.iter().find_map(|text| {
                let at = text.find(mark)? + mark.len();
                let line = text[at..].lines().next().unwrap_or("").trim();
                (!line.is_empty()).then(|| line.to_owned())
            })
        })
}

/// The blocks of a message's content. A plain-string content (the CLI sends one for a
/// prompt after `--resume`) is one text block.
fn blocks(content: &Value) -> Box<dyn Iterator<Item = std::borrow::Cow<'_, Value>> + '_> {
    match content {
        Value::Array(items) => Box::new(items.iter().map(std::borrow::Cow::Borrowed)),
        Value::String(s) => Box::new(std::iter::once(std::borrow::Cow::Owned(
            serde_json::json!({"type": "text", "text": s}),
        ))),
        _ => Box::new(std::iter::empty()),
    }
}

/// The texts of a content value: a string, or text blocks (and tool_result contents).
fn texts(content: &Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match content {
        Value::String(s) => Box::new(std::iter::once(s.as_str())),
        Value::Array(items) => Box::new(items.iter().flat_map(|b| {
            let own = b["text"].as_str().into_iter();
            let nested: Box<dyn Iterator<Item = &str>> = match &b["content"] {
                Value::Null => Box::new(std::iter::empty()),
                c => texts(c),
            };
            own.chain(nested)
        })),
        _ => Box::new(std::iter::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Shaped like a request of the real CLI (2.1.330); the captured bodies themselves are
    /// exercised in tests/captured.rs.
    fn captured(extra: Vec<Value>) -> Value {
        let mut messages = vec![
            json!({"role":"user","content":[
                {"type":"text","text":"<system-reminder>\nAttribution for git commits…\n</system-reminder>"},
                {"type":"text","text":"fix the greeting"}]}),
            json!({"role":"system","content":[{"type":"text","text":"# Environment\nYou have been invoked in the following environment: \n - Primary working directory: /tmp/ws\n - Is a git repository: false\n"}]}),
        ];
        messages.extend(extra);
        json!({"model":"claude-opus-5-5","stream":true,"messages":messages})
    }

    #[test]
    fn prompt_and_cwd_of_a_first_request() {
        let c = Conversation::read(&captured(vec![]));
        assert_eq!(c.prompt.as_deref(), Some("fix the greeting"));
        assert_eq!(c.tool_results_after_prompt, 0);
        assert_eq!(c.cwd.as_deref(), Some("/tmp/ws"));
    }

    #[test]
    fn tool_results_after_the_prompt_pick_the_step() {
        let c = Conversation::read(&captured(vec![
            json!({"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Read","input":{}}]}),
            json!({"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"x"}]}),
            json!({"role":"assistant","content":[{"type":"tool_use","id":"t2","name":"Bash","input":{}}]}),
            json!({"role":"user","content":[{"type":"tool_result","tool_use_id":"t2","content":"y"}]}),
        ]));
        assert_eq!(c.prompt.as_deref(), Some("fix the greeting"));
        assert_eq!(c.tool_results_after_prompt, 2);
    }

    #[test]
    fn a_plain_string_prompt_after_resume_is_the_prompt() {
        let c = Conversation::read(&captured(vec![
            json!({"role":"assistant","content":[{"type":"text","text":"Done."}]}),
            json!({"role":"user","content":"a follow-up after --resume"}),
        ]));
        assert_eq!(c.prompt.as_deref(), Some("a follow-up after --resume"));
        assert_eq!(c.tool_results_after_prompt, 0);
    }

    #[test]
    fn after_an_interrupt_the_merged_message_starts_a_new_turn() {
        let c = Conversation::read(&captured(vec![
            json!({"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{}}]}),
            json!({"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t1","content":"interrupted"},
                {"type":"text","text":"[Request interrupted by user for tool use]"},
                {"type":"text","text":"are you still there"}]}),
        ]));
        assert_eq!(c.prompt.as_deref(), Some("are you still there"));
        assert_eq!(c.tool_results_after_prompt, 0);
    }
}
