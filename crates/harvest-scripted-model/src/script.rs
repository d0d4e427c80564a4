//! The script: turns matched by prompt, each a list of steps (one per API request).

use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read the script {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the script {path} is not valid: {message}")]
    Parse { path: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default, rename = "turn")]
    pub turns: Vec<Turn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// A substring of the user's prompt; a turn without one matches any prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// One API response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_use: Option<ToolUse>,
    /// Several tool calls in one response.
    #[serde(default)]
    pub tools: Vec<ToolUse>,
    /// Milliseconds between streamed deltas.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Milliseconds before the response starts.
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Answer with this HTTP error instead.
    #[serde(default)]
    pub error: Option<HttpError>,
    /// Drop the connection in the middle of the first block.
    #[serde(default)]
    pub break_stream: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    pub name: String,
    #[serde(default = "empty_object")]
    pub input: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpError {
    pub status: u16,
    #[serde(default = "api_error", rename = "type")]
    pub kind: String,
    #[serde(default = "scripted_failure")]
    pub message: String,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}
fn api_error() -> String {
    "api_error".into()
}
fn scripted_failure() -> String {
    "scripted failure".into()
}

impl Script {
    /// A script in TOML (the primary format).
    pub fn from_toml_str(text: &str) -> Result<Script, ScriptError> {
        Self::parse_toml(text, "<inline script>")
    }

    /// The same structure in JSON: `{"turn": [{"prompt": "…", "step": [{…}]}]}`.
    pub fn from_json_str(text: &str) -> Result<Script, ScriptError> {
        Self::parse_json(text, "<inline script>")
    }

    /// A script file: JSON if its name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Self::parse_json(&text, &name)
        } else {
            Self::parse_toml(&text, &name)
        }
    }

    fn parse_toml(text: &str, path: &str) -> Result<Script, ScriptError> {
        let script: Script = toml::from_str(text).map_err(|e| ScriptError::Parse {
            path: path.to_owned(),
            // toml's message already names the line and column and quotes the line.
            message: e.to_string(),
        })?;
        script.validate(path)
    }

    fn parse_json(text: &str, path: &str) -> Result<Script, ScriptError> {
        let script: Script = serde_json::from_str(text).map_err(|e| ScriptError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        script.validate(path)
    }

    fn validate(self, path: &str) -> Result<Script, ScriptError> {
        for (i, turn) in self.turns.iter().enumerate() {
            if turn.steps.is_empty() {
                return Err(ScriptError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "turn {} (prompt {:?}) has no steps: give it at least one [[turn.step]]",
                        i + 1,
                        turn.prompt.as_deref().unwrap_or("<any>")
                    ),
                });
            }
        }
        Ok(self)
    }

    /// The step that answers `prompt` after `tool_results` tool results, or a text that
    /// says why there is none.
    ///
    /// Step 1 answers the prompt itself; each later step answers once all tool calls of the
    /// steps before it have their results. With one call per step that is simply step
    /// `tool_results + 1`; a step with several calls (`tools = [...]`) moves the next step
    /// that many results further.
    pub fn step_for(&self, prompt: &str, tool_results: usize) -> Result<&Step, String> {
        let turn = self
            .turns
            .iter()
            .find(|t| t.prompt.as_deref().is_none_or(|p| prompt.contains(p)))
            .ok_or_else(|| {
                format!("scripted model: no turn in the script matches the prompt {prompt:?}")
            })?;
        let mut calls_before = 0;
        for step in &turn.steps {
            if calls_before >= tool_results {
                return Ok(step);
            }
            calls_before += step.tool_calls().count();
        }
        Err(format!(
            "scripted model: no step {} in the turn for prompt {prompt:?} (it has {} steps, \
             and {tool_results} tool results came after the prompt)",
            turn.steps.len() + 1,
            turn.steps.len()
        ))
    }
}

impl Step {
    /// Every tool call of the step, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolUse> {
        self.tool_use.iter().chain(self.tools.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"
[[turn]]
prompt = "fix"
[[turn.step]]
text = "one"
tool_use = { name = "Read", input = { file_path = "{cwd}/a" } }
[[turn.step]]
text = "two"
[[turn]]
[[turn.step]]
text = "fallback"
"#;

    #[test]
    fn turns_match_by_substring_and_steps_by_tool_result_count() {
        let s = Script::from_toml_str(SCRIPT).unwrap();
        assert_eq!(
            s.step_for("please fix it", 0).unwrap().text.as_deref(),
            Some("one")
        );
        assert_eq!(
            s.step_for("please fix it", 1).unwrap().text.as_deref(),
            Some("two")
        );
        assert_eq!(
            s.step_for("hello", 0).unwrap().text.as_deref(),
            Some("fallback")
        );
        let err = s.step_for("please fix it", 2).unwrap_err();
        assert!(err.contains("no step 3"), "{err}");
    }

    #[test]
    fn a_step_with_several_calls_moves_the_next_step_that_many_results_on() {
        let s = Script::from_toml_str(
            r#"
[[turn]]
[[turn.step]]
tool_use = { name = "Write" }
[[turn.step]]
tools = [ { name = "Edit" }, { name = "Bash" } ]
[[turn.step]]
text = "done"
"#,
        )
        .unwrap();
        let name = |k| {
            s.step_for("x", k)
                .unwrap()
                .tool_calls()
                .next()
                .unwrap()
                .name
                .clone()
        };
        assert_eq!(name(0), "Write");
        assert_eq!(name(1), "Edit");
        assert_eq!(s.step_for("x", 3).unwrap().text.as_deref(), Some("done"));
        let err = s.step_for("x", 4).unwrap_err();
        assert!(err.contains("no step 4"), "{err}");
    }

    #[test]
    fn a_typo_in_the_script_is_named_with_its_file_and_line() {
        let dir = std::env::temp_dir().join(format!("scripted-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("typo.toml");
        std::fs::write(&path, "[[turn]]\n[[turn.step]]\ntxet = \"x\"\n").unwrap();
        let err = Script::load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("typo.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("txet"), "{err}");
    }

    #[test]
    fn json_scripts_have_the_same_shape() {
        let s = Script::from_json_str(
            r#"{"turn":[{"prompt":"hi","step":[{"text":"hello",
                "tool_use":{"name":"Bash","input":{"command":"echo"}}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            s.step_for("hi there", 0).unwrap().text.as_deref(),
            Some("hello")
        );
        assert!(Script::from_json_str(r#"{"turn":[{"step":[{"txet":"x"}]}]}"#).is_err());
    }

    #[test]
    fn a_turn_without_steps_is_refused() {
        let err = Script::from_toml_str("[[turn]]\nprompt = \"fix\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no steps"), "{err}");
    }
}
