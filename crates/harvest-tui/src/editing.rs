//! The input box's editing keys, as a shell or Claude Code's prompt has them: readline's
//! C-a, C-e, C-u, C-k, C-w, M-b, M-f, M-d; Up and Down move within a multi-line draft and
//! recall earlier prompts at its top and bottom edges; Home and End go to the line's ends.
//! The panes keep PgUp/PgDn (and every key when they have the focus).

use crossterm::event::{KeyCode, KeyModifiers};
use tui_textarea::{CursorMove, TextArea};

/// Prompts sent in a session, newest last, and where browsing them stands.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub entries: Vec<String>,
    /// While browsing: the entry shown, and the draft that was there before.
    browsing: Option<(usize, String)>,
}

/// How many prompts a session's history keeps.
pub const HISTORY_MAX: usize = 200;

impl History {
    pub fn new(entries: Vec<String>) -> History {
        History {
            entries,
            browsing: None,
        }
    }

    /// Take the session's prompts as they stand (every client's, from the transcript),
    /// unless browsing is under way.
    pub fn refresh(&mut self, prompts: impl Iterator<Item = String>) {
        if self.browsing.is_none() {
            self.entries = prompts.collect();
            let over = self.entries.len().saturating_sub(HISTORY_MAX);
            self.entries.drain(..over);
        }
    }

    pub fn push(&mut self, text: &str) {
        self.browsing = None;
        if text.trim().is_empty() || self.entries.last().is_some_and(|l| l == text) {
            return;
        }
        self.entries.push(text.to_owned());
        let over = self.entries.len().saturating_sub(HISTORY_MAX);
        self.entries.drain(..over);
    }

    /// The older entry to show instead of `current`, if there is one.
    fn older(&mut self, current: &str) -> Option<String> {
        let next = match &self.browsing {
            None => {
                let last = self.entries.len().checked_sub(1)?;
                self.browsing = Some((last, current.to_owned()));
                last
            }
            Some((0, _)) => return None,
            Some((i, saved)) => {
                let i = i - 1;
                self.browsing = Some((i, saved.clone()));
                i
            }
        };
        self.entries.get(next).cloned()
    }

    /// The newer entry, or the draft from before browsing once past the newest.
    fn newer(&mut self) -> Option<String> {
        let (i, saved) = self.browsing.clone()?;
        if i + 1 >= self.entries.len() {
            self.browsing = None;
            return Some(saved);
        }
        self.browsing = Some((i + 1, saved));
        self.entries.get(i + 1).cloned()
    }
}

/// What an editing key did: handled (the input changed or its cursor moved), or not one.
pub enum Edit {
    Done,
    /// Replace the whole draft (a history entry).
    Replace(String),
    NotMine,
}

pub fn key(
    input: &mut TextArea<'static>,
    history: &mut History,
    code: KeyCode,
    mods: KeyModifiers,
) -> Edit {
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    let alt = mods.contains(KeyModifiers::ALT);
    let (row, _) = input.cursor();
    let last_row = input.lines().len().saturating_sub(1);
    let mv = |input: &mut TextArea<'static>, m| {
        input.move_cursor(m);
        Edit::Done
    };
    match (code, ctrl, alt) {
        (KeyCode::Char('a'), true, false) => mv(input, CursorMove::Head),
        (KeyCode::Char('e'), true, false) => mv(input, CursorMove::End),
        (KeyCode::Char('u'), true, false) => {
            input.delete_line_by_head();
            Edit::Done
        }
        (KeyCode::Char('k'), true, false) => {
            input.delete_line_by_end();
            Edit::Done
        }
        (KeyCode::Char('w'), true, false) => {
            input.delete_word();
            Edit::Done
        }
        (KeyCode::Char('b'), false, true) => mv(input, CursorMove::WordBack),
        (KeyCode::Char('f'), false, true) => mv(input, CursorMove::WordForward),
        (KeyCode::Char('d'), false, true) => {
            input.delete_next_word();
            Edit::Done
        }
        (KeyCode::Home, false, false) => mv(input, CursorMove::Head),
        (KeyCode::End, false, false) => mv(input, CursorMove::End),
        (KeyCode::Up, false, false) if row > 0 => mv(input, CursorMove::Up),
        (KeyCode::Down, false, false) if row < last_row => mv(input, CursorMove::Down),
        (KeyCode::Up, false, false) => {
            let current = input.lines().join("\n");
            match history.older(&current) {
                Some(text) => Edit::Replace(text),
                None => Edit::Done,
            }
        }
        (KeyCode::Down, false, false) => match history.newer() {
            Some(text) => Edit::Replace(text),
            None => Edit::Done,
        },
        _ => Edit::NotMine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(text: &str) -> TextArea<'static> {
        let mut t = TextArea::default();
        t.insert_str(text);
        t
    }

    fn apply(t: &mut TextArea<'static>, h: &mut History, code: KeyCode, mods: KeyModifiers) {
        if let Edit::Replace(text) = key(t, h, code, mods) {
            *t = area(&text);
        }
    }

    #[test]
    fn readline_keys_edit_the_line() {
        let mut h = History::default();
        let mut t = area("hello brave world");
        apply(&mut t, &mut h, KeyCode::Char('w'), KeyModifiers::CONTROL);
        assert_eq!(t.lines(), ["hello brave "]);
        apply(&mut t, &mut h, KeyCode::Char('a'), KeyModifiers::CONTROL);
        apply(&mut t, &mut h, KeyCode::Char('k'), KeyModifiers::CONTROL);
        assert_eq!(t.lines(), [""]);
        let mut t = area("one two");
        apply(&mut t, &mut h, KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(
            t.lines(),
            [""],
            "C-u kills to the start of the line, it is not undo"
        );
    }

    #[test]
    fn up_and_down_move_within_a_draft_and_recall_history_at_its_edges() {
        let mut h = History::default();
        h.push("first prompt");
        h.push("second prompt");
        let mut t = area("line one\nline two");
        apply(&mut t, &mut h, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(t.cursor().0, 0, "Up moved within the draft");
        assert_eq!(t.lines(), ["line one", "line two"]);
        apply(&mut t, &mut h, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(t.lines(), ["second prompt"], "at the top edge Up recalls");
        apply(&mut t, &mut h, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(t.lines(), ["first prompt"]);
        apply(&mut t, &mut h, KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(t.lines(), ["second prompt"]);
        apply(&mut t, &mut h, KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(
            t.lines(),
            ["line one", "line two"],
            "past the newest: the draft is back"
        );
    }
}
