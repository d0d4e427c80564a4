//! A step as Messages API output: the SSE event sequence of a streaming reply, or one
//! message object. Text streams as several deltas so clients see live text; tool input as
//! `input_json_delta` fragments.

use crate::script::{Step, ToolUse, Usage};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tool-use ids must be unique within a conversation; a process-wide counter is.
static NEXT_TOOL_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

const DEFAULT_USAGE: Usage = Usage {
    input_tokens: 100,
    output_tokens: 20,
};

/// One content block of the reply.
#[derive(Debug, Clone)]
pub enum Block {
    Thinking(String),
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// The blocks a step answers with, `{cwd}` replaced in tool inputs.
pub fn blocks(step: &Step, cwd: Option<&str>) -> Vec<Block> {
    let mut out = Vec::new();
    if let Some(t) = &step.thinking {
        out.push(Block::Thinking(t.clone()));
    }
    if let Some(t) = &step.text {
        out.push(Block::Text(t.clone()));
    }
    for ToolUse { name, input } in step.tool_calls() {
        out.push(Block::ToolUse {
            id: format!(
                "toolu_scripted_{:04}",
                NEXT_TOOL_ID.fetch_add(1, Ordering::Relaxed)
            ),
            name: name.clone(),
            input: substitute(input, cwd.unwrap_or(".")),
        });
    }
    if out.is_empty() {
        out.push(Block::Text(String::new()));
    }
    out
}

pub fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// The SSE events `(name, data)` of a streaming reply.
pub fn events(model: &str, blocks: &[Block], usage: Option<Usage>) -> Vec<(&'static str, Value)> {
    let usage = usage.unwrap_or(DEFAULT_USAGE);
    let mut ev = vec![(
        "message_start",
        json!({"type":"message_start","message":{
            "id": message_id(), "type":"message","role":"assistant","model":model,
            "content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":usage.input_tokens,"output_tokens":1,
                     "cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas) = match block {
            Block::Thinking(t) => (
                json!({"type":"thinking","thinking":"","signature":""}),
                chunks(t)
                    .into_iter()
                    .map(|c| json!({"type":"thinking_delta","thinking":c}))
                    .chain(std::iter::once(
                        json!({"type":"signature_delta","signature":"scripted-signature"}),
                    ))
                    .collect::<Vec<_>>(),
            ),
            Block::Text(t) => (
                json!({"type":"text","text":""}),
                chunks(t)
                    .into_iter()
                    .map(|c| json!({"type":"text_delta","text":c}))
                    .collect(),
            ),
            Block::ToolUse { id, name, input } => (
                json!({"type":"tool_use","id":id,"name":name,"input":{}}),
                split_json(&input.to_string())
                    .into_iter()
                    .map(|c| json!({"type":"input_json_delta","partial_json":c}))
                    .collect(),
            ),
        };
        ev.push((
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":start}),
        ));
        for d in deltas {
            ev.push((
                "content_block_delta",
                json!({"type":"content_block_delta","index":index,"delta":d}),
            ));
        }
        ev.push((
            "content_block_stop",
            json!({"type":"content_block_stop","index":index}),
        ));
    }
    ev.push((
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":stop_reason(blocks),"stop_sequence":null},
               "usage":{"output_tokens":usage.output_tokens}}),
    ));
    ev.push(("message_stop", json!({"type":"message_stop"})));
    ev
}

/// The non-streaming reply.
pub fn message(model: &str, blocks: &[Block], usage: Option<Usage>) -> Value {
    let usage = usage.unwrap_or(DEFAULT_USAGE);
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Thinking(t) => {
                json!({"type":"thinking","thinking":t,"signature":"scripted-signature"})
            }
            Block::Text(t) => json!({"type":"text","text":t}),
            Block::ToolUse { id, name, input } => {
                json!({"type":"tool_use","id":id,"name":name,"input":input})
            }
        })
        .collect();
    json!({"id":message_id(),"type":"message","role":"assistant","model":model,
           "content":content,"stop_reason":stop_reason(blocks),"stop_sequence":null,
           "usage":{"input_tokens":usage.input_tokens,"output_tokens":usage.output_tokens}})
}

fn message_id() -> String {
    format!(
        "msg_scripted_{:04}",
        NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Split text into chunks of about three words, keeping the whitespace.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut words = 0;
    for piece in text.split_inclusive(' ') {
        cur.push_str(piece);
        words += 1;
        if words == 3 {
            out.push(std::mem::take(&mut cur));
            words = 0;
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Split a JSON text into two fragments at a char boundary, as the API does.
fn split_json(s: &str) -> Vec<String> {
    let mid = (0..=s.len() / 2)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    vec![s[..mid].to_owned(), s[mid..].to_owned()]
}

fn substitute(v: &Value, cwd: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{cwd}", cwd)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, cwd)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, cwd)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_streams_in_several_deltas_that_add_up() {
        let ev = events("m", &[Block::Text("one two three four five".into())], None);
        let deltas: Vec<String> = ev
            .iter()
            .filter(|(n, _)| *n == "content_block_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert!(deltas.len() > 1);
        assert_eq!(deltas.concat(), "one two three four five");
        assert_eq!(ev.last().unwrap().0, "message_stop");
    }

    #[test]
    fn tool_input_fragments_rebuild_the_input_with_cwd_substituted() {
        let step = Step {
            tool_use: Some(ToolUse {
                name: "Read".into(),
                input: json!({"file_path": "{cwd}/a.txt"}),
            }),
            ..Default::default()
        };
        let b = blocks(&step, Some("/w"));
        let ev = events("m", &b, None);
        let json: String = ev
            .iter()
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            json!({"file_path": "/w/a.txt"})
        );
        assert_eq!(stop_reason(&b), "tool_use");
    }
}
