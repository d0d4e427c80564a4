//! Assistant markdown to styled lines: headings (by style, without their `#`), lists,
//! emphasis, inline code, links with their targets, block quotes, tables with aligned
//! columns and a header rule, and fenced code highlighted by syntect. Lines come out
//! unwrapped; the caller wraps them to the pane.

use crate::highlight;
use crate::theme::Theme;
use crate::wrap::width_of;
use pulldown_cmark::{Alignment, CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

pub fn render(text: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut r = Renderer {
        theme,
        lines: Vec::new(),
        cur: Vec::new(),
        styles: vec![Style::new()],
        lists: Vec::new(),
        quote: 0,
        code: None,
        pending_item: None,
        table: None,
        link: None,
    };
    for ev in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES) {
        r.event(ev);
    }
    r.flush();
    while r.lines.last().is_some_and(|l| l.spans.is_empty()) {
        r.lines.pop();
    }
    r.lines
}

struct Renderer<'t> {
    theme: &'t Theme,
    lines: Vec<Line<'static>>,
    cur: Vec<Span<'static>>,
    styles: Vec<Style>,
    /// Open lists: the next number of an ordered one, `None` for bullets.
    lists: Vec<Option<u64>>,
    quote: usize,
    /// An open fenced code block: its language and text so far.
    code: Option<(String, String)>,
    pending_item: Option<String>,
    /// An open table: its rows of cells, each cell its spans.
    table: Option<Table>,
    /// An open link's target, shown after its text when the two differ.
    link: Option<(String, String)>,
}

#[derive(Default)]
struct Table {
    aligns: Vec<Alignment>,
    rows: Vec<Vec<Vec<Span<'static>>>>,
    /// How many of the rows are the header (0 or 1).
    header: usize,
    row: Vec<Vec<Span<'static>>>,
    cell: Vec<Span<'static>>,
}

impl Renderer<'_> {
    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or_default()
    }

    fn push_style(&mut self, add: Style) {
        let s = self.style().patch(add);
        self.styles.push(s);
    }

    fn text(&mut self, t: &str) {
        if let Some((_, label)) = &mut self.link {
            label.push_str(t);
        }
        if let Some(table) = &mut self.table {
            let style = self.styles.last().copied().unwrap_or_default();
            table.cell.push(Span::styled(t.to_owned(), style));
            return;
        }
        if self.cur.is_empty() {
            if self.quote > 0 {
                self.cur
                    .push(Span::styled("▌ ".repeat(self.quote), self.theme.dim()));
            }
            if let Some(marker) = self.pending_item.take() {
                self.cur.push(Span::styled(marker, self.theme.dim()));
            } else if !self.lists.is_empty() {
                self.cur.push(Span::raw("  ".repeat(self.lists.len())));
            }
        }
        let style = self.style();
        self.cur.push(Span::styled(t.to_owned(), style));
    }

    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.lines.push(Line::from(std::mem::take(&mut self.cur)));
        }
    }

    fn blank(&mut self) {
        self.flush();
        if self.lines.last().is_some_and(|l| !l.spans.is_empty()) {
            self.lines.push(Line::default());
        }
    }

    fn event(&mut self, ev: Event<'_>) {
        if let Some((_, buf)) = &mut self.code {
            match ev {
                Event::Text(t) => buf.push_str(&t),
                Event::End(TagEnd::CodeBlock) => self.end_code(),
                _ => {}
            }
            return;
        }
        match ev {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => {
                let mut first = true;
                for part in t.split('\n') {
                    if !first {
                        self.flush();
                    }
                    first = false;
                    if !part.is_empty() {
                        self.text(part);
                    }
                }
            }
            Event::Code(c) if self.table.is_some() => {
                let s = self.style().patch(self.theme.code());
                if let Some(t) = &mut self.table {
                    t.cell.push(Span::styled(c.to_string(), s));
                }
            }
            Event::Code(c) => {
                let s = self.style().patch(self.theme.code());
                if self.cur.is_empty() {
                    self.text("");
                }
                self.cur.push(Span::styled(c.to_string(), s));
            }
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.blank();
                self.lines
                    .push(Line::styled("─".repeat(20), self.theme.dim()));
            }
            Event::TaskListMarker(done) => self.text(if done { "☑ " } else { "☐ " }),
            Event::Html(h) | Event::InlineHtml(h) => self.text(&h),
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {}
            Tag::Heading { level, .. } => {
                self.blank();
                // The level shows as style, not as `#`s: the top level underlined too.
                let mut style = self.theme.heading();
                if level == pulldown_cmark::HeadingLevel::H1 {
                    style = style.add_modifier(Modifier::UNDERLINED);
                }
                self.push_style(style);
            }
            Tag::Table(aligns) => {
                self.blank();
                self.table = Some(Table {
                    aligns,
                    ..Default::default()
                });
            }
            Tag::TableHead | Tag::TableRow | Tag::TableCell => {}
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote += 1;
            }
            Tag::CodeBlock(kind) => {
                self.blank();
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => l.split([' ', ',']).next().unwrap_or("").to_owned(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((lang, String::new()));
            }
            Tag::List(start) => {
                self.flush();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{}{n}. ", "  ".repeat(depth));
                        *n += 1;
                        m
                    }
                    _ => format!("{}• ", "  ".repeat(depth)),
                };
                self.pending_item = Some(marker);
            }
            Tag::Emphasis => self.push_style(Style::new().add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(Style::new().add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self.push_style(Style::new().add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { dest_url, .. } => {
                self.link = Some((dest_url.to_string(), String::new()));
                self.push_style(Style::new().add_modifier(Modifier::UNDERLINED));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.blank(),
            TagEnd::Heading(_) => {
                self.styles.pop();
                self.blank();
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote = self.quote.saturating_sub(1);
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => {
                self.styles.pop();
            }
            TagEnd::Link => {
                self.styles.pop();
                if let Some((url, label)) = self.link.take()
                    && !url.is_empty()
                    && url != label
                    && url.strip_prefix("mailto:") != Some(label.as_str())
                {
                    let dim = self.theme.dim();
                    match &mut self.table {
                        Some(t) => t.cell.push(Span::styled(format!(" ({url})"), dim)),
                        None => self.cur.push(Span::styled(format!(" ({url})"), dim)),
                    }
                }
            }
            TagEnd::TableCell => {
                if let Some(t) = &mut self.table {
                    let cell = std::mem::take(&mut t.cell);
                    t.row.push(cell);
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                    t.header = 1;
                }
            }
            TagEnd::TableRow => {
                if let Some(t) = &mut self.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    self.end_table(t);
                }
            }
            _ => {}
        }
    }

    /// A table with its columns aligned, a rule under the header, cells apart by `│`.
    fn end_table(&mut self, t: Table) {
        let cols = t.rows.iter().map(Vec::len).max().unwrap_or(0);
        let cell_width =
            |c: &Vec<Span<'static>>| c.iter().map(|s| width_of(&s.content)).sum::<usize>();
        let widths: Vec<usize> = (0..cols)
            .map(|i| {
                t.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(cell_width)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let dim = self.theme.dim();
        for (n, row) in t.rows.iter().enumerate() {
            let mut spans = Vec::new();
            for (i, width) in widths.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(" │ ", dim));
                }
                let cell = row.get(i).cloned().unwrap_or_default();
                let pad = width.saturating_sub(cell_width(&cell));
                let (left, right) = match t.aligns.get(i) {
                    Some(Alignment::Right) => (pad, 0),
                    Some(Alignment::Center) => (pad / 2, pad - pad / 2),
                    _ => (0, pad),
                };
                spans.push(Span::raw(" ".repeat(left)));
                let header = n < t.header;
                for s in cell {
                    spans.push(if header {
                        Span::styled(s.content, s.style.add_modifier(Modifier::BOLD))
                    } else {
                        s
                    });
                }
                spans.push(Span::raw(" ".repeat(right)));
            }
            self.lines.push(Line::from(spans));
            if n + 1 == t.header {
                let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
                self.lines.push(Line::styled(rule.join("─┼─"), dim));
            }
        }
        self.lines.push(Line::default());
    }

    fn end_code(&mut self) {
        let Some((lang, code)) = self.code.take() else {
            return;
        };
        let gutter = Span::styled("│ ", self.theme.dim());
        let lines = highlight::highlight(&code, &lang, self.theme).unwrap_or_else(|| {
            code.lines()
                .map(|l| Line::styled(l.to_owned(), self.theme.code()))
                .collect()
        });
        for mut l in lines {
            l.spans.insert(0, gutter.clone());
            self.lines.push(l);
        }
        self.lines.push(Line::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ColorLevel;

    fn plain(md: &str) -> Vec<String> {
        render(md, &Theme::new(ColorLevel::None))
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    #[test]
    fn structure_survives_rendering() {
        let out = plain(
            "# Title\n\nSome *emph* and `code`.\n\n- one\n- two\n\n1. first\n2. second\n\n```rust\nlet x = 1;\n```\n",
        );
        assert_eq!(
            out,
            [
                "Title",
                "",
                "Some emph and code.",
                "",
                "• one",
                "• two",
                "",
                "1. first",
                "2. second",
                "",
                "│ let x = 1;"
            ]
        );
    }

    #[test]
    fn tables_come_out_aligned_with_a_header_rule_and_links_show_their_targets() {
        let out = plain(
            "| name | n |\n|------|--:|\n| apple | 1 |\n| fig | 200 |\n\nSee [the docs](https://example.com/d).\n",
        );
        assert_eq!(
            out,
            [
                "name  │   n",
                "──────┼────",
                "apple │   1",
                "fig   │ 200",
                "",
                "See the docs (https://example.com/d)."
            ]
        );
    }

    #[test]
    fn emphasis_and_code_are_styled() {
        let lines = render("a **b** `c`", &Theme::new(ColorLevel::TrueColor));
        let spans = &lines[0].spans;
        assert!(
            spans
                .iter()
                .any(|s| s.content == "b" && s.style.add_modifier.contains(Modifier::BOLD))
        );
        assert!(
            spans
                .iter()
                .any(|s| s.content == "c" && s.style.fg.is_some())
        );
    }
}
