//! Daytona's auto-stop counts only requests as activity, not bytes flowing on an open log
//! WebSocket, so a turn that streams (or runs a silent tool) for longer than the interval
//! would be stopped mid-turn. While a turn is open (from a user message written to the
//! agent until its `result` line), a cheap toolbox call is made every `every`; an idle
//! agent makes none, so an idle sandbox still stops.

use crate::toolbox::Toolbox;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

#[derive(Default)]
pub struct TurnWatch {
    open: AtomicBool,
    /// The end of the previous output chunk, so a `result` split across chunks is seen.
    tail: Mutex<Vec<u8>>,
}

/// Inside a JSON string the quotes would be escaped, so this only matches a key.
const RESULT: &[u8] = br#""type":"result""#;

impl TurnWatch {
    /// A line written to the agent: a user message opens a turn.
    pub fn wrote(&self, line: &str) {
        if line.contains(r#""type":"user""#) {
            tracing::debug!("a turn opens");
            self.open.store(true, Ordering::SeqCst);
        }
    }

    /// Output of the agent: its `result` line closes the turn.
    pub fn saw(&self, chunk: &[u8]) {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.extend_from_slice(chunk);
        if tail.windows(RESULT.len()).any(|w| w == RESULT) {
            tracing::debug!("the turn ends");
            self.open.store(false, Ordering::SeqCst);
        }
        let keep = tail.len().saturating_sub(RESULT.len());
        tail.drain(..keep);
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

/// Ping while the turn is open; ends once the process's handles are dropped.
pub fn spawn(
    watch: Weak<TurnWatch>,
    toolbox: Toolbox,
    session: String,
    cmd: String,
    every: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(w) = watch.upgrade() else { return };
            if w.is_open() {
                drop(w);
                // Any toolbox request counts as activity; this one is the cheapest.
                let _ = toolbox.command(&session, &cmd).await;
            }
        }
    });
}

pub type Shared = Arc<TurnWatch>;

#[cfg(test)]
mod tests {
    use super::TurnWatch;

    #[test]
    fn a_user_message_opens_a_turn_and_a_result_split_across_chunks_closes_it() {
        let w = TurnWatch::default();
        assert!(!w.is_open());
        w.wrote(r#"{"type":"user","message":{"role":"user","content":"hi"}}"#);
        assert!(w.is_open());
        w.saw(br#"{"type":"assistant"}\n{"type":"res"#);
        assert!(w.is_open());
        w.saw(br#"ult","subtype":"success"}"#);
        assert!(!w.is_open());
        // A control answer is not a user message.
        w.wrote(r#"{"type":"control_response"}"#);
        assert!(!w.is_open());
    }
}
