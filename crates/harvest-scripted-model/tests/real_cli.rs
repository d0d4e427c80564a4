//! The real `claude` CLI run offline through the scripted model. The binary comes from
//! `HARVEST_CLAUDE`, else the probe install below; without one these tests fail (they do
//! not skip): they are the proof that the fake speaks the protocol the CLI expects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_scripted_model::{ModelServer, Script};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FALLBACK_CLAUDE: &str =
    "/tmp/claude-probe/node_modules/@anthropic-ai/claude-code-linux-x64/claude";

/// Each CLI run is killed after this long; a healthy run takes 1–3 s.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn claude_binary() -> PathBuf {
    let path = std::env::var_os("HARVEST_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(FALLBACK_CLAUDE));
    assert!(
        path.is_file(),
        "the real claude CLI is needed for these tests and was not found at {}: set \
         HARVEST_CLAUDE to the native claude binary (npm @anthropic-ai/claude-code, \
         node_modules/@anthropic-ai/claude-code-linux-x64/claude)",
        path.display()
    );
    path
}

/// Runs the CLI in `workspace` on `prompts` (stdin closed after them, so it exits after
/// the last turn) and returns its stdout lines.
fn run_claude(
    server: &ModelServer,
    workspace: &Path,
    prompts: &[&str],
    env: &[(&str, &str)],
) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(claude_binary());
    cmd.args([
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--dangerously-skip-permissions",
        "--include-partial-messages",
    ])
    .current_dir(workspace)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", home.path())
    .env("ANTHROPIC_BASE_URL", server.base_url())
    .env("ANTHROPIC_API_KEY", "scripted-test-key")
    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    .env("IS_SANDBOX", "1")
    .envs(env.iter().copied())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for prompt in prompts {
        let line = serde_json::json!({"type":"user","message":{"role":"user","content":prompt}});
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);

    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_LIMIT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("claude did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines = reader.join().unwrap();
    assert!(
        lines.iter().any(|l| l["type"] == "result"),
        "claude printed no result line; stderr: {stderr}\nstdout: {lines:#?}"
    );
    lines
}

fn of_type<'a>(lines: &'a [Value], kind: &str, subtype: Option<&str>) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["type"] == kind && subtype.is_none_or(|s| l["subtype"] == s))
        .collect()
}

const EDIT_SCRIPT: &str = r#"
[[turn]]
prompt = "update the notes"
[[turn.step]]
thinking = "The notes file needs writing first."
text = "I will write the notes file, then fix a word in it."
tool_use = { name = "Write", input = { file_path = "{cwd}/notes.txt", content = "hello scripted world\n" } }
[[turn.step]]
tools = [ { name = "Edit", input = { file_path = "{cwd}/notes.txt", old_string = "hello", new_string = "goodbye" } },
          { name = "Bash", input = { command = "echo bash-ran-here", description = "Say something" } } ]
[[turn.step]]
text = "The notes now say goodbye."
usage = { input_tokens = 1200, output_tokens = 80 }
"#;

#[test]
fn write_edit_and_bash_change_the_workspace() {
    let server = ModelServer::spawn_in_thread(Script::from_toml_str(EDIT_SCRIPT).unwrap()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let notes = workspace.path().join("notes.txt");
    std::fs::write(&notes, "untouched\n").unwrap();
    let lines = run_claude(&server, workspace.path(), &["please update the notes"], &[]);

    // Write then Edit ran in the workspace ({cwd} was filled in from the request).
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "goodbye scripted world\n"
    );

    let tool_results: Vec<&Value> = of_type(&lines, "user", None)
        .into_iter()
        .flat_map(|l| l["message"]["content"].as_array().unwrap())
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(tool_results.len(), 3, "{tool_results:#?}");
    assert!(
        tool_results.iter().all(|r| r["is_error"] != true),
        "{tool_results:#?}"
    );
    assert!(
        tool_results.iter().any(|r| r["content"] == "bash-ran-here"),
        "{tool_results:#?}"
    );

    // Text reached the client as several live deltas.
    let text_deltas = of_type(&lines, "stream_event", None)
        .into_iter()
        .filter(|l| l["event"]["delta"]["type"] == "text_delta")
        .count();
    assert!(text_deltas >= 3, "only {text_deltas} text deltas");

    let result = of_type(&lines, "result", None);
    assert_eq!(result.len(), 1);
    let result = result[0];
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], "The notes now say goodbye.", "{result}");
    let cost = result["total_cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0, "{result}");

    // Three API calls; each later one carried the earlier turn, and the cwd the server
    // read is the one the CLI ran in.
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let cwd = requests[0].cwd().unwrap();
    assert_eq!(
        Path::new(&cwd).canonicalize().unwrap(),
        workspace.path().canonicalize().unwrap()
    );
    assert_eq!(requests[2].tool_results_after_prompt(), 3);
    assert!(requests[2].all_text().contains("bash-ran-here"));
}

const OVERLOAD_SCRIPT: &str = r#"
[[turn]]
prompt = "overload"
[[turn.step]]
error = { status = 529, type = "overloaded_error", message = "Overloaded" }
"#;

#[test]
fn an_overloaded_api_makes_the_cli_retry_then_fail_the_turn() {
    let server =
        ModelServer::spawn_in_thread(Script::from_toml_str(OVERLOAD_SCRIPT).unwrap()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let lines = run_claude(
        &server,
        workspace.path(),
        &["overload please"],
        &[("CLAUDE_CODE_MAX_RETRIES", "1")],
    );

    let retries = of_type(&lines, "system", Some("api_retry"));
    assert!(!retries.is_empty(), "no api_retry line: {lines:#?}");
    assert_eq!(retries[0]["error_status"], 529, "{}", retries[0]);

    let result = of_type(&lines, "result", None);
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["is_error"], true, "{}", result[0]);
    let text = result[0]["result"].as_str().unwrap_or_default();
    assert!(
        text.contains("529") || text.contains("verloaded"),
        "{}",
        result[0]
    );
    // The first try and one retry.
    assert_eq!(server.requests().len(), 2);
}

const BROKEN_SCRIPT: &str = r#"
[[turn]]
prompt = "break"
[[turn.step]]
text = "this answer breaks off in the middle of its first block"
break_stream = true
"#;

/// What CLI 2.1.330 does with a stream that breaks off: it retries the stream, and when
/// that breaks too it asks once more without streaming, which break_stream leaves whole.
#[test]
fn a_broken_stream_is_retried_and_finished_without_streaming() {
    let server =
        ModelServer::spawn_in_thread(Script::from_toml_str(BROKEN_SCRIPT).unwrap()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let lines = run_claude(
        &server,
        workspace.path(),
        &["break it"],
        &[("CLAUDE_CODE_MAX_RETRIES", "1")],
    );
    assert!(
        !of_type(&lines, "system", Some("api_retry")).is_empty(),
        "no api_retry line: {lines:#?}"
    );
    let result = of_type(&lines, "result", None)[0];
    assert_eq!(result["is_error"], false, "{result}");
    let streamed: Vec<bool> = server
        .requests()
        .iter()
        .map(|r| r.body["stream"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(streamed, [true, true, false]);
}
