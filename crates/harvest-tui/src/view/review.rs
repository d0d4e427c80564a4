//! The review view: the session's changed files (left) and the selected file's diff
//! against the commit the session started from (right), with what `a` and `p` do.

use super::layout::centered;
use crate::app::App;
use crate::app::review::Review;
use crate::wrap::truncate_line;
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

pub fn draw(f: &mut Frame<'_>, app: &App, r: &Review) {
    let theme = &app.theme;
    let area = centered(
        f.area(),
        f.area().width.saturating_sub(2),
        f.area().height.saturating_sub(2),
    );
    f.render_widget(Clear, area);
    let title = match (&r.branch, r.base.is_empty()) {
        (Some(b), false) => format!(" Review · {b} since {} ", r.base),
        (None, false) => format!(" Review · since {} ", r.base),
        _ => " Review ".to_owned(),
    };
    let block = Block::bordered()
        .title(title)
        .border_style(theme.border_focused());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(1), Constraint::Length(2)])
        .split(inner);
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(30), Constraint::Percentage(70)])
        .split(rows[0]);

    let list_w = cols[0].width.saturating_sub(1) as usize;
    let mut list: Vec<Line<'static>> = Vec::new();
    if r.loading {
        list.push(Line::styled("asking the sandbox's git…", theme.dim()));
    } else if r.files.is_empty() && r.status.is_none() {
        list.push(Line::styled(
            "no changes since the session started",
            theme.dim(),
        ));
    }
    for (i, file) in r.files.iter().enumerate() {
        let style = if i == r.selected {
            theme.selected()
        } else {
            Style::new()
        };
        let line = Line::from(vec![
            Span::styled(format!("+{:<4}", file.added), theme.added()),
            Span::styled(format!("-{:<4}", file.removed), theme.removed()),
            Span::styled(file.path.clone(), style),
        ]);
        list.push(truncate_line(line, list_w));
    }
    f.render_widget(Paragraph::new(list), cols[0]);

    let diff_w = cols[1].width as usize;
    let height = cols[1].height as usize;
    let shown: Vec<Line<'static>> = r
        .files
        .get(r.selected)
        .map(|file| {
            let scroll = r.scroll.min(file.lines.len().saturating_sub(1));
            file.lines
                .iter()
                .skip(scroll)
                .take(height)
                .map(|l| {
                    let style = if l.starts_with("+++")
                        || l.starts_with("---")
                        || l.starts_with("diff --git")
                    {
                        theme.bold()
                    } else if l.starts_with('+') {
                        theme.added()
                    } else if l.starts_with('-') {
                        theme.removed()
                    } else if l.starts_with("@@") {
                        theme.dim()
                    } else {
                        Style::new()
                    };
                    truncate_line(Line::styled(l.clone(), style), diff_w)
                })
                .collect()
        })
        .unwrap_or_default();
    f.render_widget(Paragraph::new(shown), cols[1]);

    let status = match &r.status {
        Some((true, m)) => Line::styled(m.clone(), theme.ok()),
        Some((false, m)) => Line::styled(m.clone(), theme.error()),
        None => Line::default(),
    };
    let mut keys = vec![
        Span::styled("j/k", theme.key()),
        Span::raw(" file  "),
        Span::styled("PgUp/PgDn", theme.key()),
        Span::raw(" scroll  "),
        Span::styled("a", theme.key()),
        Span::raw(" apply to your checkout  "),
    ];
    if r.branch.is_some() {
        keys.push(Span::styled("p", theme.key()));
        keys.push(Span::raw(" pull request  "));
    }
    keys.extend([
        Span::styled("r", theme.key()),
        Span::raw(" refresh  "),
        Span::styled("Esc", theme.key()),
        Span::raw(" close"),
    ]);
    f.render_widget(
        Paragraph::new(vec![
            truncate_line(status, rows[1].width as usize),
            truncate_line(Line::from(keys), rows[1].width as usize),
        ]),
        rows[1],
    );
}
