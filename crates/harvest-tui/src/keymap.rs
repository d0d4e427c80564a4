//! Key bindings: one table drives the key handler, the footer hints and the help overlay,
//! so a hint can never advertise a key that does nothing. Defaults below; every action is
//! rebindable in `harvest.toml` under `[keys]` (see config/harvest.toml).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
pub use harvest_config::KeysConfig;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Send,
    Newline,
    Cancel,
    Detach,
    Sessions,
    Resume,
    FocusNext,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Follow,
    Expand,
    Copy,
    Help,
    Search,
    NextMatch,
    PrevMatch,
    NextTool,
    PrevTool,
    NextError,
    PrevError,
    Review,
    SendNow,
    Zoom,
    SplitLeft,
    SplitRight,
    Mouse,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::Send,
        Action::Newline,
        Action::Cancel,
        Action::Detach,
        Action::Sessions,
        Action::Resume,
        Action::FocusNext,
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Top,
        Action::Bottom,
        Action::Follow,
        Action::Expand,
        Action::Copy,
        Action::Help,
        Action::Search,
        Action::NextMatch,
        Action::PrevMatch,
        Action::NextTool,
        Action::PrevTool,
        Action::NextError,
        Action::PrevError,
        Action::Review,
        Action::SendNow,
        Action::Zoom,
        Action::SplitLeft,
        Action::SplitRight,
        Action::Mouse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Newline => "newline",
            Action::Cancel => "cancel",
            Action::Detach => "detach",
            Action::Sessions => "sessions",
            Action::Resume => "resume",
            Action::FocusNext => "focus_next",
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page_up",
            Action::PageDown => "page_down",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::Follow => "follow",
            Action::Expand => "expand",
            Action::Copy => "copy",
            Action::Help => "help",
            Action::Search => "search",
            Action::NextMatch => "next_match",
            Action::PrevMatch => "prev_match",
            Action::NextTool => "next_tool",
            Action::PrevTool => "prev_tool",
            Action::NextError => "next_error",
            Action::PrevError => "prev_error",
            Action::Review => "review",
            Action::SendNow => "send_now",
            Action::Zoom => "zoom",
            Action::SplitLeft => "split_left",
            Action::SplitRight => "split_right",
            Action::Mouse => "mouse",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Send => "send the message",
            Action::Newline => "new line in the message",
            Action::Cancel => "cancel the running turn (C-c twice: detach)",
            Action::Detach => "detach; the session keeps running",
            Action::Sessions => "session picker",
            Action::Resume => "resume a finished session",
            Action::FocusNext => "switch pane focus",
            Action::Up => "up / previous item",
            Action::Down => "down / next item",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Top => "go to the top",
            Action::Bottom => "go to the end and follow",
            Action::Follow => "follow the tail on/off",
            Action::Expand => "expand or select the tool call",
            Action::Copy => "copy the selected block (OSC 52)",
            Action::Help => "this help",
            Action::Search => "search the conversation",
            Action::NextMatch => "next match of the search",
            Action::PrevMatch => "previous match",
            Action::NextTool => "next tool call",
            Action::PrevTool => "previous tool call",
            Action::NextError => "next error",
            Action::PrevError => "previous error",
            Action::Review => "review the session's changes (apply, pull request)",
            Action::SendNow => "send the queued messages into the running turn now",
            Action::Zoom => "zoom the focused pane to the whole width (again: back)",
            Action::SplitLeft => "move the split between the panes left",
            Action::SplitRight => "move the split between the panes right",
            Action::Mouse => "hand the mouse to the terminal (its own selection) and back",
        }
    }

    /// Actions that act on a pane; in the input box these keys type text instead.
    pub fn is_pane_action(self) -> bool {
        matches!(
            self,
            Action::Up
                | Action::Down
                | Action::Top
                | Action::Bottom
                | Action::Follow
                | Action::Expand
                | Action::Copy
                | Action::Help
                | Action::Search
                | Action::NextMatch
                | Action::PrevMatch
                | Action::NextTool
                | Action::PrevTool
                | Action::NextError
                | Action::PrevError
        )
    }
}

/// One key press: a code and its modifiers (Shift is folded into characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn from_event(ev: &KeyEvent) -> Key {
        let mut mods =
            ev.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        if let KeyCode::Char(_) = ev.code {
            mods.remove(KeyModifiers::SHIFT);
        }
        Key {
            code: ev.code,
            mods,
        }
    }

    pub fn parse(spec: &str) -> Result<Key, String> {
        let mut mods = KeyModifiers::NONE;
        let parts: Vec<&str> = spec.split('-').collect();
        let (name, modifiers) = match parts.split_last() {
            // "-" itself, or a trailing "-": the minus key.
            Some((last, rest)) if last.is_empty() && !rest.is_empty() => {
                ("-", &rest[..rest.len() - 1])
            }
            Some((last, rest)) => (*last, rest),
            None => return Err(format!("empty key {spec:?}")),
        };
        for m in modifiers {
            match m.to_lowercase().as_str() {
                "ctrl" | "c" => mods |= KeyModifiers::CONTROL,
                "alt" | "m" | "meta" => mods |= KeyModifiers::ALT,
                "shift" | "s" => mods |= KeyModifiers::SHIFT,
                other => return Err(format!("unknown modifier {other:?} in {spec:?}")),
            }
        }
        let code = match name.to_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            _ if name.chars().count() == 1 => KeyCode::Char(name.chars().next().unwrap_or(' ')),
            _ => return Err(format!("unknown key {name:?} in {spec:?}")),
        };
        if let KeyCode::Char(_) = code {
            mods.remove(KeyModifiers::SHIFT);
        }
        Ok(Key { code, mods })
    }

    /// Short form for hints: `C-b`, `M-Enter`, `Esc`, `?`.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("C-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("Alt-");
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            s.push_str("Shift-");
        }
        s.push_str(&match self.code {
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Char(' ') => "Space".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Backspace => "BS".into(),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        });
        s
    }
}

/// A binding is a key, optionally after the prefix key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub after_prefix: bool,
    pub key: Key,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub prefix: Key,
    /// The prefix is `ctrl-g` because this runs inside tmux and no prefix was chosen.
    pub prefix_moved_for_tmux: bool,
    pub bindings: BTreeMap<Action, Vec<Binding>>,
}

const DEFAULTS: &[(Action, &[&str])] = &[
    (Action::Send, &["enter"]),
    (Action::Newline, &["alt-enter", "shift-enter", "ctrl-j"]),
    (Action::Cancel, &["esc", "ctrl-c"]),
    (Action::Detach, &["prefix d"]),
    (Action::Sessions, &["prefix s"]),
    (Action::Resume, &["prefix r"]),
    (Action::FocusNext, &["tab"]),
    (Action::Up, &["k", "up"]),
    (Action::Down, &["j", "down"]),
    (Action::PageUp, &["pgup"]),
    (Action::PageDown, &["pgdn"]),
    (Action::Top, &["g", "home"]),
    (Action::Bottom, &["G", "end"]),
    (Action::Follow, &["f"]),
    (Action::Expand, &["space", "enter"]),
    (Action::Copy, &["y"]),
    (Action::Help, &["?", "prefix ?"]),
    (Action::Search, &["/"]),
    (Action::NextMatch, &["n"]),
    (Action::PrevMatch, &["N"]),
    (Action::NextTool, &["]"]),
    (Action::PrevTool, &["["]),
    (Action::NextError, &["}"]),
    (Action::PrevError, &["{"]),
    (Action::Review, &["prefix v"]),
    (Action::SendNow, &["ctrl-s"]),
    (Action::Zoom, &["prefix z"]),
    (Action::SplitLeft, &["prefix <"]),
    (Action::SplitRight, &["prefix >"]),
    (Action::Mouse, &["prefix m"]),
];

impl Default for Keymap {
    fn default() -> Self {
        Self::from_config(&KeysConfig::default()).unwrap_or_else(|_| Keymap {
            prefix: Key {
                code: KeyCode::Char('b'),
                mods: KeyModifiers::CONTROL,
            },
            bindings: BTreeMap::new(),
            prefix_moved_for_tmux: false,
        })
    }
}

/// The prefix inside tmux when the user chose none.
pub const TMUX_PREFIX: &str = "ctrl-g";

impl Keymap {
    pub fn from_config(cfg: &KeysConfig) -> Result<Keymap, String> {
        Self::for_terminal(cfg, false)
    }

    /// Inside tmux (`$TMUX` set) a user who chose no prefix gets `ctrl-g`: tmux's own
    /// prefix is `ctrl-b`, so `C-b d` would detach tmux instead of Harvest.
    pub fn for_terminal(cfg: &KeysConfig, in_tmux: bool) -> Result<Keymap, String> {
        let default = if in_tmux { TMUX_PREFIX } else { "ctrl-b" };
        let mut km = Self::with_prefix(cfg, cfg.prefix.as_deref().unwrap_or(default))?;
        km.prefix_moved_for_tmux = in_tmux && cfg.prefix.is_none();
        Ok(km)
    }

    fn with_prefix(cfg: &KeysConfig, prefix: &str) -> Result<Keymap, String> {
        let prefix = Key::parse(prefix)?;
        let mut bindings = BTreeMap::new();
        for (action, keys) in DEFAULTS {
            let specs: Vec<String> = match cfg.bind.get(action.name()) {
                Some(user) => user.clone(),
                None => keys.iter().map(|s| s.to_string()).collect(),
            };
            bindings.insert(
                *action,
                specs.iter().map(|s| binding(s)).collect::<Result<_, _>>()?,
            );
        }
        for name in cfg.bind.keys() {
            if !Action::ALL.iter().any(|a| a.name() == name) {
                return Err(format!(
                    "unknown action {name:?} in [keys.bind]; the actions are: {}",
                    Action::ALL
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(Keymap {
            prefix,
            bindings,
            prefix_moved_for_tmux: false,
        })
    }

    /// The action bound to a key. A key may serve two actions (Enter sends from the input
    /// box and expands a tool line in a pane): the focus decides. In the input box, plain
    /// character keys type text unless they follow the prefix.
    pub fn lookup(&self, key: Key, after_prefix: bool, in_input: bool) -> Option<Action> {
        let hits: Vec<Action> = self
            .bindings
            .iter()
            .filter(|(_, binds)| {
                binds
                    .iter()
                    .any(|b| b.after_prefix == after_prefix && b.key == key)
            })
            .map(|(a, _)| *a)
            .filter(|a| after_prefix || !in_input || !a.is_pane_action() || key_is_special(key))
            .collect();
        let preferred = hits.iter().find(|a| a.is_pane_action() != in_input);
        preferred.or(hits.first()).copied()
    }

    pub fn is_prefix(&self, key: Key) -> bool {
        key == self.prefix
    }

    /// How to press an action, for hints: the first binding.
    pub fn hint(&self, action: Action) -> String {
        self.bindings
            .get(&action)
            .and_then(|b| b.first())
            .map(|b| self.show(b))
            .unwrap_or_else(|| "unbound".into())
    }

    pub fn show(&self, b: &Binding) -> String {
        if b.after_prefix {
            format!("{} {}", self.prefix.display(), b.key.display())
        } else {
            b.key.display()
        }
    }
}

/// Keys that never type text, so pane actions bound to them work from the input box too.
fn key_is_special(key: Key) -> bool {
    !matches!(key.code, KeyCode::Char(_)) || key.mods.contains(KeyModifiers::CONTROL)
}

fn binding(spec: &str) -> Result<Binding, String> {
    match spec.strip_prefix("prefix ") {
        Some(rest) => Ok(Binding {
            after_prefix: true,
            key: Key::parse(rest.trim())?,
        }),
        None => Ok(Binding {
            after_prefix: false,
            key: Key::parse(spec.trim())?,
        }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_shipped_config_binds_what_the_defaults_bind() {
        let cfg = harvest_config::Config::parse(
            harvest_config::DEFAULT_CONFIG_TOML,
            std::path::Path::new("harvest.toml"),
        )
        .unwrap();
        let shipped = Keymap::from_config(&cfg.keys).unwrap();
        let defaults = Keymap::default();
        for action in Action::ALL {
            assert_eq!(
                shipped.bindings.get(action).map(Vec::len),
                defaults.bindings.get(action).map(Vec::len),
                "{} in config/harvest.toml",
                action.name()
            );
        }
    }

    use super::*;

    #[test]
    fn inside_tmux_the_default_prefix_does_not_clash_with_tmuxs() {
        let km = Keymap::for_terminal(&KeysConfig::default(), true).unwrap();
        assert!(km.prefix_moved_for_tmux);
        assert_eq!(km.prefix.display(), "C-g");
        let outside = Keymap::for_terminal(&KeysConfig::default(), false).unwrap();
        assert_eq!(outside.prefix.display(), "C-b");
    }

    fn key(code: KeyCode, mods: KeyModifiers) -> Key {
        Key { code, mods }
    }

    #[test]
    fn defaults_map_the_documented_keys() {
        let km = Keymap::default();
        assert_eq!(
            km.lookup(key(KeyCode::Enter, KeyModifiers::NONE), false, true),
            Some(Action::Send)
        );
        assert_eq!(
            km.lookup(key(KeyCode::Enter, KeyModifiers::ALT), false, true),
            Some(Action::Newline)
        );
        assert_eq!(
            km.lookup(key(KeyCode::Char('d'), KeyModifiers::NONE), true, true),
            Some(Action::Detach)
        );
        assert_eq!(
            km.lookup(key(KeyCode::Char('c'), KeyModifiers::CONTROL), false, true),
            Some(Action::Cancel)
        );
        // 'j' types in the input box but scrolls a pane.
        assert_eq!(
            km.lookup(key(KeyCode::Char('j'), KeyModifiers::NONE), false, true),
            None
        );
        assert_eq!(
            km.lookup(key(KeyCode::Char('j'), KeyModifiers::NONE), false, false),
            Some(Action::Down)
        );
        assert_eq!(
            km.lookup(key(KeyCode::Char('G'), KeyModifiers::NONE), false, false),
            Some(Action::Bottom)
        );
        assert_eq!(km.hint(Action::Detach), "C-b d");
        // Enter sends from the input box and expands in a pane.
        assert_eq!(
            km.lookup(key(KeyCode::Enter, KeyModifiers::NONE), false, false),
            Some(Action::Expand)
        );
    }

    #[test]
    fn rebinding_and_errors() {
        let cfg: KeysConfig = toml::from_str(
            "prefix = \"ctrl-a\"\n[bind]\ndetach = [\"prefix x\"]\nsend = [\"ctrl-s\"]\n",
        )
        .unwrap();
        let km = Keymap::from_config(&cfg).unwrap();
        // A prefix the user chose stays, inside tmux too.
        assert!(
            !Keymap::for_terminal(&cfg, true)
                .unwrap()
                .prefix_moved_for_tmux
        );
        assert_eq!(km.hint(Action::Detach), "C-a x");
        assert_eq!(
            km.lookup(key(KeyCode::Char('s'), KeyModifiers::CONTROL), false, true),
            Some(Action::Send)
        );
        let bad: KeysConfig = toml::from_str("[bind]\nexplode = [\"x\"]\n").unwrap();
        let err = Keymap::from_config(&bad).unwrap_err();
        assert!(err.contains("explode") && err.contains("detach"), "{err}");
        assert!(Key::parse("hyper-x").is_err());
    }
}
