//! The terminal backend: ratatui's cells written as escape sequences, with the 16 named
//! colours as their own SGR codes (30–37, 90–97, 40–47, 100–107). crossterm writes every
//! named colour as a 256-colour index (`38;5;n`), which a 16-colour terminal (TERM=xterm,
//! the Linux console, many serial and SSH setups) shows wrongly or not at all.

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::terminal::{Clear, ClearType};
use crossterm::{execute, queue};
use ratatui::backend::{Backend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::style::{Color, Modifier};
use std::io::{self, Write};

pub struct TermBackend<W: Write> {
    out: W,
}

impl<W: Write> TermBackend<W> {
    pub fn new(out: W) -> Self {
        TermBackend { out }
    }
}

/// The SGR parameters that set `fg` (or, with `bg`, the background).
fn color_code(c: Color, bg: bool) -> String {
    let base = |n: u8| {
        // Normal colours 30–37 (40–47), bright ones 90–97 (100–107).
        let (off, n) = if n < 8 { (30, n) } else { (90, n - 8) };
        (off + u16::from(n) + if bg { 10 } else { 0 }).to_string()
    };
    match c {
        Color::Reset => if bg { "49" } else { "39" }.to_owned(),
        Color::Black => base(0),
        Color::Red => base(1),
        Color::Green => base(2),
        Color::Yellow => base(3),
        Color::Blue => base(4),
        Color::Magenta => base(5),
        Color::Cyan => base(6),
        Color::Gray => base(7),
        Color::DarkGray => base(8),
        Color::LightRed => base(9),
        Color::LightGreen => base(10),
        Color::LightYellow => base(11),
        Color::LightBlue => base(12),
        Color::LightMagenta => base(13),
        Color::LightCyan => base(14),
        Color::White => base(15),
        Color::Indexed(n) if n < 16 => base(n),
        Color::Indexed(n) => format!("{};5;{n}", if bg { 48 } else { 38 }),
        Color::Rgb(r, g, b) => format!("{};2;{r};{g};{b}", if bg { 48 } else { 38 }),
    }
}

/// One SGR sequence that sets exactly these modifiers and colours (from a reset).
pub fn sgr(modifier: Modifier, fg: Color, bg: Color) -> String {
    let mut codes = vec!["0".to_owned()];
    for (m, code) in [
        (Modifier::BOLD, "1"),
        (Modifier::DIM, "2"),
        (Modifier::ITALIC, "3"),
        (Modifier::UNDERLINED, "4"),
        (Modifier::SLOW_BLINK, "5"),
        (Modifier::RAPID_BLINK, "6"),
        (Modifier::REVERSED, "7"),
        (Modifier::HIDDEN, "8"),
        (Modifier::CROSSED_OUT, "9"),
    ] {
        if modifier.contains(m) {
            codes.push(code.to_owned());
        }
    }
    if fg != Color::Reset {
        codes.push(color_code(fg, false));
    }
    if bg != Color::Reset {
        codes.push(color_code(bg, true));
    }
    format!("\x1b[{}m", codes.join(";"))
}

impl<W: Write> Write for TermBackend<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Backend for TermBackend<W> {
    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut style = (Modifier::empty(), Color::Reset, Color::Reset);
        let mut last: Option<(u16, u16)> = None;
        for (x, y, cell) in content {
            if !matches!(last, Some((lx, ly)) if x == lx + 1 && y == ly) {
                queue!(self.out, MoveTo(x, y))?;
            }
            last = Some((x, y));
            let want = (cell.modifier, cell.fg, cell.bg);
            if want != style {
                self.out.write_all(sgr(want.0, want.1, want.2).as_bytes())?;
                style = want;
            }
            self.out.write_all(cell.symbol().as_bytes())?;
        }
        self.out.write_all(b"\x1b[0m")
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        execute!(self.out, Hide)
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        execute!(self.out, Show)
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        crossterm::cursor::position().map(|(x, y)| Position { x, y })
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let p = position.into();
        execute!(self.out, MoveTo(p.x, p.y))
    }

    fn clear(&mut self) -> io::Result<()> {
        execute!(self.out, Clear(ClearType::All))
    }

    fn size(&self) -> io::Result<Size> {
        let (width, height) = crossterm::terminal::size()?;
        Ok(Size { width, height })
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        let w = crossterm::terminal::window_size()?;
        Ok(WindowSize {
            columns_rows: Size {
                width: w.columns,
                height: w.rows,
            },
            pixels: Size {
                width: w.width,
                height: w.height,
            },
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::text::{Line, Span};
    use ratatui::widgets::Paragraph;

    /// What a 16-colour theme draws reaches the terminal as 16-colour codes.
    #[test]
    fn named_colours_go_out_as_their_own_sgr_codes_never_as_256_colour_indexes() {
        let mut out = Vec::new();
        {
            // A fixed-size frame: the terminal's own size is not asked for.
            let backend = TermBackend::new(&mut out);
            let mut term = Terminal::with_options(
                backend,
                ratatui::TerminalOptions {
                    viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 20, 1)),
                },
            )
            .unwrap();
            term.draw(|f| {
                let line = Line::from(vec![
                    Span::styled("dim", ratatui::style::Style::new().fg(Color::DarkGray)),
                    Span::styled(
                        "red",
                        ratatui::style::Style::new().fg(Color::Red).bg(Color::Blue),
                    ),
                    Span::styled(
                        "ok",
                        ratatui::style::Style::new()
                            .fg(Color::LightGreen)
                            .add_modifier(Modifier::BOLD),
                    ),
                ]);
                f.render_widget(Paragraph::new(line), f.area());
            })
            .unwrap();
        }
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("38;5;"), "{text:?}");
        assert!(!text.contains("48;5;"), "{text:?}");
        assert!(text.contains("\x1b[0;90mdim"), "{text:?}");
        assert!(text.contains("\x1b[0;31;44mred"), "{text:?}");
        assert!(text.contains("\x1b[0;1;92mok"), "{text:?}");
    }

    #[test]
    fn other_colours_keep_their_full_form() {
        assert_eq!(
            sgr(Modifier::empty(), Color::Indexed(75), Color::Reset),
            "\x1b[0;38;5;75m"
        );
        assert_eq!(
            sgr(Modifier::empty(), Color::Reset, Color::Rgb(1, 2, 3)),
            "\x1b[0;48;2;1;2;3m"
        );
        assert_eq!(
            sgr(Modifier::REVERSED, Color::Reset, Color::Reset),
            "\x1b[0;7m"
        );
    }
}
