//! The conversation pane's layout. Lines are cached per item (keyed by the item's revision,
//! the width and whether it is expanded), and the viewport is anchored at an item and a
//! line within it, so a frame builds and measures only the items it shows: a 100 000-event
//! session costs what a 10-event one does.

use super::items;
use crate::theme::Theme;
use crate::transcript::{Item, Transcript};
use ratatui::text::Line;
use std::collections::HashSet;

/// (item, line) orders like a position in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Anchor {
    pub item: usize,
    pub line: usize,
}

struct Cached {
    rev: u64,
    width: usize,
    expanded: bool,
    lines: Vec<Line<'static>>,
}

#[derive(Default)]
pub struct ConversationView {
    cache: Vec<Option<Cached>>,
    pub top: Anchor,
    /// Keep the newest line in view as events arrive.
    pub follow: bool,
    pub selected: Option<usize>,
    expanded: HashSet<usize>,
    width: usize,
    height: usize,
}

impl ConversationView {
    pub fn new() -> Self {
        ConversationView {
            follow: true,
            ..Default::default()
        }
    }

    pub fn is_expanded(&self, i: usize) -> bool {
        self.expanded.contains(&i)
    }

    pub fn toggle_expanded(&mut self, i: usize) {
        if !self.expanded.remove(&i) {
            self.expanded.insert(i);
        }
    }

    fn lines_of(&mut self, t: &Transcript, i: usize, theme: &Theme) -> &[Line<'static>] {
        if self.cache.len() < t.len() {
            self.cache.resize_with(t.len(), || None);
        }
        let rev = t.rev(i);
        let expanded = self.expanded.contains(&i);
        let fresh = matches!(&self.cache[i], Some(c) if c.rev == rev && c.width == self.width && c.expanded == expanded);
        if !fresh {
            let lines = match t.items().get(i) {
                Some(item) => items::lines(item, self.width, expanded, theme),
                None => Vec::new(),
            };
            self.cache[i] = Some(Cached {
                rev,
                width: self.width,
                expanded,
                lines,
            });
        }
        self.cache[i]
            .as_ref()
            .map(|c| c.lines.as_slice())
            .unwrap_or(&[])
    }

    fn height_of(&mut self, t: &Transcript, i: usize, theme: &Theme) -> usize {
        self.lines_of(t, i, theme).len()
    }

    /// Settle the viewport for this size before drawing: follow the tail, keep the anchor
    /// valid, keep the selection visible. Builds only the lines the frame will show.
    pub fn prepare(&mut self, t: &Transcript, width: usize, height: usize, theme: &Theme) {
        self.width = width.max(1);
        self.height = height;
        if t.is_empty() {
            self.top = Anchor::default();
            return;
        }
        if self.follow {
            self.top = self.anchor_for_bottom(t, t.len() - 1, theme);
        } else {
            self.top.item = self.top.item.min(t.len() - 1);
            let h = self.height_of(t, self.top.item, theme);
            self.top.line = self.top.line.min(h.saturating_sub(1));
        }
    }

    /// The top anchor that puts the end of item `last` at the bottom of the viewport.
    fn anchor_for_bottom(&mut self, t: &Transcript, last: usize, theme: &Theme) -> Anchor {
        let mut need = self.height;
        let mut i = last;
        loop {
            let h = self.height_of(t, i, theme);
            if h >= need {
                return Anchor {
                    item: i,
                    line: h - need,
                };
            }
            need -= h;
            if i == 0 {
                return Anchor::default();
            }
            i -= 1;
        }
    }

    /// The lines in view, top to bottom, with the selected item marked.
    pub fn visible(&mut self, t: &Transcript, theme: &Theme) -> Vec<Line<'static>> {
        let mut out = Vec::with_capacity(self.height);
        let mut i = self.top.item;
        let mut skip = self.top.line;
        let height = self.height;
        while out.len() < height && i < t.len() {
            let selected = self.selected == Some(i);
            let lines = self.lines_of(t, i, theme);
            for l in lines.iter().skip(skip) {
                if out.len() == height {
                    break;
                }
                let l = if selected && !l.spans.is_empty() {
                    l.clone().patch_style(theme.selected())
                } else {
                    l.clone()
                };
                out.push(l);
            }
            skip = 0;
            i += 1;
        }
        out
    }

    /// Scroll by lines; negative is up. Scrolling up leaves follow mode; reaching the end
    /// scrolling down resumes it.
    pub fn scroll(&mut self, t: &Transcript, delta: isize, theme: &Theme) {
        if t.is_empty() {
            return;
        }
        if delta < 0 {
            self.follow = false;
            let mut up = delta.unsigned_abs();
            while up > 0 {
                if self.top.line >= up {
                    self.top.line -= up;
                    break;
                }
                up -= self.top.line;
                if self.top.item == 0 {
                    self.top.line = 0;
                    break;
                }
                self.top.item -= 1;
                self.top.line = self.height_of(t, self.top.item, theme);
            }
        } else {
            let bottom = self.anchor_for_bottom(t, t.len() - 1, theme);
            let mut down = delta as usize;
            while down > 0 && self.top < bottom {
                let h = self.height_of(t, self.top.item, theme);
                let left = h.saturating_sub(self.top.line + 1);
                if down <= left {
                    self.top.line += down;
                    down = 0;
                } else {
                    down -= left + 1;
                    self.top = Anchor {
                        item: self.top.item + 1,
                        line: 0,
                    };
                }
            }
            if self.top >= bottom {
                self.top = bottom;
                self.follow = true;
            }
        }
    }

    pub fn page(&self) -> usize {
        self.height.saturating_sub(2).max(1)
    }

    pub fn go_top(&mut self) {
        self.follow = false;
        self.top = Anchor::default();
        self.selected = Some(0);
    }

    pub fn go_bottom(&mut self, t: &Transcript) {
        self.follow = true;
        self.selected = t.len().checked_sub(1);
    }

    /// Move the selection by `step` items and bring it into view.
    pub fn select(&mut self, t: &Transcript, step: isize, theme: &Theme) {
        if t.is_empty() {
            return;
        }
        let cur = self.selected.unwrap_or(t.len() - 1) as isize;
        let next = (cur + step).clamp(0, t.len() as isize - 1) as usize;
        self.selected = Some(next);
        if next < self.top.item || (next == self.top.item && self.top.line > 0) {
            self.follow = false;
            self.top = Anchor {
                item: next,
                line: 0,
            };
        } else if !self.shows_end_of(t, next, theme) {
            self.follow = false;
            self.top = self.anchor_for_bottom(t, next, theme);
        }
        if next + 1 == t.len() && self.shows_end_of(t, next, theme) {
            self.follow = true;
        }
    }

    /// Bring item `i` into view after it changed size (expanded): its end when it fits,
    /// else its start.
    pub fn reveal(&mut self, t: &Transcript, i: usize, theme: &Theme) {
        if i >= t.len() || (i >= self.top.item && self.shows_end_of(t, i, theme)) {
            return;
        }
        if self.height_of(t, i, theme) >= self.height || i < self.top.item {
            self.follow = false;
            self.top = Anchor { item: i, line: 0 };
        } else {
            self.follow = i + 1 == t.len();
            self.top = self.anchor_for_bottom(t, i, theme);
        }
    }

    /// Whether the viewport shows item `i` down to its last line.
    fn shows_end_of(&mut self, t: &Transcript, i: usize, theme: &Theme) -> bool {
        let mut rows = 0;
        let mut k = self.top.item;
        let mut skip = self.top.line;
        while k <= i {
            rows += self.height_of(t, k, theme).saturating_sub(skip);
            skip = 0;
            k += 1;
        }
        rows <= self.height
    }

    /// Select the nearest item after (`forward`) or before the selection that `hit` picks,
    /// and bring it into view. Returns whether one was found.
    pub fn jump(
        &mut self,
        t: &Transcript,
        forward: bool,
        theme: &Theme,
        hit: impl Fn(&Item) -> bool,
    ) -> bool {
        let n = t.len();
        if n == 0 {
            return false;
        }
        let cur = self.selected.unwrap_or(if forward { n - 1 } else { n }) as isize;
        let mut i = cur;
        loop {
            i += if forward { 1 } else { -1 };
            if i < 0 || i >= n as isize {
                return false;
            }
            if t.items().get(i as usize).is_some_and(&hit) {
                let step = i - cur;
                self.select(t, step, theme);
                return true;
            }
        }
    }

    /// After a scroll, the selection starts from what is on screen: a selected item that
    /// scrolled out of view gives way to the nearest visible one.
    pub fn keep_selection_in_view(&mut self, t: &Transcript, theme: &Theme) {
        let Some(s) = self.selected else { return };
        if s < self.top.item || (s == self.top.item && self.top.line > 0 && t.len() > s + 1) {
            self.selected = Some(if self.top.line > 0 {
                (self.top.item + 1).min(t.len() - 1)
            } else {
                self.top.item
            });
            return;
        }
        // The last item whose first line is on screen.
        let mut rows = 0;
        let mut k = self.top.item;
        let mut skip = self.top.line;
        let mut last = self.top.item;
        while k < t.len() && rows < self.height {
            last = k;
            rows += self.height_of(t, k, theme).saturating_sub(skip);
            skip = 0;
            k += 1;
        }
        if s > last {
            self.selected = Some(last);
        }
    }

    /// Copyable text of the selected item (or the newest one).
    pub fn selected_text(&self, t: &Transcript) -> Option<String> {
        let i = self.selected.or(t.len().checked_sub(1))?;
        Some(match t.items().get(i)? {
            Item::User(s) | Item::Thinking(s) => s.clone(),
            Item::Assistant { text, .. } => text.clone(),
            Item::Tool(tool) => match &tool.result {
                Some(r) => r.content.clone(),
                None => tool.summary(),
            },
            Item::Notice { text, .. } => text.clone(),
            Item::Turn(turn) => turn.result.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ColorLevel;
    use harvest_protocol::{Event, EventBody, Seq, SessionId};

    fn transcript(n: usize) -> Transcript {
        let mut t = Transcript::default();
        for i in 0..n {
            t.apply(Event {
                seq: Seq(i as u64 + 1),
                ts: "2026-11-23T10:00:00Z".into(),
                session: SessionId::from("s"),
                body: EventBody::AssistantText {
                    text: format!("message {i}"),
                },
                raw: None,
            });
        }
        t
    }

    #[test]
    fn follow_shows_the_tail_and_builds_only_what_it_shows() {
        let theme = Theme::new(ColorLevel::None);
        let t = transcript(100_000);
        let mut v = ConversationView::new();
        v.prepare(&t, 40, 10, &theme);
        let lines: Vec<String> = v
            .visible(&t, &theme)
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(lines.last().map(String::as_str), Some("message 99999"));
        assert_eq!(lines.len(), 10);
        let built = v.cache.iter().filter(|c| c.is_some()).count();
        assert!(built <= 11, "built {built} items for a 10-line view");
    }

    #[test]
    fn an_item_expanded_out_of_view_is_scrolled_into_it() {
        let theme = Theme::new(ColorLevel::None);
        let mut t = transcript(30);
        let output: String = (0..40).map(|i| format!("out-line-{i}\n")).collect();
        for (seq, body) in [
            (
                31,
                EventBody::ToolCall {
                    id: "t".into(),
                    name: "Bash".into(),
                    input: serde_json::json!({"command": "make"}),
                },
            ),
            (
                32,
                EventBody::ToolResult {
                    tool_use_id: "t".into(),
                    is_error: false,
                    content: output.clone(),
                    output: Some(harvest_protocol::event::ToolOutput::Bash {
                        stdout: output,
                        stderr: String::new(),
                        interrupted: false,
                        exit_code: Some(0),
                        persisted_output_path: None,
                    }),
                },
            ),
        ] {
            t.apply(Event {
                seq: Seq(seq),
                ts: "2026-11-23T10:00:00Z".into(),
                session: SessionId::from("s"),
                body,
                raw: None,
            });
        }
        let last = t.len() - 1;
        let mut v = ConversationView::new();
        v.prepare(&t, 60, 10, &theme);
        // Scrolled away to the top, the last item selected and expanded there.
        v.go_top();
        v.follow = false;
        v.prepare(&t, 60, 10, &theme);
        v.selected = Some(last);
        v.toggle_expanded(last);
        v.reveal(&t, last, &theme);
        v.prepare(&t, 60, 10, &theme);
        let shown: String = v
            .visible(&t, &theme)
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect();
        assert!(shown.contains("out-line-0"), "{shown}");
        assert!(!shown.contains("message 0\n"), "{shown}");
    }

    #[test]
    fn scrolling_up_leaves_follow_and_scrolling_back_down_resumes_it() {
        let theme = Theme::new(ColorLevel::None);
        let t = transcript(50);
        let mut v = ConversationView::new();
        v.prepare(&t, 40, 10, &theme);
        v.scroll(&t, -5, &theme);
        assert!(!v.follow);
        v.prepare(&t, 40, 10, &theme);
        let lines: Vec<String> = v
            .visible(&t, &theme)
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(lines.last().map(String::as_str), Some("message 44"));
        v.scroll(&t, 100, &theme);
        assert!(v.follow);
        v.go_top();
        v.prepare(&t, 40, 10, &theme);
        assert_eq!(v.visible(&t, &theme)[0].to_string(), "message 0");
    }
}
