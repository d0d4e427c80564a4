//! Wrapping styled lines to a width, by display columns: wide characters take two,
//! combining marks none. Views wrap before they render, so an item knows its height at a
//! width and the conversation can be laid out without measuring anything twice.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Wrap one line into lines of at most `width` columns, breaking after spaces where it
/// can and inside a word where it must. `indent` starts every continuation line.
pub fn wrap_line(line: Line<'static>, width: usize, indent: &str) -> Vec<Line<'static>> {
    let width = width.max(4);
    let indent_w: usize = indent.chars().filter_map(UnicodeWidthChar::width).sum();
    // Flatten to styled characters; cheap at the sizes a screen holds.
    let chars: Vec<(char, Style)> = line
        .spans
        .iter()
        .flat_map(|s| s.content.chars().map(move |c| (c, s.style)))
        .collect();
    let total: usize = chars.iter().map(|(c, _)| c.width().unwrap_or(0)).sum();
    if total <= width {
        return vec![line];
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut first = true;
    while start < chars.len() {
        let avail = if first {
            width
        } else {
            width.saturating_sub(indent_w).max(1)
        };
        let mut cols = 0;
        let mut end = start;
        let mut last_break = None;
        while end < chars.len() {
            let w = chars[end].0.width().unwrap_or(0);
            if cols + w > avail {
                break;
            }
            cols += w;
            if chars[end].0 == ' ' {
                last_break = Some(end + 1);
            }
            end += 1;
        }
        if end < chars.len()
            && let Some(b) = last_break
            && b > start
        {
            end = b;
        }
        if end == start {
            end = start + 1; // a character wider than the line: place it anyway
        }
        let mut spans = Vec::new();
        if !first && !indent.is_empty() {
            spans.push(Span::styled(indent.to_owned(), Style::new()));
        }
        spans.extend(group(&chars[start..end]));
        out.push(Line::from(spans));
        start = end;
        first = false;
    }
    out
}

/// Wrap every line.
pub fn wrap_lines(lines: Vec<Line<'static>>, width: usize, indent: &str) -> Vec<Line<'static>> {
    lines
        .into_iter()
        .flat_map(|l| wrap_line(l, width, indent))
        .collect()
}

/// Cut a line at `width` columns (for one-line rows), ending in '…' when it was longer.
pub fn truncate_line(line: Line<'static>, width: usize) -> Line<'static> {
    if line
        .spans
        .iter()
        .map(|s| width_of(&s.content))
        .sum::<usize>()
        <= width
    {
        return line;
    }
    let budget = width.saturating_sub(1); // room for the ellipsis
    let mut cols = 0;
    let mut spans = Vec::new();
    'spans: for span in line.spans {
        let mut text = String::new();
        for c in span.content.chars() {
            let w = c.width().unwrap_or(0);
            if cols + w > budget {
                spans.push(Span::styled(text, span.style));
                break 'spans;
            }
            cols += w;
            text.push(c);
        }
        spans.push(Span::styled(text, span.style));
    }
    spans.push(Span::raw("…"));
    Line::from(spans)
}

pub fn width_of(s: &str) -> usize {
    s.chars().filter_map(UnicodeWidthChar::width).sum()
}

fn group(chars: &[(char, Style)]) -> Vec<Span<'static>> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut cur = String::new();
    let mut style = None;
    for (c, s) in chars {
        if style != Some(*s) && !cur.is_empty() {
            spans.push(Span::styled(
                std::mem::take(&mut cur),
                style.unwrap_or_default(),
            ));
        }
        style = Some(*s);
        cur.push(*c);
    }
    if !cur.is_empty() {
        spans.push(Span::styled(cur, style.unwrap_or_default()));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line<'static>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn breaks_after_spaces_and_indents_continuations() {
        let out = wrap_line(Line::from("alpha beta gamma delta"), 12, "  ");
        assert_eq!(text(&out), ["alpha beta ", "  gamma ", "  delta"]);
    }

    #[test]
    fn wide_characters_count_twice_and_combining_marks_not_at_all() {
        let out = wrap_line(Line::from("日本語テキスト"), 6, "");
        assert_eq!(text(&out), ["日本語", "テキス", "ト"]);
        let combining = "e\u{301}".repeat(5); // five é, each two chars
        let out = wrap_line(Line::from(combining.clone()), 5, "");
        assert_eq!(text(&out), [combining]);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(
            truncate_line(Line::from("abcdefgh"), 5).to_string(),
            "abcd…"
        );
        assert_eq!(truncate_line(Line::from("abc"), 5).to_string(), "abc");
    }
}
