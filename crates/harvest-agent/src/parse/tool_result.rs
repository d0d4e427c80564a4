//! The structured `tool_use_result` of a `user` line, per tool. The CLI reports a failed
//! tool as a string starting with "Error: " and a successful one as an object.

use harvest_protocol::event::{PatchHunk, ToolOutput};
use serde_json::Value;

pub(super) fn structured(tool: Option<&str>, r: &Value) -> Option<ToolOutput> {
    match r {
        Value::Null => None,
        Value::String(s) => failed(tool, s),
        Value::Object(_) => Some(succeeded(tool, r)),
        other => Some(ToolOutput::Other {
            value: other.clone(),
        }),
    }
}

fn failed(tool: Option<&str>, s: &str) -> Option<ToolOutput> {
    // Bash exit != 0: "Error: Exit code 3\n<merged stdout and stderr>".
    let rest = s.strip_prefix("Error: Exit code ")?;
    if tool != Some("Bash") {
        return None;
    }
    let (code, output) = rest.split_once('\n').unwrap_or((rest, ""));
    Some(ToolOutput::Bash {
        stdout: output.to_owned(),
        stderr: String::new(),
        interrupted: false,
        exit_code: code.trim().parse().ok(),
        persisted_output_path: None,
    })
}

fn succeeded(tool: Option<&str>, r: &Value) -> ToolOutput {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    match tool {
        Some("Bash") if r.get("stdout").is_some() => ToolOutput::Bash {
            stdout: s("stdout"),
            stderr: s("stderr"),
            interrupted: r["interrupted"].as_bool().unwrap_or(false),
            exit_code: Some(0),
            persisted_output_path: r["persistedOutputPath"].as_str().map(str::to_owned),
        },
        Some("Edit" | "Write" | "MultiEdit") if r.get("filePath").is_some() => {
            let operation = match r["type"].as_str() {
                Some(t) => t.to_owned(),
                None => "edit".to_owned(),
            };
            ToolOutput::Patch {
                file_path: s("filePath"),
                content: (operation == "create").then(|| s("content")),
                operation,
                hunks: hunks(&r["structuredPatch"]),
            }
        }
        Some("Read") if r["file"].is_object() => {
            let f = &r["file"];
            ToolOutput::Read {
                file_path: f["filePath"].as_str().unwrap_or("").to_owned(),
                content: f["content"].as_str().unwrap_or("").to_owned(),
                start_line: f["startLine"].as_u64().unwrap_or(1),
                num_lines: f["numLines"].as_u64().unwrap_or(0),
                total_lines: f["totalLines"].as_u64().unwrap_or(0),
            }
        }
        _ => ToolOutput::Other { value: r.clone() },
    }
}

fn hunks(v: &Value) -> Vec<PatchHunk> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|h| PatchHunk {
            old_start: h["oldStart"].as_u64().unwrap_or(0),
            old_lines: h["oldLines"].as_u64().unwrap_or(0),
            new_start: h["newStart"].as_u64().unwrap_or(0),
            new_lines: h["newLines"].as_u64().unwrap_or(0),
            lines: h["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
        })
        .collect()
}
