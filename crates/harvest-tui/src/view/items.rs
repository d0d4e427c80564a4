//! One conversation item → its lines at a width.

use crate::format::tokens;
use crate::markdown;
use crate::theme::Theme;
use crate::transcript::{Item, Level, ToolItem, TurnSummary};
use crate::wrap::{truncate_line, width_of, wrap_lines};
use ratatui::text::{Line, Span};

/// Lines of a tool call shown under its line when it is expanded in place.
const PREVIEW_LINES: usize = 12;

pub fn lines(item: &Item, width: usize, expanded: bool, theme: &Theme) -> Vec<Line<'static>> {
    match item {
        Item::User(text) => {
            let mut out = vec![Line::default()];
            for (i, l) in text.lines().enumerate() {
                let lead = if i == 0 { "› " } else { "  " };
                out.push(Line::from(vec![
                    Span::styled(lead, theme.user()),
                    Span::styled(l.to_owned(), theme.user()),
                ]));
            }
            wrap_lines(out, width, "  ")
        }
        Item::Assistant { text, streaming } => {
            let mut md = markdown::render(text, theme);
            if *streaming {
                match md.last_mut() {
                    Some(l) => l.spans.push(Span::styled("▍", theme.dim())),
                    None => md.push(Line::styled("▍", theme.dim())),
                }
            }
            wrap_lines(md, width, "")
        }
        Item::Thinking(text) => {
            let style = theme.dim().add_modifier(ratatui::style::Modifier::ITALIC);
            if expanded {
                let mut out = vec![Line::styled("∴ thinking", style)];
                out.extend(text.lines().map(|l| Line::styled(format!("  {l}"), style)));
                wrap_lines(out, width, "  ")
            } else {
                let first = text.lines().next().unwrap_or("");
                vec![truncate_line(
                    Line::styled(format!("∴ {first}"), style),
                    width,
                )]
            }
        }
        Item::Tool(tool) => tool_lines(tool, width, expanded, theme),
        Item::Turn(t) => vec![turn_line(t, width, theme), Line::default()],
        Item::Notice { level, text } => {
            let (mark, style) = match level {
                Level::Info => ("·", theme.dim()),
                Level::Warn => ("!", theme.warn()),
                Level::Error => ("✗", theme.error()),
            };
            wrap_lines(
                vec![Line::styled(format!("{mark} {text}"), style)],
                width,
                "  ",
            )
        }
    }
}

/// `▸ Bash  npm test               exit 1 · 2.1s`, and a preview below when expanded.
fn tool_lines(tool: &ToolItem, width: usize, expanded: bool, theme: &Theme) -> Vec<Line<'static>> {
    let outcome = tool.outcome();
    let outcome_style = match &tool.result {
        None => theme.dim(),
        Some(r) if r.is_error => theme.error(),
        Some(_) => theme.ok(),
    };
    let marker = if expanded { "▾ " } else { "▸ " };
    let head = format!("{marker}{}  ", tool.name);
    let right = width_of(&outcome) + 1;
    let room = width.saturating_sub(width_of(&head) + right).max(1);
    let summary = truncate_line(Line::from(tool.summary()), room).to_string();
    let pad = width.saturating_sub(width_of(&head) + width_of(&summary) + width_of(&outcome));
    let mut out = vec![Line::from(vec![
        Span::styled(marker, theme.dim()),
        Span::styled(tool.name.clone(), theme.tool_name()),
        Span::raw("  "),
        Span::raw(summary),
        Span::raw(" ".repeat(pad)),
        Span::styled(outcome, outcome_style),
    ])];
    if expanded {
        let preview = super::tool::preview(tool, theme);
        let hidden = preview.len().saturating_sub(PREVIEW_LINES);
        out.extend(preview.into_iter().take(PREVIEW_LINES).map(|mut l| {
            l.spans.insert(0, Span::styled("  │ ", theme.dim()));
            truncate_line(l, width)
        }));
        if hidden > 0 {
            out.push(Line::styled(
                format!("  │ … {hidden} more lines in the tool pane"),
                theme.dim(),
            ));
        }
    }
    out
}

fn turn_line(t: &TurnSummary, width: usize, theme: &Theme) -> Line<'static> {
    let figures = format!(
        "${:.4} · {} in / {} out · {:.1}s",
        t.cost_usd,
        tokens(t.input_tokens),
        tokens(t.output_tokens),
        t.duration_ms as f64 / 1000.0
    );
    let line = if t.interrupted {
        Line::styled(format!("■ turn interrupted · {figures}"), theme.warn())
    } else if t.is_error {
        let why = t
            .result
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("");
        Line::styled(format!("✗ turn failed: {why} · {figures}"), theme.error())
    } else {
        Line::styled(format!("─ turn done · {figures}"), theme.dim())
    };
    truncate_line(line, width)
}
