//! Answering a waiting permission request from the keyboard.

use super::{App, Cmd, Focus};
use crate::keymap::Key;
use crossterm::event::KeyCode;

impl App {
    /// One key answers a waiting permission request: `1` or `y` allow once, `2` always
    /// allow the tool, `3` or `n` deny (with an optional reason).
    /// They act from the input box while it is empty, so a request needs no Tab; with a
    /// draft in the box every key is the draft's, and Tab takes the focus to the request,
    /// where `a` means always too and `e` edits the command. (`a` never answers from the input: "add tests" typed
    /// into an empty box must not allow a tool for the rest of the session.)
    pub(super) fn permission_key(&mut self, key: Key) -> Option<Vec<Cmd>> {
        if self.focus == Focus::Prompt && self.transcript.permissions.is_empty() {
            self.focus = Focus::Input;
        }
        let from_empty_input = self.focus == Focus::Input
            && matches!(self.overlay, super::Overlay::None)
            && self.draft().is_empty();
        if self.focus != Focus::Prompt && !from_empty_input {
            return None;
        }
        let pending = self.transcript.permissions.first()?.clone();
        let answering = self.editing_permission.is_some() || self.denying_permission.is_some();
        if answering || !key.mods.is_empty() {
            return None;
        }
        let decide = |d: &str| {
            Some(vec![Cmd::Approve {
                request_id: pending.request_id.clone(),
                decision: d.into(),
                input: None,
                message: None,
            }])
        };
        let via_prompt = self.focus == Focus::Prompt;
        match key.code {
            KeyCode::Char('y') | KeyCode::Char('1') => {
                self.focus = Focus::Input;
                decide("allow")
            }
            KeyCode::Char('2') => self.allow_always(&pending.tool, decide),
            KeyCode::Char('a') if via_prompt => self.allow_always(&pending.tool, decide),
            KeyCode::Esc if self.focus == Focus::Prompt => {
                self.focus = Focus::Input;
                Some(Vec::new())
            }
            KeyCode::Char('n') | KeyCode::Char('3') => {
                self.focus = Focus::Input;
                self.denying_permission = Some(pending.request_id);
                self.toast("why not? (optional, for the agent) · Enter denies · Esc backs out");
                Some(Vec::new())
            }
            KeyCode::Char('e') if via_prompt && pending.input["command"].is_string() => {
                let command = pending.input["command"].as_str().unwrap_or("").to_owned();
                self.set_draft(&command);
                self.focus = Focus::Input;
                self.editing_permission = Some(pending.request_id);
                self.toast("edit the command, Enter allows it");
                Some(Vec::new())
            }
            _ => None,
        }
    }

    fn allow_always(
        &mut self,
        tool: &str,
        decide: impl Fn(&str) -> Option<Vec<Cmd>>,
    ) -> Option<Vec<Cmd>> {
        self.focus = Focus::Input;
        self.toast(&format!("{tool} is allowed for the rest of this session"));
        decide("always")
    }
}
