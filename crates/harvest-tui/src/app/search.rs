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
        if self.focus == super::Focus::Tool {
            self.find_in_tool(&query, &q, forward);
            return;
        }
        let theme = self.theme;
        let hit = |i: &Item| item_text(i).to_lowercase().contains(&q);
        if self.conv.jump(&self.transcript, forward, &theme, hit) {
            return;
        }
        if !self.transcript.items().iter().any(hit) {
            self.toast(&format!("no match for {query:?}"));
            return;
        }
        // Past the last match: around from the other end, as a pager does.
        let items = self.transcript.items();
        let target = if forward {
            items.iter().position(hit)
        } else {
            items.iter().rposition(hit)
        };
        if let Some(target) = target {
            let n = items.len();
            let cur = self
                .conv
                .selected
                .unwrap_or(if forward { n - 1 } else { n }) as isize;
            self.conv
                .select(&self.transcript, target as isize - cur, &theme);
        }
        self.toast(&format!(
            "search wrapped to the {}",
            if forward { "top" } else { "bottom" }
        ));
    }

    /// In the focused tool pane: the next line of what it shows (a command's whole output
    /// included) that holds the query, wrapping around; the pane scrolls to it.
    fn find_in_tool(&mut self, query: &str, q: &str, forward: bool) {
        let Some((_, lines)) = &self.frame.tool_cache else {
            self.toast(&format!("no match for {query:?}"));
            return;
        };
        let text: Vec<String> = lines
            .iter()
            .map(|l| {
                l.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
                    .to_lowercase()
            })
            .collect();
        let n = text.len();
        if n == 0 || !text.iter().any(|l| l.contains(q)) {
            self.toast(&format!("no match for {query:?}"));
            return;
        }
        let from = self.tool_scroll.min(n - 1);
        let order: Vec<usize> = if forward {
            (from + 1..n).chain(0..=from).collect()
        } else {
            (0..from).rev().chain((from..n).rev()).collect()
        };
        if let Some(&at) = order.iter().find(|&&i| text[i].contains(q)) {
            let wrapped = if forward { at <= from } else { at >= from };
            self.tool_scroll = at;
            if wrapped {
                self.toast(&format!(
                    "search wrapped to the {}",
                    if forward { "top" } else { "bottom" }
                ));
            }
        }
    }
}

/// The searchable text of an item.
pub(super) fn item_text(item: &Item) -> String {
    match item {
        Item::User(s) | Item::Thinking(s) => s.clone(),
        Item::Assistant { text, .. } => text.clone(),
        Item::Tool(t) => {
            // What the pane shows: a command's own stdout and stderr, not only what the
            // model was shown of them.
            let shown = match t.result.as_ref().and_then(|r| r.output.as_ref()) {
                Some(harvest_protocol::ToolOutput::Bash { stdout, stderr, .. }) => {
                    format!("{stdout}\n{stderr}")
                }
                _ => String::new(),
            };
            format!(
                "{} {} {} {shown}",
                t.name,
                t.input,
                t.result.as_ref().map(|r| r.content.as_str()).unwrap_or("")
            )
        }
        Item::Notice { text, .. } => text.clone(),
        Item::Turn(t) => t.result.clone().unwrap_or_default(),
    }
}
