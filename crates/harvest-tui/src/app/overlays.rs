//! Keys while an overlay is open: the session picker, the removal question, the new
//! session form.

use super::{App, Cmd, Exit, FromDaemon, McpTrust, Overlay, new_input};
use crate::keymap::Key;
use crate::transcript::Transcript;
use crate::view::conversation::ConversationView;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

impl App {
    /// The sessions the picker lists: all, or those matching its filter.
    pub fn picker_sessions(&self) -> Vec<&harvest_protocol::methods::SessionInfo> {
        let filter = match &self.overlay {
            Overlay::Picker {
                filter: Some(f), ..
            } if !f.is_empty() => f.to_lowercase(),
            _ => return self.sessions.iter().collect(),
        };
        self.sessions
            .iter()
            .filter(|s| {
                [
                    s.id.as_str(),
                    s.name.as_str(),
                    s.state.as_str(),
                    s.workspace.as_str(),
                    s.first_prompt.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|field| field.to_lowercase().contains(&filter))
            })
            .collect()
    }

    pub(super) fn picker_key(&mut self, key: Key) -> Vec<Cmd> {
        let shown: Vec<(String, String)> = self
            .picker_sessions()
            .iter()
            .map(|s| (s.id.to_string(), s.name.clone()))
            .collect();
        let Overlay::Picker { selected, filter } = &mut self.overlay else {
            return Vec::new();
        };
        let n = shown.len();
        // Typing a filter: printable keys go to it; Enter and the arrows still work.
        if let Some(f) = filter.as_mut() {
            match key.code {
                KeyCode::Char(c) if !key.mods.contains(KeyModifiers::CONTROL) => {
                    f.push(c);
                    *selected = 0;
                    return Vec::new();
                }
                KeyCode::Backspace => {
                    if f.pop().is_none() {
                        *filter = None;
                    }
                    *selected = 0;
                    return Vec::new();
                }
                KeyCode::Esc => {
                    *filter = None;
                    *selected = 0;
                    return Vec::new();
                }
                _ => {}
            }
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                *selected = (*selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Char('/') => {
                *filter = Some(String::new());
                *selected = 0;
            }
            KeyCode::Enter => {
                if let Some((id, _)) = shown.get(*selected) {
                    let id = id.clone();
                    self.overlay = Overlay::None;
                    return vec![Cmd::Attach(id)];
                }
            }
            KeyCode::Char('n') => {
                let mut workspace = new_input(&self.theme);
                workspace.set_placeholder_text("");
                workspace.insert_str(&self.cwd);
                self.overlay = Overlay::NewSession {
                    workspace: Box::new(workspace),
                    prompt: Box::new(new_input(&self.theme)),
                    on_prompt: true,
                    error: None,
                };
            }
            KeyCode::Char('x') => {
                if let Some((id, name)) = shown.get(*selected) {
                    self.overlay = Overlay::ConfirmRemove {
                        id: id.clone(),
                        name: name.clone(),
                    };
                }
            }
            KeyCode::Esc | KeyCode::Char('q') => {
                if self.session.is_some() {
                    self.overlay = Overlay::None;
                } else {
                    self.exit = Some(Exit::Detach);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    pub(super) fn confirm_key(&mut self, key: Key) -> Vec<Cmd> {
        let Overlay::ConfirmRemove { id, .. } = &self.overlay else {
            return Vec::new();
        };
        let id = id.clone();
        self.overlay = Overlay::picker();
        if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
            if self.session.as_ref().is_some_and(|s| s.id.as_str() == id) {
                self.session = None;
                self.transcript = Transcript::default();
                self.conv = ConversationView::new();
            }
            return vec![Cmd::Remove(id), Cmd::ListSessions];
        }
        Vec::new()
    }

    pub(super) fn new_session_key(&mut self, ev: KeyEvent) -> Vec<Cmd> {
        let Overlay::NewSession {
            workspace,
            prompt,
            on_prompt,
            ..
        } = &mut self.overlay
        else {
            return Vec::new();
        };
        match (ev.code, ev.modifiers) {
            (KeyCode::Esc, _) => self.overlay = Overlay::picker(),
            (KeyCode::Tab, _) | (KeyCode::BackTab, _) => *on_prompt = !*on_prompt,
            (KeyCode::Enter, m) if !m.contains(KeyModifiers::ALT) => {
                let ws = workspace.lines().join("");
                let text = prompt.lines().join("\n");
                if text.trim().is_empty() {
                    self.toast("type a prompt first");
                    return Vec::new();
                }
                self.overlay = Overlay::None;
                return vec![Cmd::Create {
                    workspace: ws,
                    prompt: text,
                    trust: McpTrust::Ask,
                }];
            }
            _ => {
                if *on_prompt {
                    prompt.input(ev);
                } else {
                    workspace.input(ev);
                }
            }
        }
        Vec::new()
    }

    /// The `.mcp.json` question: `y` trusts the file (remembered while it stays the
    /// same), `n` starts the session without its servers, Esc goes back to the form.
    pub(super) fn trust_key(&mut self, ev: KeyEvent) -> Vec<Cmd> {
        let Overlay::TrustMcp {
            workspace,
            prompt,
            name,
            ..
        } = &self.overlay
        else {
            return Vec::new();
        };
        let (workspace, prompt, name) = (workspace.clone(), prompt.clone(), name.clone());
        let trust = match ev.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => McpTrust::Trust(name),
            KeyCode::Char('n') | KeyCode::Char('N') => McpTrust::Decline,
            KeyCode::Esc => {
                self.on_daemon(FromDaemon::CreateFailed {
                    workspace,
                    prompt,
                    error:
                        "not started: the project's MCP servers were neither trusted nor declined"
                            .into(),
                });
                return Vec::new();
            }
            _ => return Vec::new(),
        };
        self.overlay = Overlay::None;
        vec![Cmd::Create {
            workspace,
            prompt,
            trust,
        }]
    }
}
