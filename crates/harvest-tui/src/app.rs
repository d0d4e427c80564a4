//! The client's state and what keys and daemon messages do to it. Input handlers change
//! state and return commands for the connection task; they never touch the socket, so the
//! UI never waits on the daemon.

use crate::keymap::{Action, Key, Keymap};
use crate::theme::Theme;
use crate::transcript::{Item, Transcript};
use crate::view::conversation::ConversationView;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use harvest_protocol::Event;
use harvest_protocol::methods::SessionInfo;
use ratatui::text::Line;
use std::time::{Duration, Instant};
use tui_textarea::TextArea;

mod overlays;
mod permissions;
pub mod review;
mod search;

/// What the UI asks of the connection task.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Send(String),
    /// Take back queued follow-ups (one by id, or all) into the input box.
    Withdraw(Option<String>),
    /// Queued follow-ups to the running turn now.
    SendNow,
    Cancel,
    Resume,
    Attach(String),
    ListSessions,
    Remove(String),
    Create {
        workspace: String,
        prompt: String,
        /// The user's word on the folder's `.mcp.json`, once asked.
        trust: McpTrust,
    },
    Approve {
        request_id: String,
        decision: String,
        input: Option<serde_json::Value>,
        message: Option<String>,
    },
    /// The full output the CLI saved for a tool call, read inside the sandbox by the
    /// daemon (never from host paths: the agent controls that file).
    ReadOutput {
        tool_id: String,
        path: String,
    },
    /// The attached session's changes against its base, for the review view.
    Diff,
    /// Bring them into the checkout the session was cloned from: exactly the changes
    /// the review view shows (not a newer diff the agent may have made meanwhile).
    Apply(Box<harvest_protocol::methods::DiffResult>),
    /// Commit, push and open the pull request (the token from this client's environment).
    Pr,
}

/// What the connection task tells the UI.
#[derive(Debug)]
pub enum FromDaemon {
    Connected,
    Disconnected(String),
    Attached(SessionInfo),
    Event(Box<Event>),
    Lagged,
    Sessions(Vec<SessionInfo>),
    /// No session to attach to: open the picker.
    NoSession,
    /// Only the tail of a long session is coming live; its older history follows.
    HistoryPending,
    /// The older history, folded, to go in front of the tail.
    History(Box<Transcript>),
    Error(String),
    /// The attached session's row, refreshed (its stall, its totals).
    Info(SessionInfo),
    /// Queued follow-ups taken back, oldest first: they go into the input box.
    Withdrawn(Vec<String>),
    /// A session the daemon did not create: the form comes back filled in, with why.
    CreateFailed {
        workspace: String,
        prompt: String,
        error: String,
    },
    /// The new session's folder has a `.mcp.json` the user has not trusted (as it is
    /// now): ask before its servers start.
    AskTrust {
        workspace: String,
        prompt: String,
        /// The file's content name, and its servers (the file's text: untrusted).
        name: String,
        servers: Vec<String>,
    },
    /// A message the daemon did not take (no credentials, budget spent, …): the text
    /// comes back to the input and the reason stays on screen.
    SendFailed {
        text: String,
        error: String,
    },
    /// A tool call's saved output, or why it could not be read.
    FullOutput {
        tool_id: String,
        text: Result<String, String>,
    },
    /// The session's changes for the review view, or why there are none to show.
    Diff(Result<Box<harvest_protocol::methods::DiffResult>, String>),
    /// How an apply or a pull request from the review view went: (ok, what to say).
    ReviewDone(bool, String),
}

/// A new session's answer to the `.mcp.json` question (see `harvest_client::mcp_trust`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTrust {
    /// Not asked yet: the connection looks, and asks the UI when the file is unknown.
    Ask,
    /// Trusted: the file's content name, remembered for next time.
    Trust(String),
    /// Start the session without its servers.
    Decline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Input,
    /// A waiting permission request: only here do its answer keys act.
    Prompt,
    Conversation,
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    Connected,
    Disconnected(String),
}

pub enum Overlay {
    None,
    Help,
    /// `/`: the text being typed to search the conversation for.
    Search {
        query: String,
    },
    Picker {
        /// An index into the filtered list.
        selected: usize,
        /// `/` then text: only sessions whose id, name, state, workspace or first
        /// prompt contain it (any case) are listed.
        filter: Option<String>,
    },
    ConfirmRemove {
        id: String,
        name: String,
    },
    /// The review view: the session's changed files and their diffs against its base.
    Review(Box<crate::app::review::Review>),
    NewSession {
        workspace: Box<TextArea<'static>>,
        prompt: Box<TextArea<'static>>,
        on_prompt: bool,
        /// Why the daemon refused the last try (the form stays filled in).
        error: Option<String>,
    },
    /// Claude Code's question before a project's `.mcp.json` servers start.
    TrustMcp {
        workspace: String,
        prompt: String,
        name: String,
        /// Terminal-safe already.
        servers: Vec<String>,
    },
}

impl Overlay {
    /// The session picker, at the top, unfiltered.
    pub fn picker() -> Overlay {
        Overlay::Picker {
            selected: 0,
            filter: None,
        }
    }
}

/// A paste of this many lines or more (or bytes past the next) is shown collapsed.
const PASTE_COLLAPSE_LINES: usize = 3;
const PASTE_COLLAPSE_BYTES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Detach,
}

pub struct App {
    /// Whether this client takes the mouse (clicks and wheel); `prefix m` hands it to the
    /// terminal, whose own text selection then works.
    pub mouse: bool,
    /// A change of `mouse` the terminal has not been told of yet.
    pub mouse_changed: bool,
    /// The focused pane takes the whole width (`prefix z`, as tmux's zoom).
    pub zoomed: bool,
    /// The conversation's share of the width, in percent (`prefix <` / `prefix >`).
    pub split: u16,
    /// Long pastes shown collapsed in the input (`[pasted 3 lines #1]`), by marker: the
    /// marker is what the input holds, the text what is sent.
    pub pastes: Vec<(String, String)>,
    pub theme: Theme,
    pub keymap: Keymap,
    pub session: Option<SessionInfo>,
    pub transcript: Transcript,
    pub conv: ConversationView,
    pub input: TextArea<'static>,
    pub focus: Focus,
    pub overlay: Overlay,
    pub conn: Conn,
    pub sessions: Vec<SessionInfo>,
    /// The tool shown in the tool pane; `None` follows the newest.
    pub tool_selected: Option<usize>,
    pub tool_scroll: usize,
    pub tool_show_all: bool,
    pub exit: Option<Exit>,
    pub toast: Option<(String, Instant)>,
    pub spinner: usize,
    prefix_armed: bool,
    /// The last text searched for (`/`), for `n` and `N`.
    pub last_search: Option<String>,
    /// How far the help overlay is scrolled.
    pub help_scroll: usize,
    /// Prompts sent in this session, for Up at the top of the input box.
    pub history: crate::editing::History,
    /// The draft as loaded on attach: saved back only if this client changed it.
    pub loaded_draft: String,
    /// The key that triggered the last cancel was Esc (which never detaches).
    cancel_by_esc: bool,
    last_cancel: Option<Instant>,
    /// Lines prepared for the next frame (see `screen::prepare`).
    pub frame: Frame,
    pub cwd: String,
    /// While the older history loads: the live events received so far, to fold again
    /// on top of it.
    history_pending: Option<Vec<Event>>,
    /// Harvest's state folder, where a local session's sandbox HOME lives (to show output
    /// the CLI saved to a file because it was too large to inline).
    /// The full output loaded for a tool call: (tool id, text).
    pub full_output: Option<(String, String)>,
    /// The tool call whose saved output was last asked of the daemon.
    pub full_output_requested: Option<String>,
    /// Commands the screen's preparation wants sent (reads it must not do itself).
    pub pending_cmds: Vec<Cmd>,
    /// Events after this seq happen now (those up to it are replayed history): only they
    /// ring the bell.
    live_from: harvest_protocol::Seq,
    /// Notifications to send to the terminal after the next frame.
    pub notifications: Vec<String>,
    /// The permission request whose command is being edited in the input box.
    pub editing_permission: Option<String>,
    /// The permission request being denied; the input box holds the reason.
    pub denying_permission: Option<String>,
}

#[derive(Default)]
pub struct Frame {
    pub conversation: Vec<Line<'static>>,
    pub tool: Vec<Line<'static>>,
    /// The tool pane's whole wrapped content and what it was built from: built again
    /// only when the call, its result, the width or the fold changes, never per frame
    /// (a Bash call of 200 000 lines would cost every keystroke its ANSI parse).
    pub tool_cache: Option<(ToolPaneKey, std::sync::Arc<Vec<Line<'static>>>)>,
    pub tool_title: String,
    pub tool_len: usize,
    /// Rows the tool pane shows, for a page of it.
    pub tool_rows: usize,
}

/// What the tool pane's lines depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPaneKey {
    pub item: usize,
    pub rev: u64,
    pub width: usize,
    pub show_all: bool,
    pub full_output: Option<usize>,
}

impl App {
    pub fn new(theme: Theme, keymap: Keymap) -> App {
        App {
            theme,
            keymap,
            session: None,
            transcript: Transcript::default(),
            conv: ConversationView::new(),
            input: new_input(&theme),
            pastes: Vec::new(),
            mouse: true,
            mouse_changed: false,
            zoomed: false,
            split: 50,
            focus: Focus::Input,
            overlay: Overlay::None,
            conn: Conn::Connecting,
            sessions: Vec::new(),
            tool_selected: None,
            tool_scroll: 0,
            tool_show_all: false,
            exit: None,
            toast: None,
            spinner: 0,
            prefix_armed: false,
            help_scroll: 0,
            last_search: None,
            history: Default::default(),
            loaded_draft: String::new(),
            cancel_by_esc: false,
            last_cancel: None,
            frame: Frame::default(),
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            history_pending: None,
            full_output: None,
            full_output_requested: None,
            pending_cmds: Vec::new(),
            live_from: harvest_protocol::Seq(0),
            notifications: Vec::new(),
            editing_permission: None,
            denying_permission: None,
        }
    }

    fn overlay_is_none(&self) -> bool {
        matches!(self.overlay, Overlay::None)
    }

    pub fn draft(&self) -> String {
        self.input.lines().join("\n")
    }

    pub fn set_draft(&mut self, text: &str) {
        self.input = new_input(&self.theme);
        self.input.insert_str(text);
    }

    /// The index of the tool shown in the tool pane.
    pub fn tool_index(&self) -> Option<usize> {
        self.tool_selected
            .filter(|i| matches!(self.transcript.items().get(*i), Some(Item::Tool(_))))
            .or_else(|| self.transcript.last_tool())
    }

    pub fn on_daemon(&mut self, msg: FromDaemon) {
        match msg {
            FromDaemon::Connected => self.conn = Conn::Connected,
            FromDaemon::Disconnected(why) => self.conn = Conn::Disconnected(why),
            FromDaemon::Attached(info) => {
                let switched = self.session.as_ref().map(|s| &s.id) != Some(&info.id);
                if switched {
                    self.transcript = Transcript::default();
                    self.conv = ConversationView::new();
                    self.tool_selected = None;
                    self.tool_scroll = 0;
                    // Keys go to the input of a session just picked, as in Claude Code:
                    // a pane focused in the previous session would swallow what is typed.
                    self.focus = Focus::Input;
                    // What the session already had is history; later events are news.
                    self.live_from = info.last_seq;
                }
                self.session = Some(info);
                if matches!(
                    self.overlay,
                    Overlay::Picker { .. } | Overlay::NewSession { .. }
                ) {
                    self.overlay = Overlay::None;
                }
            }
            FromDaemon::Event(ev) => {
                if let Some(tail) = &mut self.history_pending {
                    tail.push((*ev).clone());
                }
                if ev.seq > self.live_from {
                    self.notice(&ev);
                }
                self.transcript.apply(*ev);
                if let Some(s) = &mut self.session {
                    if let Some(st) = self.transcript.state {
                        s.state = st;
                    }
                    s.last_seq = self.transcript.last_seq;
                }
            }
            FromDaemon::Lagged => self.toast("caught up from the store after falling behind"),
            FromDaemon::Sessions(list) => {
                self.sessions = list;
                let shown = self.picker_sessions().len();
                if let Overlay::Picker { selected, .. } = &mut self.overlay {
                    *selected = (*selected).min(shown.saturating_sub(1));
                }
            }
            FromDaemon::NoSession => {
                self.overlay = Overlay::picker();
            }
            FromDaemon::HistoryPending => self.history_pending = Some(Vec::new()),
            FromDaemon::History(older) => self.splice_history(*older),
            FromDaemon::Error(e) => self.toast(&e),
            FromDaemon::AskTrust {
                workspace,
                prompt,
                name,
                servers,
            } => {
                let servers = servers
                    .iter()
                    .map(|l| harvest_termsafe::text(l, harvest_termsafe::Sgr::Drop).into_owned())
                    .collect();
                self.overlay = Overlay::TrustMcp {
                    workspace,
                    prompt,
                    name,
                    servers,
                };
            }
            FromDaemon::CreateFailed {
                workspace,
                prompt,
                error,
            } => {
                let mut ws = new_input(&self.theme);
                ws.set_placeholder_text("");
                ws.insert_str(&workspace);
                let mut p = new_input(&self.theme);
                p.insert_str(&prompt);
                self.overlay = Overlay::NewSession {
                    workspace: Box::new(ws),
                    prompt: Box::new(p),
                    on_prompt: true,
                    error: Some(error),
                };
            }
            FromDaemon::SendFailed { text, error } => {
                if self.draft().trim().is_empty() {
                    self.set_draft(&text);
                }
                self.transcript.local_notice(
                    crate::transcript::Level::Error,
                    format!("not sent: {error} (your message is back in the input)"),
                );
                self.conv.go_bottom(&self.transcript);
                self.toast("not sent: the reason is in the conversation");
            }
            FromDaemon::Withdrawn(texts) => {
                if !texts.is_empty() {
                    let mut draft = self.draft();
                    for t in texts {
                        if !draft.is_empty() {
                            draft.push('\n');
                        }
                        draft.push_str(&t);
                    }
                    self.set_draft(&draft);
                    self.focus = Focus::Input;
                    self.toast("queued message taken back: edit it and Enter sends it again");
                }
            }
            FromDaemon::Info(info) => {
                if self.session.as_ref().is_some_and(|s| s.id == info.id) {
                    self.session = Some(info);
                }
            }
            FromDaemon::FullOutput { tool_id, text } => match text {
                Ok(text) => self.full_output = Some((tool_id, text)),
                Err(e) => tracing::info!(error = %e, "the saved tool output could not be read"),
            },
            FromDaemon::Diff(result) => self.review_loaded(result),
            FromDaemon::ReviewDone(ok, message) => self.review_done(ok, message),
        }
    }

    /// A turn ended, the session failed or needs input: tell the user (bell and desktop
    /// notification, sent by the run loop).
    fn notice(&mut self, ev: &Event) {
        use harvest_protocol::{EventBody, SessionState};
        let name = self
            .session
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let what = match &ev.body {
            EventBody::TurnResult {
                is_error: false, ..
            } => "turn done".to_owned(),
            EventBody::TurnResult {
                interrupted: true, ..
            } => "turn interrupted".to_owned(),
            EventBody::TurnResult { .. } => "turn failed".to_owned(),
            EventBody::Status {
                state: SessionState::Failed,
                ..
            } => "session failed".to_owned(),
            EventBody::Status {
                state: SessionState::NeedsInput,
                reason,
            } => {
                format!("needs input: {}", reason.as_deref().unwrap_or(""))
            }
            _ => return,
        };
        self.notifications.push(format!("harvest · {name}: {what}"));
    }

    /// Put the older history in front of the live tail: fold the tail's events again on
    /// top of it (an event at the seam may complete an item that began before it), keep
    /// the view where it was, measured from the end.
    fn splice_history(&mut self, mut older: Transcript) {
        let Some(tail) = self.history_pending.take() else {
            return;
        };
        for ev in tail {
            older.apply(ev);
        }
        let added = older.len().saturating_sub(self.transcript.len());
        let (follow, selected, top) = (self.conv.follow, self.conv.selected, self.conv.top);
        self.transcript = older;
        self.conv = ConversationView::new();
        self.conv.follow = follow;
        self.conv.selected = selected.map(|i| i + added);
        self.conv.top = crate::view::conversation::Anchor {
            item: top.item + added,
            line: top.line,
        };
        self.tool_selected = self.tool_selected.map(|i| i + added);
    }

    pub fn toast(&mut self, text: &str) {
        self.toast = Some((text.to_owned(), Instant::now()));
    }

    /// A bracketed paste: its line breaks kept whichever the terminal sent (CR, LF or
    /// CRLF; tmux's `paste-buffer` sends CR), and a long one shown collapsed as a marker
    /// the message carries in full, as Claude Code does.
    pub fn on_paste(&mut self, text: &str) {
        if self.focus != Focus::Input || !matches!(self.overlay, Overlay::None) {
            return;
        }
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let lines = text.lines().count();
        if lines >= PASTE_COLLAPSE_LINES || text.len() > PASTE_COLLAPSE_BYTES {
            let marker = format!("[pasted {lines} lines #{}]", self.pastes.len() + 1);
            self.input.insert_str(&marker);
            self.pastes.push((marker, text));
        } else {
            self.input.insert_str(&text);
        }
    }

    /// The input's text with every collapsed paste put back in full.
    fn expanded(&self, text: String) -> String {
        self.pastes.iter().fold(text, |t, (marker, full)| {
            t.replacen(marker.as_str(), full, 1)
        })
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let step = match m.kind {
            MouseEventKind::ScrollUp => -3,
            MouseEventKind::ScrollDown => 3,
            _ => return,
        };
        if self.focus == Focus::Tool {
            self.scroll_tool(step);
        } else {
            self.conv.scroll(&self.transcript, step, &self.theme);
            self.conv
                .keep_selection_in_view(&self.transcript, &self.theme);
        }
    }

    pub fn on_key(&mut self, ev: KeyEvent) -> Vec<Cmd> {
        if ev.kind == crossterm::event::KeyEventKind::Release {
            return Vec::new();
        }
        let key = Key::from_event(&ev);
        // The prefix closes any overlay and acts as the prefix: `prefix d` detaches from
        // the help, the picker or a form alike, and nothing typed next is taken for text.
        if !matches!(self.overlay, Overlay::None) && self.keymap.is_prefix(key) {
            self.overlay = Overlay::None;
            self.help_scroll = 0;
            self.prefix_armed = true;
            return Vec::new();
        }
        match &mut self.overlay {
            Overlay::None => {}
            Overlay::Help => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') => {
                        self.overlay = Overlay::None;
                        self.help_scroll = 0;
                    }
                    KeyCode::Down | KeyCode::Char('j') => self.help_scroll += 1,
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.help_scroll = self.help_scroll.saturating_sub(1)
                    }
                    KeyCode::PageDown => self.help_scroll += 10,
                    KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::Search { query } => {
                match key.code {
                    KeyCode::Esc => self.overlay = Overlay::None,
                    KeyCode::Enter => {
                        let q = std::mem::take(query);
                        self.overlay = Overlay::None;
                        self.last_search = Some(q);
                        // Searching starts from the top of what is on screen.
                        self.conv.selected = self.conv.selected.or(Some(self.conv.top.item));
                        self.find(true);
                    }
                    KeyCode::Backspace => {
                        query.pop();
                    }
                    KeyCode::Char(c) if !key.mods.contains(KeyModifiers::CONTROL) => query.push(c),
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::Picker { .. } => return self.picker_key(key),
            Overlay::ConfirmRemove { .. } => return self.confirm_key(key),
            Overlay::NewSession { .. } => return self.new_session_key(ev),
            Overlay::TrustMcp { .. } => return self.trust_key(ev),
            Overlay::Review(_) => return self.review_key(key),
        }
        if self.prefix_armed {
            self.prefix_armed = false;
            return match self.keymap.lookup(key, true, false) {
                Some(a) => self.act(a),
                None => Vec::new(),
            };
        }
        if self.keymap.is_prefix(key) {
            self.prefix_armed = true;
            return Vec::new();
        }
        if let Some(cmds) = self.permission_key(key) {
            return cmds;
        }
        let in_input = self.focus == Focus::Input;
        // `?` on an empty input shows the keys, as in Claude Code; in a draft it is text.
        if in_input
            && self.overlay_is_none()
            && key.code == KeyCode::Char('?')
            && !key.mods.contains(KeyModifiers::CONTROL)
            && self.draft().is_empty()
        {
            self.overlay = Overlay::Help;
            return Vec::new();
        }
        if in_input
            && self.overlay_is_none()
            && key.code == KeyCode::Up
            && key.mods.is_empty()
            && self.draft().is_empty()
            && let Some((id, _)) = self.transcript.queued.last()
        {
            // As in Claude Code: Up on an empty box takes the last queued follow-up back
            // to edit it, before the agent has it.
            return vec![Cmd::Withdraw(Some(id.clone()))];
        }
        if in_input && self.overlay_is_none() {
            if key.code == KeyCode::Up {
                // The session's own prompts, whoever sent them: kept by the daemon, so
                // they survive detach and are the same in every client.
                self.history
                    .refresh(self.transcript.items().iter().filter_map(|i| match i {
                        Item::User(text) => Some(text.clone()),
                        _ => None,
                    }));
            }
            match crate::editing::key(&mut self.input, &mut self.history, key.code, key.mods) {
                crate::editing::Edit::Done => return Vec::new(),
                crate::editing::Edit::Replace(text) => {
                    let history = std::mem::take(&mut self.history);
                    self.set_draft(&text);
                    self.history = history;
                    return Vec::new();
                }
                crate::editing::Edit::NotMine => {}
            }
        }
        self.cancel_by_esc = key.code == KeyCode::Esc;
        match self.keymap.lookup(key, false, in_input) {
            Some(a) => self.act(a),
            None if in_input => {
                self.input.input(ev);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn act(&mut self, action: Action) -> Vec<Cmd> {
        let theme = self.theme;
        match action {
            Action::Send => {
                let text = self.expanded(self.draft());
                if let Some(request_id) = self.editing_permission.take() {
                    // The edited command, allowed in place of the requested one.
                    self.input = new_input(&self.theme);
                    let input = self
                        .transcript
                        .permissions
                        .iter()
                        .find(|p| p.request_id == request_id)
                        .map(|p| {
                            let mut v = p.input.clone();
                            v["command"] = serde_json::Value::String(text.clone());
                            v
                        });
                    return vec![Cmd::Approve {
                        request_id,
                        decision: "allow".into(),
                        input,
                        message: None,
                    }];
                }
                if let Some(request_id) = self.denying_permission.take() {
                    self.input = new_input(&self.theme);
                    let reason = text.trim().to_owned();
                    return vec![Cmd::Approve {
                        request_id,
                        decision: "deny".into(),
                        input: None,
                        message: (!reason.is_empty()).then_some(reason),
                    }];
                }
                if text.trim().is_empty() || self.session.is_none() {
                    return Vec::new();
                }
                self.input = new_input(&self.theme);
                self.pastes.clear();
                self.history.push(&text);
                // A new message starts a new turn: follow it, in both panes.
                self.conv.go_bottom(&self.transcript);
                self.conv.selected = None;
                self.tool_selected = None;
                self.tool_scroll = 0;
                return vec![Cmd::Send(text)];
            }
            Action::Newline => self.input.insert_newline(),
            Action::Cancel
                if self.editing_permission.is_some() || self.denying_permission.is_some() =>
            {
                // Back out of answering; the request still waits.
                self.editing_permission = None;
                self.denying_permission = None;
                self.input = new_input(&self.theme);
            }
            Action::Cancel => {
                // Esc cancels a running turn and nothing else: vim users press it by
                // reflex. A second Ctrl-C within a second leaves cleanly (detach), as a
                // terminal user expects of Ctrl-C, without ever killing the client.
                let by_esc = self.cancel_by_esc;
                if !by_esc
                    && self
                        .last_cancel
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
                {
                    self.exit = Some(Exit::Detach);
                    return Vec::new();
                }
                self.last_cancel = (!by_esc).then(Instant::now);
                if self.is_running() {
                    self.toast("cancelling the turn…");
                    if self.transcript.queued.is_empty() {
                        return vec![Cmd::Cancel];
                    }
                    // What was queued behind the cancelled turn comes back to the input,
                    // rather than starting a turn the user just stopped.
                    return vec![Cmd::Withdraw(None), Cmd::Cancel];
                }
                if !by_esc {
                    self.toast("nothing is running; the same key again within a second detaches");
                }
            }
            Action::Detach => self.exit = Some(Exit::Detach),
            Action::Zoom => self.zoomed = !self.zoomed,
            Action::Mouse => {
                self.mouse = !self.mouse;
                self.mouse_changed = true;
                let key = self.keymap.hint(Action::Mouse);
                self.toast(&if self.mouse {
                    format!("the mouse scrolls the panes again ({key} hands it to the terminal)")
                } else {
                    format!(
                        "the mouse is the terminal's: select text as usual ({key} takes it back)"
                    )
                });
            }
            Action::SplitLeft => self.split = self.split.saturating_sub(10).max(20),
            Action::SplitRight => self.split = (self.split + 10).min(80),
            Action::SendNow => {
                if self.transcript.queued.is_empty() {
                    self.toast("nothing is queued");
                } else {
                    self.toast(
                        "sent into the running turn: the agent reads it at its next tool call",
                    );
                    return vec![Cmd::SendNow];
                }
            }
            Action::Review => {
                if self.session.is_some() {
                    self.overlay = Overlay::Review(Box::default());
                    return vec![Cmd::Diff];
                }
            }
            Action::Sessions => {
                self.overlay = Overlay::picker();
                return vec![Cmd::ListSessions];
            }
            Action::Resume => {
                if self.session.is_some() {
                    return vec![Cmd::Resume];
                }
            }
            Action::FocusNext => {
                let prompt_waits = !self.transcript.permissions.is_empty();
                self.focus = match self.focus {
                    Focus::Input if prompt_waits => Focus::Prompt,
                    Focus::Input | Focus::Prompt => Focus::Conversation,
                    Focus::Conversation => Focus::Tool,
                    Focus::Tool => Focus::Input,
                };
            }
            Action::Up => match self.focus {
                Focus::Tool => self.scroll_tool(-1),
                _ => self.conv.select(&self.transcript, -1, &theme),
            },
            Action::Down => match self.focus {
                Focus::Tool => self.scroll_tool(1),
                _ => self.conv.select(&self.transcript, 1, &theme),
            },
            Action::PageUp => match self.focus {
                Focus::Tool => {
                    self.scroll_tool(-(self.frame.tool_rows.saturating_sub(2).max(1) as isize))
                }
                _ => {
                    let p = self.conv.page() as isize;
                    self.conv.scroll(&self.transcript, -p, &theme);
                    self.conv.keep_selection_in_view(&self.transcript, &theme);
                }
            },
            Action::PageDown => match self.focus {
                Focus::Tool => {
                    self.scroll_tool(self.frame.tool_rows.saturating_sub(2).max(1) as isize)
                }
                _ => {
                    let p = self.conv.page() as isize;
                    self.conv.scroll(&self.transcript, p, &theme);
                    self.conv.keep_selection_in_view(&self.transcript, &theme);
                }
            },
            Action::Top => match self.focus {
                Focus::Tool => self.tool_scroll = 0,
                _ => self.conv.go_top(),
            },
            Action::Bottom => match self.focus {
                Focus::Tool => self.tool_scroll = usize::MAX,
                _ => self.conv.go_bottom(&self.transcript),
            },
            Action::Follow => {
                self.conv.follow = !self.conv.follow;
                self.toast(if self.conv.follow {
                    "following the tail"
                } else {
                    "follow off"
                });
            }
            Action::Expand => match self.focus {
                Focus::Tool => self.tool_show_all = !self.tool_show_all,
                _ => {
                    if let Some(i) = self.conv.selected {
                        if matches!(self.transcript.items().get(i), Some(Item::Tool(_))) {
                            self.tool_selected = Some(i);
                            self.tool_scroll = 0;
                        }
                        self.conv.toggle_expanded(i);
                        self.conv.reveal(&self.transcript, i, &theme);
                    }
                }
            },
            Action::Copy => {
                // What the user sees as content: the command and its output, the diff, the
                // file excerpt, the message; never headers, gutters or wrap indents.
                let text = match self.focus {
                    Focus::Tool => self
                        .tool_index()
                        .and_then(|i| match self.transcript.items().get(i) {
                            Some(Item::Tool(t)) => Some(crate::view::tool::copy_text(t)),
                            _ => None,
                        })
                        .unwrap_or_default(),
                    _ => self
                        .conv
                        .selected_text(&self.transcript)
                        .unwrap_or_default(),
                };
                let said = crate::terminal::copy_osc52(&text);
                self.toast(said);
            }
            Action::Help => self.overlay = Overlay::Help,
            Action::Search => {
                self.overlay = Overlay::Search {
                    query: String::new(),
                };
            }
            Action::NextMatch | Action::PrevMatch => {
                let forward = action == Action::NextMatch;
                self.find(forward);
            }
            Action::NextTool | Action::PrevTool => {
                let forward = action == Action::NextTool;
                if !self.conv.jump(&self.transcript, forward, &theme, |i| {
                    matches!(i, Item::Tool(_))
                }) {
                    self.toast("no more tool calls that way");
                }
            }
            Action::NextError | Action::PrevError => {
                let forward = action == Action::NextError;
                let found = self
                    .conv
                    .jump(&self.transcript, forward, &theme, |i| match i {
                        Item::Notice { level, .. } => *level == crate::transcript::Level::Error,
                        Item::Tool(t) => t.result.as_ref().is_some_and(|r| r.is_error),
                        Item::Turn(t) => t.is_error,
                        _ => false,
                    });
                if !found {
                    self.toast("no more errors that way");
                }
            }
        }
        Vec::new()
    }

    fn scroll_tool(&mut self, delta: isize) {
        let max = self.frame.tool_len;
        self.tool_scroll =
            (self.tool_scroll.min(max) as isize + delta).clamp(0, max as isize) as usize;
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.session.as_ref().map(|s| s.state),
            Some(
                harvest_protocol::SessionState::Running
                    | harvest_protocol::SessionState::Cancelling
            )
        )
    }
}

fn new_input(theme: &Theme) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.set_cursor_style(
        ratatui::style::Style::default().add_modifier(ratatui::style::Modifier::REVERSED),
    );
    // tui-textarea's default placeholder is dark grey; under NO_COLOR only dim remains.
    t.set_placeholder_style(theme.dim());
    t.set_placeholder_text("message…");
    t
}
