//! The tool pane: the selected tool call in full. Bash shows its command highlighted as
//! shell and its output with ANSI colours rendered; Edit and Write a unified diff; Read
//! the excerpt with line numbers; TodoWrite a checklist; anything else pretty JSON.

use crate::ansi;
use crate::highlight::{self, lang_of_path};
use crate::theme::Theme;
use crate::transcript::ToolItem;
use crate::wrap::{truncate_line, width_of};
use harvest_protocol::event::ToolOutput;
use ratatui::text::{Line, Span};
use serde_json::Value;

/// Bash output longer than this is folded to its head and tail until expanded.
const FOLD_OVER: usize = 400;
const FOLD_KEEP: usize = 150;

/// What `y` copies of a tool call: the content, as text: a Bash command and its output,
/// an edit's unified diff, a read's excerpt, otherwise what the tool returned.
pub fn copy_text(tool: &ToolItem) -> String {
    use harvest_protocol::event::ToolOutput;
    let result = tool.result.as_ref();
    match (tool.name.as_str(), result.and_then(|r| r.output.as_ref())) {
        (_, Some(ToolOutput::Bash { stdout, stderr, .. })) => {
            let cmd = tool.input["command"].as_str().unwrap_or("");
            let mut s = format!("$ {cmd}\n{stdout}");
            if !stderr.is_empty() {
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s.push_str(stderr);
            }
            s
        }
        (
            _,
            Some(ToolOutput::Patch {
                file_path,
                hunks,
                content,
                ..
            }),
        ) => {
            if hunks.is_empty() {
                return content.clone().unwrap_or_default();
            }
            let mut s = format!("--- {file_path}\n+++ {file_path}\n");
            for h in hunks {
                s.push_str(&format!(
                    "@@ -{},{} +{},{} @@\n",
                    h.old_start, h.old_lines, h.new_start, h.new_lines
                ));
                for l in &h.lines {
                    s.push_str(l);
                    s.push('\n');
                }
            }
            s
        }
        (_, Some(ToolOutput::Read { content, .. })) => content.clone(),
        ("Bash", None) => tool.input["command"].as_str().unwrap_or("").to_owned(),
        _ => result.map(|r| r.content.clone()).unwrap_or_default(),
    }
}

/// The pane's content for a tool call, before wrapping. `full_output` is the complete
/// output the CLI saved to a file when it was too large to inline, when it can be read.
pub fn pane_lines(
    tool: &ToolItem,
    width: usize,
    show_all: bool,
    full_output: Option<&str>,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let outcome = tool.outcome();
    let outcome_style = match &tool.result {
        Some(r) if r.is_error => theme.error(),
        Some(_) => theme.ok(),
        None => theme.dim(),
    };
    // One row: the name, the description cut to fit, the outcome at the right edge.
    let fixed = width_of(&tool.name) + 2 + width_of(&outcome) + 1;
    let desc = truncate_line(
        Line::from(description(tool)),
        width.saturating_sub(fixed).max(1),
    )
    .to_string();
    let pad = width.saturating_sub(fixed - 1 + width_of(&desc)).max(1);
    out.push(Line::from(vec![
        Span::styled(tool.name.clone(), theme.tool_name()),
        Span::raw(format!("  {desc}")),
        Span::raw(" ".repeat(pad)),
        Span::styled(outcome, outcome_style),
    ]));
    match tool.name.as_str() {
        "Bash" => {
            let cmd = tool.input["command"].as_str().unwrap_or("");
            let lines = highlight::highlight(cmd, "bash", theme)
                .unwrap_or_else(|| cmd.lines().map(|l| Line::from(l.to_owned())).collect());
            if tool.edited {
                out.push(Line::styled("edited by you before it ran:", theme.warn()));
            }
            for (i, mut l) in lines.into_iter().enumerate() {
                l.spans.insert(
                    0,
                    Span::styled(if i == 0 { "$ " } else { "  " }, theme.dim()),
                );
                out.push(l);
            }
            out.extend(bash_output(tool, show_all, full_output, theme));
        }
        _ => out.extend(preview(tool, theme)),
    }
    out
}

/// The body of a tool call without its title, also shown when a tool line is expanded in
/// the conversation.
pub fn preview(tool: &ToolItem, theme: &Theme) -> Vec<Line<'static>> {
    let Some(result) = &tool.result else {
        return match tool.name.as_str() {
            "TodoWrite" => todos(&tool.input, theme),
            _ => json_lines(&tool.input, theme),
        };
    };
    if let Some(line) = cancelled(tool, theme) {
        return vec![line];
    }
    match &result.output {
        Some(ToolOutput::Bash { .. }) => bash_output(tool, false, None, theme),
        Some(ToolOutput::Patch {
            file_path,
            operation,
            hunks,
            content,
        }) => {
            let lang = lang_of_path(file_path);
            if operation == "create" {
                let content = content.as_deref().unwrap_or("");
                let lines = highlight::highlight(content, &lang, theme)
                    .unwrap_or_else(|| content.lines().map(|l| Line::from(l.to_owned())).collect());
                let nw = lines.len().to_string().len();
                lines
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut l)| {
                        l.spans.insert(0, Span::styled("+", theme.added()));
                        l.spans.insert(
                            0,
                            Span::styled(format!("{:>nw$} ", i + 1), theme.line_number()),
                        );
                        l
                    })
                    .collect()
            } else {
                super::diff::render(hunks, &lang, theme)
            }
        }
        Some(ToolOutput::Read {
            file_path,
            content,
            start_line,
            ..
        }) => {
            let lines = highlight::highlight(content, &lang_of_path(file_path), theme)
                .unwrap_or_else(|| content.lines().map(|l| Line::from(l.to_owned())).collect());
            let last = *start_line as usize + lines.len();
            let nw = last.to_string().len();
            lines
                .into_iter()
                .enumerate()
                .map(|(i, mut l)| {
                    l.spans.insert(
                        0,
                        Span::styled(
                            format!("{:>nw$} ", *start_line as usize + i),
                            theme.line_number(),
                        ),
                    );
                    l
                })
                .collect()
        }
        _ if tool.name == "TodoWrite" => todos(&tool.input, theme),
        _ => {
            let style = if result.is_error {
                theme.error()
            } else {
                theme.base()
            };
            let mut out = json_lines(&tool.input, theme);
            out.push(Line::default());
            out.extend(
                result
                    .content
                    .lines()
                    .map(|l| Line::styled(l.to_owned(), style)),
            );
            out
        }
    }
}

fn bash_output(
    tool: &ToolItem,
    show_all: bool,
    full: Option<&str>,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let Some(result) = &tool.result else {
        if tool.ended_unanswered {
            return vec![Line::styled(
                "ended without a result (its turn was interrupted or its agent stopped)",
                theme.dim(),
            )];
        }
        // Live: the last lines it printed, until the result replaces them.
        let Some(p) = &tool.progress else {
            return vec![Line::styled("running…", theme.dim())];
        };
        let mut out = vec![Line::styled(
            format!(
                "running… {} s · {} line{} so far{}",
                p.elapsed_secs,
                p.lines,
                if p.lines == 1 { "" } else { "s" },
                if p.lines as usize > p.tail.len() {
                    ", the last ones:"
                } else {
                    ":"
                }
            ),
            theme.dim(),
        )];
        out.extend(p.tail.iter().map(|l| Line::from(l.clone())));
        return out;
    };
    if let Some(line) = cancelled(tool, theme) {
        return vec![line];
    }
    let (text, stderr) = match (&result.output, full) {
        (_, Some(full)) => (full.to_owned(), ""),
        (Some(ToolOutput::Bash { stdout, stderr, .. }), None) => (stdout.clone(), stderr.as_str()),
        _ => (result.content.clone(), ""),
    };
    let mut lines = ansi::to_lines(text.trim_end_matches('\n'), theme);
    if !stderr.is_empty() {
        // Told apart from stdout: a rule, and its lines in the error colour (where the
        // command gave them none of its own).
        if text.trim().is_empty() {
            lines.clear();
        }
        lines.push(Line::styled("── stderr", theme.warn()));
        lines.extend(
            ansi::to_lines(stderr.trim_end_matches('\n'), theme)
                .into_iter()
                .map(|l| l.patch_style(theme.error())),
        );
    }
    if show_all || lines.len() <= FOLD_OVER {
        return lines;
    }
    let hidden = lines.len() - 2 * FOLD_KEEP;
    let mut out: Vec<Line<'static>> = lines[..FOLD_KEEP].to_vec();
    out.push(Line::styled(
        format!("… {hidden} lines folded (Enter shows all)"),
        theme.warn(),
    ));
    out.extend_from_slice(&lines[lines.len() - FOLD_KEEP..]);
    out
}

/// A call the CLI reports as cancelled or refused, said plainly instead of its note to
/// the model.
fn cancelled(tool: &ToolItem, theme: &Theme) -> Option<Line<'static>> {
    let r = tool.result.as_ref()?;
    (r.is_error && harvest_protocol::event::is_cli_rejection(&r.content)).then(|| {
        Line::styled(
            "cancelled: it did not run, or was stopped (the turn was interrupted or the call denied)",
            theme.warn(),
        )
    })
}

fn todos(input: &Value, theme: &Theme) -> Vec<Line<'static>> {
    input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let text = t["content"].as_str().unwrap_or("").to_owned();
            match t["status"].as_str() {
                Some("completed") => Line::from(vec![
                    Span::styled("☑ ", theme.ok()),
                    Span::styled(text, theme.dim()),
                ]),
                Some("in_progress") => Line::from(vec![
                    Span::styled("◐ ", theme.warn()),
                    Span::styled(text, theme.bold()),
                ]),
                _ => Line::from(vec![Span::raw("☐ "), Span::raw(text)]),
            }
        })
        .collect()
}

fn json_lines(v: &Value, theme: &Theme) -> Vec<Line<'static>> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    highlight::highlight(&text, "json", theme)
        .unwrap_or_else(|| text.lines().map(|l| Line::from(l.to_owned())).collect())
}

fn description(tool: &ToolItem) -> String {
    match tool.name.as_str() {
        "Bash" => tool.input["description"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| tool.summary()),
        _ => tool.summary(),
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;
    use crate::transcript::ToolResult;
    use harvest_protocol::event::{PatchHunk, ToolOutput};

    fn tool(name: &str, input: serde_json::Value, output: ToolOutput, content: &str) -> ToolItem {
        ToolItem {
            id: "t".into(),
            name: name.into(),
            input,
            edited: false,
            result: Some(ToolResult {
                is_error: false,
                content: content.into(),
                output: Some(output),
            }),
            started: None,
            finished: None,
            progress: None,
            ended_unanswered: false,
        }
    }

    #[test]
    fn y_copies_the_diff_of_an_edit_and_the_command_with_its_output() {
        let edit = tool(
            "Edit",
            serde_json::json!({"file_path": "/w/a.py"}),
            ToolOutput::Patch {
                file_path: "/w/a.py".into(),
                operation: "edit".into(),
                hunks: vec![PatchHunk {
                    old_start: 1,
                    old_lines: 1,
                    new_start: 1,
                    new_lines: 1,
                    lines: vec!["-a - b".into(), "+a + b".into()],
                }],
                content: None,
            },
            "The file /w/a.py has been updated successfully.",
        );
        assert_eq!(
            copy_text(&edit),
            "--- /w/a.py\n+++ /w/a.py\n@@ -1,1 +1,1 @@\n-a - b\n+a + b\n",
            "the diff, not the CLI's success message"
        );
        let bash = tool(
            "Bash",
            serde_json::json!({"command": "ls"}),
            ToolOutput::Bash {
                stdout: "a\nb\n".into(),
                stderr: String::new(),
                interrupted: false,
                exit_code: None,
                persisted_output_path: None,
            },
            "a\nb",
        );
        assert_eq!(copy_text(&bash), "$ ls\na\nb\n");
    }
}
