//! Prompt extraction and step selection on request bodies the real CLI (2.1.330) sent,
//! captured from this server and trimmed (tool schemas reduced to names, long system texts
//! cut) into tests/fixtures/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_scripted_model::{ModelServer, RecordedRequest, Script};
use serde_json::Value;
use std::io::{Read, Write};

/// The script the fixtures were captured with: Write, then Edit + Bash in one response,
/// then a closing text.
const SCRIPT: &str = r#"
[[turn]]
prompt = "fix"
[[turn.step]]
thinking = "Let me look."
text = "I'll write the file."
tool_use = { name = "Write", input = { file_path = "{cwd}/notes.txt", content = "hello\n" } }
[[turn.step]]
tools = [ { name = "Edit", input = { file_path = "{cwd}/notes.txt", old_string = "hello", new_string = "goodbye" } },
          { name = "Bash", input = { command = "echo scripted-bash", description = "echo" } } ]
[[turn.step]]
text = "Done."
[[turn]]
[[turn.step]]
text = "fallback answer"
"#;

fn fixture(name: &str) -> RecordedRequest {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    RecordedRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: Vec::new(),
        body: serde_json::from_str(&text).unwrap(),
    }
}

fn step_text(req: &RecordedRequest) -> String {
    let script = Script::from_toml_str(SCRIPT).unwrap();
    let step = script
        .step_for(&req.prompt().unwrap(), req.tool_results_after_prompt())
        .unwrap();
    let mut out = step.text.clone().unwrap_or_default();
    for call in step.tool_calls() {
        out.push_str(&format!(" [{}]", call.name));
    }
    out
}

#[test]
fn first_request_prompt_skips_the_system_reminder_and_cwd_is_in_the_system_message() {
    let req = fixture("first_request.json");
    // The shape this relies on: [user (reminder + prompt), system (environment)].
    let roles: Vec<&str> = req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "system"]);
    assert_eq!(req.prompt().as_deref(), Some("please fix the notes"));
    assert_eq!(req.tool_results_after_prompt(), 0);
    assert_eq!(req.cwd().as_deref(), Some("/tmp/sm/ws"));
    assert_eq!(step_text(&req), "I'll write the file. [Write]");
}

#[test]
fn after_a_two_call_step_the_closing_step_answers() {
    let req = fixture("after_two_tool_rounds.json");
    assert_eq!(req.prompt().as_deref(), Some("please fix the notes"));
    // One result for Write, two for Edit + Bash (one user message holds both).
    assert_eq!(req.tool_results_after_prompt(), 3);
    // In later requests the environment message's content is a plain string.
    assert!(req.body["messages"][1]["content"].is_string());
    assert_eq!(req.cwd().as_deref(), Some("/tmp/sm/ws"));
    assert_eq!(step_text(&req), "Done.");
}

#[test]
fn a_follow_up_prompt_counts_only_the_tool_results_after_it() {
    let req = fixture("follow_up_prompt.json");
    assert_eq!(
        req.prompt().as_deref(),
        Some("a follow-up no turn matches? fix again")
    );
    // The newest message is a block list (it carries the cache_control mark); once older,
    // the CLI sends the same prompt as a plain string.
    let last = req.body["messages"].as_array().unwrap().last().unwrap();
    assert!(last["content"].is_array(), "{last}");
    // The three tool results of the first turn come before it and do not count.
    assert_eq!(req.tool_results_after_prompt(), 0);
    assert_eq!(step_text(&req), "I'll write the file. [Write]");
    let all = req.all_text();
    assert!(all.contains("please fix the notes"), "{all}");
    assert!(all.contains("scripted-bash"), "{all}");
}

#[test]
fn after_a_tool_interrupt_the_merged_message_carries_the_new_prompt() {
    let req = fixture("after_tool_interrupt.json");
    let last = &req.body["messages"].as_array().unwrap().last().unwrap()["content"];
    let types: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["tool_result", "text", "text"]);
    assert_eq!(req.prompt().as_deref(), Some("after the tool interrupt"));
    assert_eq!(req.tool_results_after_prompt(), 0);
    assert_eq!(step_text(&req), "fallback answer");
}

#[test]
fn a_captured_request_replayed_over_http_gets_the_tool_call_with_cwd_filled_in() {
    let server = ModelServer::spawn_in_thread(Script::from_toml_str(SCRIPT).unwrap()).unwrap();
    let body = fixture("first_request.json").body.to_string();
    let addr = server.base_url().trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("content-type: text/event-stream"), "{out}");
    // Rebuild the tool input from its input_json_delta fragments.
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let input: String = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input["file_path"], "/tmp/sm/ws/notes.txt");
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["delta"]["type"].as_str())
        .collect();
    assert!(kinds.contains(&"thinking_delta") && kinds.contains(&"signature_delta"));
    assert!(kinds.iter().filter(|k| **k == "text_delta").count() >= 2);
    assert_eq!(
        events.last().unwrap()["type"],
        "message_stop",
        "the stream ends with message_stop"
    );
    assert!(out.contains(r#""stop_reason":"tool_use""#), "{out}");
    assert_eq!(server.requests().len(), 1);
}
