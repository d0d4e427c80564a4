//! Finding things in the conversation: `/` searches (`n`, `N` go on), and the jumps to
//! the next or previous tool call or error are in `act`.

use super::App;
use crate::transcript::Item;

impl App {
    /// The next (or previous) item holding the last search's text, case-insensitively.
    pub(super) fn find(&mut self, forward: bool) {
        let Some(query) = self.last_search.clone().filter(|q| !q.is_empty()) else {
            self.toast("no search yet: / to search");
            return;
        };
        let q = query.to_lowercase();
        let theme = self.theme;
        let found = self.conv.jump(&self.transcript, forward, &theme, |i| {
            item_text(i).to_lowercase().contains(&q)
        });
        if !found {
            self.toast(&format!("no more matches for {query:?} that way"));
        }
    }
}

/// The searchable text of an item.
pub(super) fn item_text(item: &Item) -> String {
    match item {
        Item::User(s) | Item::Thinking(s) => s.clone(),
        Item::Assistant { text, .. } => text.clone(),
        Item::Tool(t) => format!(
            "{} {} {}",
            t.name,
            t.input,
            t.result.as_ref().map(|r| r.content.as_str()).unwrap_or("")
        ),
        Item::Notice { text, .. } => text.clone(),
        Item::Turn(t) => t.result.clone().unwrap_or_default(),
    }
}
