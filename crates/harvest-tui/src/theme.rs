//! Semantic styles, built once from the terminal's colour support: truecolor when
//! `COLORTERM` says so, 256 colours when `TERM` does, 16 otherwise, and none at all under
//! `NO_COLOR` (then only bold, dim and reverse carry meaning). Views ask for `theme.added()`,
//! never for a literal colour.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorLevel {
    None,
    Ansi16,
    Ansi256,
    TrueColor,
}

impl ColorLevel {
    /// From the environment, as terminals advertise it.
    pub fn detect(get: impl Fn(&str) -> Option<String>) -> ColorLevel {
        if get("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorLevel::None;
        }
        let colorterm = get("COLORTERM").unwrap_or_default().to_lowercase();
        if colorterm.contains("truecolor") || colorterm.contains("24bit") {
            return ColorLevel::TrueColor;
        }
        if get("TERM").unwrap_or_default().contains("256") {
            return ColorLevel::Ansi256;
        }
        ColorLevel::Ansi16
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub level: ColorLevel,
}

impl Theme {
    pub fn new(level: ColorLevel) -> Theme {
        Theme { level }
    }

    /// Pick a colour for this level: an RGB wish, its 256-colour index, its 16-colour
    /// fallback.
    fn pick(&self, rgb: (u8, u8, u8), idx: u8, basic: Color) -> Option<Color> {
        match self.level {
            ColorLevel::None => None,
            ColorLevel::Ansi16 => Some(basic),
            ColorLevel::Ansi256 => Some(Color::Indexed(idx)),
            ColorLevel::TrueColor => Some(Color::Rgb(rgb.0, rgb.1, rgb.2)),
        }
    }

    fn fg(&self, rgb: (u8, u8, u8), idx: u8, basic: Color) -> Style {
        match self.pick(rgb, idx, basic) {
            Some(c) => Style::new().fg(c),
            None => Style::new(),
        }
    }

    fn bg(&self, rgb: (u8, u8, u8), idx: u8, basic: Color) -> Style {
        match self.pick(rgb, idx, basic) {
            Some(c) => Style::new().bg(c),
            None => Style::new(),
        }
    }

    pub fn base(&self) -> Style {
        Style::new()
    }
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn user(&self) -> Style {
        self.fg((110, 180, 255), 75, Color::LightBlue)
            .add_modifier(Modifier::BOLD)
    }
    pub fn tool_name(&self) -> Style {
        self.fg((230, 190, 90), 179, Color::Yellow)
            .add_modifier(Modifier::BOLD)
    }
    pub fn ok(&self) -> Style {
        self.fg((120, 200, 120), 114, Color::Green)
    }
    pub fn error(&self) -> Style {
        self.fg((240, 100, 100), 203, Color::Red)
            .add_modifier(Modifier::BOLD)
    }
    pub fn warn(&self) -> Style {
        self.fg((240, 180, 80), 215, Color::Yellow)
    }
    pub fn added(&self) -> Style {
        self.fg((120, 210, 120), 114, Color::Green)
    }
    pub fn removed(&self) -> Style {
        self.fg((240, 110, 110), 210, Color::Red)
    }
    /// The changed words inside an added or removed line.
    pub fn added_emph(&self) -> Style {
        self.added()
            .patch(self.bg((30, 80, 40), 22, Color::Reset))
            .add_modifier(Modifier::BOLD)
    }
    pub fn removed_emph(&self) -> Style {
        self.removed()
            .patch(self.bg((90, 30, 30), 52, Color::Reset))
            .add_modifier(Modifier::BOLD)
    }
    pub fn line_number(&self) -> Style {
        self.fg((110, 110, 120), 243, Color::DarkGray)
    }
    pub fn code(&self) -> Style {
        self.fg((200, 160, 230), 183, Color::Magenta)
    }
    pub fn heading(&self) -> Style {
        self.fg((240, 200, 120), 222, Color::Yellow)
            .add_modifier(Modifier::BOLD)
    }
    pub fn header(&self) -> Style {
        match self.level {
            ColorLevel::None => Style::new().add_modifier(Modifier::REVERSED),
            _ => self.bg((40, 44, 60), 236, Color::Blue).patch(self.fg(
                (230, 230, 235),
                255,
                Color::White,
            )),
        }
    }
    pub fn selected(&self) -> Style {
        match self.level {
            ColorLevel::None => Style::new().add_modifier(Modifier::REVERSED),
            _ => self.bg((50, 56, 80), 238, Color::DarkGray),
        }
    }
    pub fn border(&self) -> Style {
        self.fg((90, 95, 110), 240, Color::DarkGray)
    }
    pub fn border_focused(&self) -> Style {
        self.fg((120, 170, 255), 75, Color::LightBlue)
    }
    pub fn key(&self) -> Style {
        self.fg((240, 200, 120), 222, Color::Yellow)
    }

    /// A syntax-highlighting colour at this level; under 16 colours syntax colour is left
    /// out (approximations there hurt more than they help), and under NO_COLOR too.
    pub fn syntax(&self, r: u8, g: u8, b: u8) -> Option<Color> {
        match self.level {
            ColorLevel::TrueColor => Some(Color::Rgb(r, g, b)),
            ColorLevel::Ansi256 => Some(Color::Indexed(rgb_to_256(r, g, b))),
            _ => None,
        }
    }

    /// An ANSI colour from program output (SGR 30–37, 90–97, 38;5, 38;2).
    pub fn ansi(&self, c: Color) -> Option<Color> {
        match (self.level, c) {
            (ColorLevel::None, _) => None,
            (ColorLevel::Ansi16, Color::Rgb(r, g, b)) => Some(rgb_to_16(r, g, b)),
            (ColorLevel::Ansi16, Color::Indexed(i)) if i >= 16 => None,
            (ColorLevel::Ansi256, Color::Rgb(r, g, b)) => Some(Color::Indexed(rgb_to_256(r, g, b))),
            _ => Some(c),
        }
    }
}

/// Nearest colour of the xterm 6×6×6 cube or grey ramp.
pub fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    let to6 = |v: u8| -> u8 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    let (cr, cg, cb) = (to6(r), to6(g), to6(b));
    let cube = 16 + 36 * cr + 6 * cg + cb;
    let level = |c: u8| if c == 0 { 0 } else { 55 + c as i32 * 40 };
    let cube_err = (level(cr) - r as i32).pow(2)
        + (level(cg) - g as i32).pow(2)
        + (level(cb) - b as i32).pow(2);
    let avg = (r as i32 + g as i32 + b as i32) / 3;
    let grey_idx = ((avg - 8).max(0) / 10).min(23);
    let grey = 8 + grey_idx * 10;
    let grey_err = (grey - r as i32).pow(2) + (grey - g as i32).pow(2) + (grey - b as i32).pow(2);
    if grey_err < cube_err {
        232 + grey_idx as u8
    } else {
        cube
    }
}

fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    let bright = r.max(g).max(b) > 170;
    match (r > 100, g > 100, b > 100, bright) {
        (false, false, false, _) => Color::DarkGray,
        (true, false, false, false) => Color::Red,
        (true, false, false, true) => Color::LightRed,
        (false, true, false, false) => Color::Green,
        (false, true, false, true) => Color::LightGreen,
        (true, true, false, _) => Color::Yellow,
        (false, false, true, false) => Color::Blue,
        (false, false, true, true) => Color::LightBlue,
        (true, false, true, _) => Color::Magenta,
        (false, true, true, _) => Color::Cyan,
        (true, true, true, _) => Color::White,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            ColorLevel::detect(env(&[("NO_COLOR", "1"), ("COLORTERM", "truecolor")])),
            ColorLevel::None
        );
        assert_eq!(
            ColorLevel::detect(env(&[("COLORTERM", "truecolor")])),
            ColorLevel::TrueColor
        );
        assert_eq!(
            ColorLevel::detect(env(&[("TERM", "xterm-256color")])),
            ColorLevel::Ansi256
        );
        assert_eq!(
            ColorLevel::detect(env(&[("TERM", "xterm")])),
            ColorLevel::Ansi16
        );
    }

    #[test]
    fn no_color_sets_no_colour_anywhere() {
        let t = Theme::new(ColorLevel::None);
        for s in [
            t.added(),
            t.removed(),
            t.error(),
            t.header(),
            t.user(),
            t.added_emph(),
        ] {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
        assert_eq!(t.syntax(1, 2, 3), None);
    }

    #[test]
    fn cube_and_grey_mapping() {
        assert_eq!(rgb_to_256(255, 0, 0), 196);
        assert_eq!(rgb_to_256(128, 128, 128), 244);
    }
}
