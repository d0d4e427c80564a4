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
    pub fn from_toml_str(text: &str) -> Result<Script, ScriptError> {
        Self::parse(text, "<inline>")
    }

    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, path: &str) -> Result<Script, ScriptError> {
        toml::from_str(text).map_err(|e| ScriptError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The step that answers `prompt` after `tool_results` tool results, or a text that
    /// says why there is none.
    pub fn step_for(&self, prompt: &str, tool_results: usize) -> Result<&Step, String> {
        let turn = self
            .turns
            .iter()
            .find(|t| t.prompt.as_deref().is_none_or(|p| prompt.contains(p)))
            .ok_or_else(|| {
                format!("scripted model: no turn in the script matches the prompt {prompt:?}")
            })?;
        turn.steps.get(tool_results).ok_or_else(|| {
            format!(
                "scripted model: no step {} in the turn for prompt {prompt:?} (it has {})",
                tool_results + 1,
                turn.steps.len()
            )
        })
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
    fn a_typo_in_the_script_is_named() {
        let err = Script::from_toml_str("[[turn]]\n[[turn.step]]\ntxet = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("txet"), "{err}");
    }
}
