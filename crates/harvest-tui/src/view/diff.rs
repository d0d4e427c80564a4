//! Unified diffs from the CLI's structured patch: old and new line numbers, +/− colouring,
//! the code highlighted as its language (each hunk as one block, so the highlighter's
//! state carries across lines), and the words that changed within a line emphasised.

use crate::highlight;
use crate::theme::Theme;
use harvest_protocol::event::PatchHunk;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Context,
    Added,
    Removed,
}

pub fn render(hunks: &[PatchHunk], lang: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let widest = hunks
        .iter()
        .map(|h| (h.old_start + h.old_lines).max(h.new_start + h.new_lines))
        .max()
        .unwrap_or(1);
    let nw = widest.to_string().len();
    for h in hunks {
        out.push(Line::styled(
            format!(
                "@@ -{},{} +{},{} @@",
                h.old_start, h.old_lines, h.new_start, h.new_lines
            ),
            theme.dim(),
        ));
        let rows: Vec<(Kind, &str)> = h
            .lines
            .iter()
            .map(|l| match l.as_bytes().first() {
                Some(b'+') => (Kind::Added, &l[1..]),
                Some(b'-') => (Kind::Removed, &l[1..]),
                Some(b' ') => (Kind::Context, &l[1..]),
                _ => (Kind::Context, l.as_str()),
            })
            .collect();
        let emph = word_emphasis(&rows);
        let code: String = rows.iter().map(|(_, t)| format!("{t}\n")).collect();
        let highlighted = highlight::highlight(&code, lang, theme);
        let (mut old_no, mut new_no) = (h.old_start, h.new_start);
        for (i, (kind, text)) in rows.iter().enumerate() {
            let (o, n) = match kind {
                Kind::Context => (Some(old_no), Some(new_no)),
                Kind::Removed => (Some(old_no), None),
                Kind::Added => (None, Some(new_no)),
            };
            match kind {
                Kind::Context => {
                    old_no += 1;
                    new_no += 1;
                }
                Kind::Removed => old_no += 1,
                Kind::Added => new_no += 1,
            }
            let num = |v: Option<u64>| {
                v.map(|v| format!("{v:>nw$}"))
                    .unwrap_or_else(|| " ".repeat(nw))
            };
            let (sign, line_style, emph_style) = match kind {
                Kind::Context => (" ", Style::new(), Style::new()),
                Kind::Added => ("+", theme.added(), theme.added_emph()),
                Kind::Removed => ("-", theme.removed(), theme.removed_emph()),
            };
            let mut spans = vec![
                Span::styled(format!("{} {} ", num(o), num(n)), theme.line_number()),
                Span::styled(sign, line_style),
            ];
            let content: Vec<Span<'static>> = match highlighted.as_ref().and_then(|h| h.get(i)) {
                // Syntax colour for the code; the line's kind shows in its sign and, for
                // changed words, their emphasis.
                Some(l) if *kind != Kind::Context => l
                    .spans
                    .iter()
                    .map(|s| {
                        Span::styled(
                            s.content.clone(),
                            s.style.bg(line_style.bg.unwrap_or_default()),
                        )
                    })
                    .collect(),
                Some(l) => l.spans.clone(),
                None => vec![Span::styled(text.to_string(), line_style)],
            };
            let content = match &emph[i] {
                Some((a, b)) => apply_range(content, *a, *b, emph_style),
                None => content,
            };
            spans.extend(content);
            out.push(Line::from(spans));
        }
    }
    out
}

/// For each row, the char range that changed when it pairs with a row of the other kind
/// (the i-th removed line of a run with the i-th added line of the run that follows).
fn word_emphasis(rows: &[(Kind, &str)]) -> Vec<Option<(usize, usize)>> {
    let mut out = vec![None; rows.len()];
    let mut i = 0;
    while i < rows.len() {
        if rows[i].0 != Kind::Removed {
            i += 1;
            continue;
        }
        let del_start = i;
        while i < rows.len() && rows[i].0 == Kind::Removed {
            i += 1;
        }
        let add_start = i;
        while i < rows.len() && rows[i].0 == Kind::Added {
            i += 1;
        }
        let pairs = (add_start - del_start).min(i - add_start);
        for k in 0..pairs {
            let (old, new) = (rows[del_start + k].1, rows[add_start + k].1);
            if let Some((o, n)) = changed_ranges(old, new) {
                out[del_start + k] = Some(o);
                out[add_start + k] = Some(n);
            }
        }
    }
    out
}

/// The differing middle of two lines, by words: the common leading and trailing words
/// are left alone. `None` when the lines share nothing worth emphasising.
pub fn changed_ranges(old: &str, new: &str) -> Option<((usize, usize), (usize, usize))> {
    let a = tokens(old);
    let b = tokens(new);
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    if prefix == 0 && suffix == 0 {
        return None;
    }
    let span = |t: &[&str], from: usize, to: usize| -> (usize, usize) {
        let start: usize = t[..from].iter().map(|s| s.chars().count()).sum();
        let len: usize = t[from..to].iter().map(|s| s.chars().count()).sum();
        (start, start + len)
    };
    Some((
        span(&a, prefix, a.len() - suffix),
        span(&b, prefix, b.len() - suffix),
    ))
}

/// Words, runs of spaces and single punctuation marks.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    let mut prev: Option<u8> = None;
    for (i, c) in s.char_indices() {
        let k = class(c);
        if let Some(p) = prev
            && (p != k || k == 2)
        {
            out.push(&s[start..i]);
            start = i;
        }
        prev = Some(k);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Patch `style` onto chars `from..to` of a run of spans.
fn apply_range(
    spans: Vec<Span<'static>>,
    from: usize,
    to: usize,
    style: Style,
) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    let mut pos = 0;
    for s in spans {
        let chars: Vec<char> = s.content.chars().collect();
        let (start, end) = (pos, pos + chars.len());
        pos = end;
        let (a, b) = (from.clamp(start, end) - start, to.clamp(start, end) - start);
        if a == b {
            out.push(s);
            continue;
        }
        let piece = |x: usize, y: usize| chars[x..y].iter().collect::<String>();
        if a > 0 {
            out.push(Span::styled(piece(0, a), s.style));
        }
        out.push(Span::styled(piece(a, b), s.style.patch(style)));
        if b < chars.len() {
            out.push(Span::styled(piece(b, chars.len()), s.style));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ColorLevel;

    #[test]
    fn changed_words_are_found_between_common_ends() {
        let (o, n) = changed_ranges("    return a - b", "    return a + b").unwrap();
        assert_eq!((o, n), ((13, 14), (13, 14)));
        assert!(changed_ranges("abc", "xyz").is_none());
    }

    #[test]
    fn numbers_signs_and_emphasis() {
        let h = PatchHunk {
            old_start: 1,
            old_lines: 2,
            new_start: 1,
            new_lines: 2,
            lines: vec![
                " def add(a, b):".into(),
                "-    return a - b".into(),
                "+    return a + b".into(),
            ],
        };
        let t = Theme::new(ColorLevel::Ansi16);
        let lines = render(&[h], "py", &t);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            text,
            [
                "@@ -1,2 +1,2 @@",
                "1 1  def add(a, b):",
                "2   -    return a - b",
                "  2 +    return a + b"
            ]
        );
        let emph = lines[3].spans.iter().find(|s| {
            s.content == "+"
                && s.style
                    .add_modifier
                    .contains(ratatui::style::Modifier::BOLD)
        });
        assert!(
            emph.is_some(),
            "the changed operator is emphasised: {:?}",
            lines[3].spans
        );
    }
}
