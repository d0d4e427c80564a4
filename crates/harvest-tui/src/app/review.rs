//! The review view's state and keys: the session's changed files against the commit it
//! started from, one file's diff at a time; `a` applies them to the checkout the session
//! was cloned from, `p` opens the pull request.

use super::{App, Cmd, Overlay};
use crate::keymap::Key;
use crossterm::event::KeyCode;
use harvest_protocol::methods::DiffResult;
use harvest_review::ChangedFile;

#[derive(Default)]
pub struct Review {
    /// Waiting for the daemon's diff.
    pub loading: bool,
    pub files: Vec<ChangedFile>,
    pub selected: usize,
    /// The first line of the selected file's diff on screen.
    pub scroll: usize,
    pub base: String,
    pub branch: Option<String>,
    /// What the last apply or pull request said, and whether it went well; or why the
    /// diff could not be made.
    pub status: Option<(bool, String)>,
    /// An apply or pull request is under way.
    pub busy: bool,
    /// The diff as shown: what `a` applies.
    pub shown: Option<Box<DiffResult>>,
}

impl App {
    fn review(&mut self) -> Option<&mut Review> {
        match &mut self.overlay {
            Overlay::Review(r) => Some(r),
            _ => None,
        }
    }

    pub(super) fn review_key(&mut self, key: Key) -> Vec<Cmd> {
        let page = self.frame.tool_rows.max(10);
        let Some(r) = self.review() else {
            return Vec::new();
        };
        let last = r.files.len().saturating_sub(1);
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
            KeyCode::Down | KeyCode::Char('j') => {
                r.selected = (r.selected + 1).min(last);
                r.scroll = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => {
                r.selected = r.selected.saturating_sub(1);
                r.scroll = 0;
            }
            KeyCode::PageDown | KeyCode::Char(' ') => r.scroll += page,
            KeyCode::PageUp => r.scroll = r.scroll.saturating_sub(page),
            KeyCode::Char('r') if !r.busy => {
                r.loading = true;
                return vec![Cmd::Diff];
            }
            KeyCode::Char('a') if !r.busy && !r.files.is_empty() => {
                if let Some(shown) = r.shown.clone() {
                    r.busy = true;
                    r.status = Some((true, "applying to your checkout…".into()));
                    return vec![Cmd::Apply(shown)];
                }
            }
            KeyCode::Char('p') if !r.busy && r.branch.is_some() => {
                // A repository cloned from a folder here has that folder's remote, if any:
                // without a forge there, say so before anything else (a token included).
                if let Some(repo) = r.shown.as_ref().and_then(|d| d.local_repo.clone())
                    && let Some(why) = harvest_review::no_forge_remote(std::path::Path::new(&repo))
                {
                    r.status = Some((false, why));
                    return Vec::new();
                }
                r.busy = true;
                r.status = Some((
                    true,
                    "committing, pushing and opening the pull request…".into(),
                ));
                return vec![Cmd::Pr];
            }
            _ => {}
        }
        Vec::new()
    }

    pub(super) fn review_loaded(&mut self, result: Result<Box<DiffResult>, String>) {
        let Some(r) = self.review() else {
            return;
        };
        r.loading = false;
        match result {
            Ok(d) => {
                let bytes = harvest_review::patch_bytes(&d).unwrap_or_default();
                r.files = harvest_review::split_patch(&String::from_utf8_lossy(&bytes));
                r.shown = Some(d.clone());
                r.selected = r.selected.min(r.files.len().saturating_sub(1));
                r.scroll = 0;
                r.base = d.base.get(..12).unwrap_or(&d.base).to_owned();
                r.branch = d.branch.map(|b| harvest_review::shown(&b));
            }
            Err(e) => r.status = Some((false, e)),
        }
    }

    pub(super) fn review_done(&mut self, ok: bool, message: String) {
        match self.review() {
            Some(r) => {
                r.busy = false;
                r.status = Some((ok, message));
            }
            None => self.toast(&message),
        }
    }
}
