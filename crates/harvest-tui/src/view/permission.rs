//! A waiting permission request in the tool pane: what the tool would do (for Edit,
//! MultiEdit and Write the change as a diff, not the call's JSON) and the one-key answers.
//! Everything shown of the request is the agent's: made terminal-safe.

use crate::theme::Theme;
use crate::transcript::PendingPermission;
use ratatui::text::{Line, Span};

/// The most lines of a change shown before "… N more".
const MAX_CHANGE_LINES: usize = 60;

fn safe(text: &str) -> String {
    harvest_termsafe::text(text, harvest_termsafe::Sgr::Drop).into_owned()
}

/// `old` → `new` as removed and added lines, the lines both share at the start and the
/// end left out (an Edit's strings are the changed region with a little context).
fn change(old: &str, new: &str, theme: &Theme, out: &mut Vec<Line<'static>>) {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    for l in &a[head.saturating_sub(1)..head] {
        out.push(Line::styled(format!("  {}", safe(l)), theme.dim()));
    }
    for l in &a[head..a.len() - tail] {
        out.push(Line::styled(format!("- {}", safe(l)), theme.removed()));
    }
    for l in &b[head..b.len() - tail] {
        out.push(Line::styled(format!("+ {}", safe(l)), theme.added()));
    }
    for l in a[a.len() - tail..].iter().take(1) {
        out.push(Line::styled(format!("  {}", safe(l)), theme.dim()));
    }
}

/// What the request would change, for the tools that change files.
fn body(p: &PendingPermission, theme: &Theme) -> Vec<Line<'static>> {
    let input = &p.input;
    let path = input["file_path"].as_str().unwrap_or("");
    let mut out = Vec::new();
    match p.tool.as_str() {
        "Edit" => {
            out.push(Line::from(safe(path)));
            change(
                input["old_string"].as_str().unwrap_or(""),
                input["new_string"].as_str().unwrap_or(""),
                theme,
                &mut out,
            );
        }
        "MultiEdit" => {
            out.push(Line::from(safe(path)));
            for edit in input["edits"].as_array().into_iter().flatten() {
                change(
                    edit["old_string"].as_str().unwrap_or(""),
                    edit["new_string"].as_str().unwrap_or(""),
                    theme,
                    &mut out,
                );
                out.push(Line::styled("  ⋯", theme.dim()));
            }
        }
        "Write" => {
            out.push(Line::from(format!("{} (the whole file)", safe(path))));
            for l in input["content"].as_str().unwrap_or("").lines() {
                out.push(Line::styled(format!("+ {}", safe(l)), theme.added()));
            }
        }
        _ => out.extend(p.summary.lines().map(|l| Line::from(safe(l)))),
    }
    if out.len() > MAX_CHANGE_LINES {
        let more = out.len() - MAX_CHANGE_LINES;
        out.truncate(MAX_CHANGE_LINES);
        out.push(Line::styled(format!("… {more} more lines"), theme.dim()));
    }
    out
}

/// How the answer keys act now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The request has the focus (Tab).
    Focused,
    /// From the empty input box.
    FromInput,
    /// Not now: the input box holds a draft.
    Draft,
}

/// The tool pane's lines for the request.
pub fn lines(
    p: &PendingPermission,
    keys: Keys,
    waiting: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::styled(format!("{} asks permission", safe(&p.tool)), theme.warn()),
        Line::default(),
    ];
    lines.extend(body(p, theme));
    lines.push(Line::default());
    if keys != Keys::Draft {
        let always = if keys == Keys::Focused { "2 a" } else { "2" };
        let mut spans = vec![
            Span::styled("1 y", theme.key()),
            Span::raw(" allow once · "),
            Span::styled(always, theme.key()),
            Span::raw(" always allow this tool · "),
            Span::styled("3 n", theme.key()),
            Span::raw(" deny (a reason optional)"),
        ];
        if keys == Keys::Focused && p.input["command"].is_string() {
            spans.push(Span::raw(" · "));
            spans.push(Span::styled("e", theme.key()));
            spans.push(Span::raw(" edit the command"));
        }
        lines.push(Line::from(spans));
    } else {
        lines.push(Line::from(vec![
            Span::styled("Tab", theme.key()),
            Span::raw(" to answer (typing goes to the input box)"),
        ]));
    }
    if waiting > 1 {
        lines.push(Line::styled(
            format!("{} more waiting", waiting - 1),
            theme.dim(),
        ));
    }
    lines
}
