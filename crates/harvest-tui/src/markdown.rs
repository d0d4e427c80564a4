//! Assistant markdown to styled lines: headings, lists, emphasis, inline code, block
//! quotes, and fenced code highlighted by syntect. Lines come out unwrapped; the caller
//! wraps them to the pane.

use crate::highlight;
use crate::theme::Theme;
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
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
                let hashes = match level {
                    HeadingLevel::H1 => "# ",
                    HeadingLevel::H2 => "## ",
                    _ => "### ",
                };
                self.push_style(self.theme.heading());
                self.text(hashes);
            }
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
            Tag::Link { .. } => self.push_style(Style::new().add_modifier(Modifier::UNDERLINED)),
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
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link => {
                self.styles.pop();
            }
            _ => {}
        }
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
                "# Title",
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
