//! Syntax highlighting with syntect: the syntax and theme sets are loaded once (in the
//! background at start), input over a byte or line budget falls back to plain text, and a
//! block is highlighted as a whole so the parser's state carries across its lines.

use crate::theme::Theme;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use std::sync::OnceLock;
use syntect::easy::HighlightLines;
use syntect::highlighting::{FontStyle, ThemeSet};
use syntect::parsing::SyntaxSet;

const MAX_BYTES: usize = 256 * 1024;
const MAX_LINES: usize = 5_000;

struct Sets {
    syntaxes: SyntaxSet,
    theme: syntect::highlighting::Theme,
}

static SETS: OnceLock<Option<Sets>> = OnceLock::new();

fn sets() -> Option<&'static Sets> {
    SETS.get_or_init(|| {
        let syntaxes = SyntaxSet::load_defaults_newlines();
        let mut themes = ThemeSet::load_defaults();
        let theme = themes.themes.remove("base16-ocean.dark")?;
        Some(Sets { syntaxes, theme })
    })
    .as_ref()
}

/// Load the sets on a background thread so the first highlighted block does not wait.
pub fn warm_up() {
    std::thread::spawn(|| {
        let _ = sets();
    });
}

/// Highlight `code` in the language named by `lang` (a fence tag such as `rust`, or a file
/// extension). Returns one line per source line; `None` means use plain text.
pub fn highlight(code: &str, lang: &str, theme: &Theme) -> Option<Vec<Line<'static>>> {
    if code.len() > MAX_BYTES || code.lines().count() > MAX_LINES {
        return None;
    }
    theme.syntax(0, 0, 0)?; // no syntax colour at this colour level
    let sets = sets()?;
    let syntax = sets
        .syntaxes
        .find_syntax_by_token(lang)
        .or_else(|| sets.syntaxes.find_syntax_by_extension(lang))?;
    let mut h = HighlightLines::new(syntax, &sets.theme);
    let mut out = Vec::new();
    for line in syntect::util::LinesWithEndings::from(code) {
        let ranges = h.highlight_line(line, &sets.syntaxes).ok()?;
        let spans: Vec<Span<'static>> = ranges
            .into_iter()
            .map(|(style, text)| {
                let mut s = Style::new();
                if let Some(c) =
                    theme.syntax(style.foreground.r, style.foreground.g, style.foreground.b)
                {
                    s = s.fg(c);
                }
                if style.font_style.contains(FontStyle::BOLD) {
                    s = s.add_modifier(Modifier::BOLD);
                }
                if style.font_style.contains(FontStyle::ITALIC) {
                    s = s.add_modifier(Modifier::ITALIC);
                }
                Span::styled(text.trim_end_matches(['\n', '\r']).to_owned(), s)
            })
            .collect();
        out.push(Line::from(spans));
    }
    Some(out)
}

/// The language of a file, for highlighting: its extension, or its name for a few
/// extensionless files.
pub fn lang_of_path(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name {
        "Makefile" | "makefile" => "make".into(),
        "Dockerfile" => "dockerfile".into(),
        _ => name
            .rsplit_once('.')
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ColorLevel;

    #[test]
    fn highlights_within_budget_and_declines_without_colour() {
        let t = Theme::new(ColorLevel::TrueColor);
        let lines = highlight("fn main() {\n    let x = 1;\n}\n", "rs", &t).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].to_string(), "    let x = 1;");
        assert!(lines[0].spans.iter().any(|s| s.style.fg.is_some()));
        assert!(highlight("fn main() {}", "rs", &Theme::new(ColorLevel::None)).is_none());
        let huge = "x\n".repeat(MAX_LINES + 1);
        assert!(highlight(&huge, "rs", &t).is_none());
    }
}
