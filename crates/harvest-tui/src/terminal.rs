//! The terminal is always handed back: one function enters the modes, its inverse runs
//! from the guard's `Drop`, from the panic hook, and on SIGTERM/SIGHUP (which mean detach).

use crossterm::event::{DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use std::io::{Stdout, Write};

pub type Term = Terminal<crate::backend::TermBackend<Stdout>>;

pub struct TerminalGuard;

/// Take the mouse's clicks and wheel (`true`), or hand the mouse back to the terminal, whose
/// own selection then works (within one pane only by the terminal's rectangle selection).
pub fn set_mouse(on: bool) {
    let mut out = std::io::stdout();
    let _ = out.write_all(if on {
        b"\x1b[?1000h\x1b[?1006h"
    } else {
        b"\x1b[?1000l\x1b[?1006l"
    });
    let _ = out.flush();
}

impl TerminalGuard {
    /// `mouse`: capture the wheel (and clicks) only — press/release reports in SGR form,
    /// never all-motion tracking, which would break the terminal's own text selection
    /// more than needed; `false` leaves the mouse to the terminal altogether.
    pub fn enter(mouse: bool) -> std::io::Result<(TerminalGuard, Term)> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableBracketedPaste) {
            restore();
            return Err(e);
        }
        if mouse {
            let _ = out.write_all(b"\x1b[?1000h\x1b[?1006h");
            let _ = out.flush();
        }
        // Terminals that speak the kitty keyboard protocol report Shift-Enter apart from
        // Enter; others (tmux, most SSH terminals) keep Alt-Enter for a new line. Asking
        // waits for the terminal's answer (up to 2 s when it never answers), so only a
        // terminal that says it may speak the protocol is asked: no first frame waits.
        if may_speak_kitty_keys(|k| std::env::var(k).ok())
            && crossterm::terminal::supports_keyboard_enhancement().unwrap_or(false)
        {
            let _ = execute!(
                out,
                crossterm::event::PushKeyboardEnhancementFlags(
                    crossterm::event::KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES
                )
            );
            ENHANCED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let term = Terminal::new(crate::backend::TermBackend::new(std::io::stdout()))?;
        Ok((TerminalGuard, term))
    }
}

/// Whether the terminal, by its environment, may speak the kitty keyboard protocol (and
/// so answer the query at once). Multiplexers pass neither the query nor the keys on.
pub fn may_speak_kitty_keys(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("TMUX") || set("STY") {
        return false;
    }
    if set("KITTY_WINDOW_ID") || set("WEZTERM_PANE") || set("GHOSTTY_RESOURCES_DIR") {
        return true;
    }
    let term = env("TERM").unwrap_or_default();
    let program = env("TERM_PROGRAM").unwrap_or_default();
    ["kitty", "foot", "alacritty", "ghostty", "wezterm"]
        .iter()
        .any(|t| term.contains(t))
        || ["WezTerm", "ghostty", "iTerm.app"].contains(&program.as_str())
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

static ENHANCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leave every mode `enter` set. Safe to call more than once.
pub fn restore() {
    let mut out = std::io::stdout();
    if ENHANCED.swap(false, std::sync::atomic::Ordering::Relaxed) {
        let _ = execute!(out, crossterm::event::PopKeyboardEnhancementFlags);
    }
    let _ = disable_raw_mode();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Restore first, so the panic message lands on a usable terminal.
        restore();
        previous(info);
    }));
}

/// Ring the bell and raise a desktop notification (OSC 9, and OSC 777 for terminals that
/// speak that one instead); terminals that know neither ignore them.
pub fn notify(message: &str) {
    let clean: String = message.chars().filter(|c| !c.is_control()).collect();
    let mut out = std::io::stdout();
    let _ = write!(
        out,
        "\x07\x1b]9;{clean}\x07\x1b]777;notify;harvest;{clean}\x07"
    );
    let _ = out.flush();
}

/// A terminal multiplexer between us and the user's terminal, which OSC 52 must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    None,
    Tmux,
    Screen,
}

impl Mux {
    pub fn detect() -> Mux {
        if std::env::var_os("TMUX").is_some_and(|v| !v.is_empty()) {
            Mux::Tmux
        } else if std::env::var_os("STY").is_some_and(|v| !v.is_empty()) {
            Mux::Screen
        } else {
            Mux::None
        }
    }
}

/// The OSC 52 sequence that puts `text` on the clipboard, wrapped in the multiplexer's
/// passthrough (tmux: `DCS tmux; …ST` with every ESC doubled; screen: `DCS … ST`) so it
/// reaches the outer terminal.
pub fn osc52(text: &str, mux: Mux) -> String {
    let inner = format!("\x1b]52;c;{}\x07", base64(text.as_bytes()));
    match mux {
        Mux::None => inner,
        Mux::Tmux => format!("\x1bPtmux;{}\x1b\\", inner.replace('\x1b', "\x1b\x1b")),
        Mux::Screen => format!("\x1bP{inner}\x1b\\"),
    }
}

/// Copy with OSC 52, which terminals honour even over SSH, where no clipboard tool could
/// reach the user's machine; inside tmux, into tmux's own paste buffer too, which works
/// whatever tmux passes through. Returns what the user should know about where it went:
/// only what happened.
pub fn copy_osc52(text: &str) -> &'static str {
    let mux = Mux::detect();
    let mut out = std::io::stdout();
    let _ = out.write_all(osc52(text, mux).as_bytes());
    let _ = out.flush();
    match mux {
        Mux::None => "copied (OSC 52)",
        Mux::Tmux if tmux_buffer(text) => {
            "copied to tmux's paste buffer (prefix ] pastes; tmux hands it to your terminal's clipboard where its set-clipboard allows)"
        }
        Mux::Tmux => {
            "sent to the clipboard through tmux, which passes it only with `set -g allow-passthrough on` (tmux's own buffer was not reachable)"
        }
        Mux::Screen => "copied via screen's passthrough",
    }
}

/// `tmux load-buffer -w -` (`-w`: on to the outer terminal's clipboard, tmux ≥ 3.2; without
/// it on an older tmux): whether tmux took the text.
fn tmux_buffer(text: &str) -> bool {
    let load = |args: &[&str]| {
        let child = std::process::Command::new("tmux")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return false;
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        child.wait().is_ok_and(|s| s.success())
    };
    load(&["load-buffer", "-w", "-"]) || load(&["load-buffer", "-"])
}

#[cfg(test)]
mod osc52_tests {
    use super::*;

    #[test]
    fn only_terminals_that_may_answer_are_asked_for_their_keyboard_protocol() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(may_speak_kitty_keys(env(&[("TERM", "xterm-kitty")])));
        assert!(may_speak_kitty_keys(env(&[("TERM_PROGRAM", "WezTerm")])));
        // Plain xterm, the Linux console, SSH into anything unknown: never asked.
        assert!(!may_speak_kitty_keys(env(&[("TERM", "xterm-256color")])));
        assert!(!may_speak_kitty_keys(env(&[("TERM", "linux")])));
        // Inside tmux or screen, whatever is outside.
        assert!(!may_speak_kitty_keys(env(&[
            ("TERM", "xterm-kitty"),
            ("TMUX", "/tmp/tmux-0/default,1,0")
        ])));
        assert!(!may_speak_kitty_keys(env(&[
            ("KITTY_WINDOW_ID", "1"),
            ("STY", "123.pts-0")
        ])));
    }

    #[test]
    fn osc52_is_wrapped_for_each_multiplexer() {
        assert_eq!(osc52("hi", Mux::None), "\x1b]52;c;aGk=\x07");
        assert_eq!(
            osc52("hi", Mux::Tmux),
            "\x1bPtmux;\x1b\x1b]52;c;aGk=\x07\x1b\\"
        );
        assert_eq!(osc52("hi", Mux::Screen), "\x1bP\x1b]52;c;aGk=\x07\x1b\\");
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
