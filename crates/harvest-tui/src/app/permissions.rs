//! Answering a waiting permission request from the keyboard.

use super::{App, Cmd, Focus};
use crate::keymap::Key;
use crossterm::event::KeyCode;

impl App {
    /// y allow once · a always · n deny · e edit the command, while a permission request
    /// waits and nothing is being typed (so the keys never steal a draft's letters).
    /// Answer keys act only while the prompt has the focus (Tab takes it there), so text
    /// typed into the input box never answers a request by accident.
    pub(super) fn permission_key(&mut self, key: Key) -> Option<Vec<Cmd>> {
        if self.focus == Focus::Prompt && self.transcript.permissions.is_empty() {
            self.focus = Focus::Input;
        }
        if self.focus != Focus::Prompt {
            return None;
        }
        let pending = self.transcript.permissions.first()?.clone();
        let answering = self.editing_permission.is_some() || self.denying_permission.is_some();
        if answering || !key.mods.is_empty() {
            return None;
        }
        let armed = std::mem::take(&mut self.always_armed);
        let decide = |d: &str| {
            Some(vec![Cmd::Approve {
                request_id: pending.request_id.clone(),
                decision: d.into(),
                input: None,
                message: None,
            }])
        };
        match key.code {
            KeyCode::Char('y') => {
                self.focus = Focus::Input;
                decide("allow")
            }
            // "Always" lets every later call of the tool through: it asks for a second key.
            KeyCode::Char('a') if armed => {
                self.focus = Focus::Input;
                decide("always")
            }
            KeyCode::Char('a') => {
                self.always_armed = true;
                self.toast(&format!(
                    "press a again to allow {} for the rest of this session",
                    pending.tool
                ));
                Some(Vec::new())
            }
            KeyCode::Esc => {
                self.focus = Focus::Input;
                Some(Vec::new())
            }
            KeyCode::Char('n') => {
                self.focus = Focus::Input;
                self.denying_permission = Some(pending.request_id);
                self.toast("why not? (optional, for the agent) · Enter denies · Esc backs out");
                Some(Vec::new())
            }
            KeyCode::Char('e') => {
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
}
