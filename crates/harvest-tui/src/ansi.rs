//! Program output with ANSI escapes (a colourful test runner) to styled lines: SGR colour
//! and attribute codes become styles, every other escape sequence is dropped, and a
//! carriage return keeps only what was drawn last on the line (progress bars).

use crate::theme::Theme;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

pub fn to_lines(text: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut style = Style::new();
    text.split('\n')
        .map(|raw| {
            let raw = raw.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
            parse_line(raw, &mut style, theme)
        })
        .collect()
}

fn parse_line(s: &str, style: &mut Style, theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            if c == '\t' {
                cur.push_str("    ");
            } else if !c.is_control() {
                cur.push(c);
            }
            continue;
        }
        match chars.next() {
            Some('[') => {
                let mut params = String::new();
                let mut fin = None;
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        fin = Some(c);
                        break;
                    }
                    params.push(c);
                }
                if fin == Some('m') {
                    if !cur.is_empty() {
                        spans.push(Span::styled(std::mem::take(&mut cur), *style));
                    }
                    *style = apply_sgr(*style, &params, theme);
                }
            }
            Some(']') => {
                // OSC: up to BEL or ESC \.
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    if !cur.is_empty() {
        spans.push(Span::styled(cur, *style));
    }
    Line::from(spans)
}

fn apply_sgr(mut style: Style, params: &str, theme: &Theme) -> Style {
    let nums: Vec<u16> = if params.is_empty() {
        vec![0]
    } else {
        params
            .split([';', ':'])
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let mut i = 0;
    while i < nums.len() {
        let n = nums[i];
        match n {
            0 => style = Style::new(),
            1 => style = style.add_modifier(Modifier::BOLD),
            2 => style = style.add_modifier(Modifier::DIM),
            3 => style = style.add_modifier(Modifier::ITALIC),
            4 => style = style.add_modifier(Modifier::UNDERLINED),
            7 => style = style.add_modifier(Modifier::REVERSED),
            22 => style = style.remove_modifier(Modifier::BOLD | Modifier::DIM),
            23 => style = style.remove_modifier(Modifier::ITALIC),
            24 => style = style.remove_modifier(Modifier::UNDERLINED),
            27 => style = style.remove_modifier(Modifier::REVERSED),
            30..=37 | 90..=97 => style = set(style, true, basic(n), theme),
            40..=47 | 100..=107 => style = set(style, false, basic(n - 10), theme),
            39 => style.fg = None,
            49 => style.bg = None,
            38 | 48 => {
                let fg = n == 38;
                match nums.get(i + 1) {
                    Some(5) => {
                        if let Some(&idx) = nums.get(i + 2) {
                            style = set(style, fg, Some(Color::Indexed(idx as u8)), theme);
                        }
                        i += 2;
                    }
                    Some(2) => {
                        if let (Some(&r), Some(&g), Some(&b)) =
                            (nums.get(i + 2), nums.get(i + 3), nums.get(i + 4))
                        {
                            style = set(
                                style,
                                fg,
                                Some(Color::Rgb(r as u8, g as u8, b as u8)),
                                theme,
                            );
                        }
                        i += 4;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    style
}

fn set(style: Style, fg: bool, c: Option<Color>, theme: &Theme) -> Style {
    let Some(c) = c.and_then(|c| theme.ansi(c)) else {
        return style;
    };
    if fg { style.fg(c) } else { style.bg(c) }
}

fn basic(n: u16) -> Option<Color> {
    Some(match n {
        30 => Color::Black,
        31 => Color::Red,
        32 => Color::Green,
        33 => Color::Yellow,
        34 => Color::Blue,
        35 => Color::Magenta,
        36 => Color::Cyan,
        37 => Color::Gray,
        90 => Color::DarkGray,
        91 => Color::LightRed,
        92 => Color::LightGreen,
        93 => Color::LightYellow,
        94 => Color::LightBlue,
        95 => Color::LightMagenta,
        96 => Color::LightCyan,
        97 => Color::White,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ColorLevel;

    #[test]
    fn sgr_becomes_style_and_other_escapes_vanish() {
        let t = Theme::new(ColorLevel::TrueColor);
        let lines = to_lines("\x1b[1;31mFAIL\x1b[0m ok\x1b[2K\x1b]0;title\x07 done", &t);
        assert_eq!(lines[0].to_string(), "FAIL ok done");
        let fail = &lines[0].spans[0];
        assert_eq!(fail.style.fg, Some(Color::Red));
        assert!(fail.style.add_modifier.contains(Modifier::BOLD));
        assert_eq!(lines[0].spans[1].style, Style::new());
    }

    #[test]
    fn carriage_returns_keep_the_last_drawing_and_no_color_drops_colour() {
        let t = Theme::new(ColorLevel::None);
        let lines = to_lines("10%\r50%\r100%\n\x1b[32mgreen", &t);
        assert_eq!(lines[0].to_string(), "100%");
        assert_eq!(lines[1].spans[0].style.fg, None);
    }
}
