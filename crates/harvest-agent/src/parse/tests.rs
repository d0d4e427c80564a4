//! Parser tests on stream-json lines as the real CLI (2.1.330) prints them; the fixture
//! file holds a whole captured session.

use super::*;
use harvest_protocol::ToolOutput;

fn parse_all(p: &mut StreamParser, lines: &str) -> Vec<EventBody> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| p.parse_line(l).events)
        .collect()
}

#[test]
fn bash_failure_keeps_exit_code_and_output() {
    let mut p = StreamParser::new();
    let ev = parse_all(
        &mut p,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"false"}}]}}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t1","type":"tool_result","content":"Exit code 3\nout\nerr","is_error":true}]},"tool_use_result":"Error: Exit code 3\nout\nerr"}"#,
    );
    assert_eq!(ev.len(), 2);
    match &ev[1] {
        EventBody::ToolResult {
            is_error: true,
            output:
                Some(ToolOutput::Bash {
                    exit_code: Some(3),
                    stdout,
                    ..
                }),
            ..
        } => assert_eq!(stdout, "out\nerr"),
        other => panic!("expected a failed Bash result, got {other:?}"),
    }
}

#[test]
fn edit_result_carries_the_structured_patch() {
    let mut p = StreamParser::new();
    let ev = parse_all(
        &mut p,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Edit","input":{"file_path":"/w/a","old_string":"beta","new_string":"BETA"}}]}}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t2","type":"tool_result","content":"ok","is_error":false}]},"tool_use_result":{"filePath":"/w/a","oldString":"beta","newString":"BETA","originalFile":"alpha\nbeta\ngamma\n","structuredPatch":[{"oldStart":1,"oldLines":3,"newStart":1,"newLines":3,"lines":[" alpha","-beta","+BETA"," gamma"]}],"userModified":false,"replaceAll":false}}"#,
    );
    let EventBody::ToolResult {
        output:
            Some(ToolOutput::Patch {
                file_path,
                operation,
                hunks,
                ..
            }),
        ..
    } = &ev[1]
    else {
        panic!("expected a patch, got {:?}", ev[1]);
    };
    assert_eq!(file_path, "/w/a");
    assert_eq!(operation, "edit");
    assert_eq!(hunks[0].lines, [" alpha", "-beta", "+BETA", " gamma"]);
}

#[test]
fn turn_cost_is_this_turns_share_of_the_running_total() {
    let mut p = StreamParser::new();
    let line = |total: f64| {
        format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"num_turns":2,"duration_ms":700,"total_cost_usd":{total},"usage":{{"input_tokens":800,"output_tokens":160}}}}"#
        )
    };
    let costs: Vec<f64> = [0.01, 0.025]
        .iter()
        .flat_map(|t| parse_all(&mut p, &line(*t)))
        .map(|e| match e {
            EventBody::TurnResult { cost_usd, .. } => cost_usd,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!((costs[0] - 0.01).abs() < 1e-12, "{costs:?}");
    assert!((costs[1] - 0.015).abs() < 1e-12, "{costs:?}");
}

#[test]
fn interrupted_turn_is_marked() {
    let mut p = StreamParser::new();
    let ev = parse_all(
        &mut p,
        r#"{"type":"result","subtype":"error_during_execution","is_error":true,"terminal_reason":"aborted_tools","errors":["[ede_diagnostic] x"],"total_cost_usd":0}"#,
    );
    assert!(
        matches!(&ev[0], EventBody::TurnResult { interrupted: true, is_error: true, result: Some(r), .. } if r.contains("ede_diagnostic")),
        "{ev:?}"
    );
}

#[test]
fn unknown_and_broken_lines_are_kept() {
    let mut p = StreamParser::new();
    let unknown = p.parse_line(r#"{"type":"brand_new_thing","x":1}"#);
    assert_eq!(unknown.events, vec![EventBody::AgentRaw {}]);
    assert_eq!(unknown.raw["x"], 1);
    let broken = p.parse_line("Segmentation fault");
    assert!(
        matches!(&broken.events[0], EventBody::Error { message } if message.contains("Segmentation fault"))
    );
}

#[test]
fn api_retry_and_synthetic_api_error() {
    let mut p = StreamParser::new();
    let ev = parse_all(
        &mut p,
        r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":620,"error_status":529,"error":"overloaded"}
{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: 529 Overloaded"}]},"is_api_error_message":true,"error":"server_error"}"#,
    );
    assert_eq!(
        ev[0],
        EventBody::ApiRetry {
            attempt: 1,
            limit: 10,
            http_status: Some(529),
            delay_ms: 620,
            error: Some("overloaded".into())
        }
    );
    assert!(matches!(&ev[1], EventBody::Error { message } if message.contains("529")));
}

/// A whole session captured from the real CLI through the scripted model server.
#[test]
fn captured_session_parses_into_the_expected_sequence() {
    let captured = include_str!("../../tests/fixtures/captured-session.jsonl");
    let mut p = StreamParser::new();
    let events = parse_all(&mut p, captured);
    let kinds: Vec<&str> = events
        .iter()
        .map(EventBody::type_name)
        .filter(|k| *k != "assistant_delta")
        .collect();
    assert!(kinds.first() == Some(&"agent_init"), "{kinds:?}");
    assert!(kinds.contains(&"tool_call"), "{kinds:?}");
    assert!(kinds.contains(&"tool_result"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"turn_result"), "{kinds:?}");
    assert!(
        !kinds.contains(&"agent_raw"),
        "every line of a normal session is understood: {kinds:?}"
    );
    let patched = events.iter().any(|e| {
        matches!(e, EventBody::ToolResult { output: Some(ToolOutput::Patch { hunks, .. }), .. } if !hunks.is_empty())
    });
    assert!(patched, "the captured Edit result carries a patch");
}

#[test]
fn the_clis_diagnostic_lines_are_not_errors_but_other_text_is() {
    let mut p = StreamParser::new();
    let evs = parse_all(&mut p, "[ede_diagnostic] interrupted at tool boundary\n");
    assert!(
        !evs.iter().any(|e| matches!(e, EventBody::Error { .. })),
        "{evs:?}"
    );
    let evs = parse_all(&mut p, "Segmentation fault\n");
    assert!(
        evs.iter().any(|e| matches!(e, EventBody::Error { .. })),
        "{evs:?}"
    );
}
