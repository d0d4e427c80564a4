//! What each response forwarded through the proxy cost, counted against the agent
//! process's allowance. The proxy, not the CLI, is where the budget holds: a tool with
//! the agent's token can call the API itself, outside the CLI's `--max-budget-usd`.
//!
//! Usage is read from the response as it streams by (the SSE `message_start` and
//! `message_delta` events, or a JSON message's `usage`), priced by the model the
//! response names. A model the table does not know is priced as the dearest one: the
//! budget errs on the side of stopping early.

use std::sync::{Arc, Mutex, PoisonError};

/// Something the proxy did that the user should see (the supervisor writes it to the
/// agent's log as a marker line).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A request the CLI never makes, not forwarded.
    Refused { method: String, path: String },
    /// A request refused because the allowance is spent.
    BudgetReached { spent_usd: f64, allowance_usd: f64 },
}

pub type Notify = Arc<dyn Fn(Notice) + Send + Sync>;

/// One agent process's spending through the proxy.
pub struct Accounting {
    allowance_usd: Option<f64>,
    spent_usd: Mutex<f64>,
    notify: Notify,
    /// Requests under way at once under a budget (see [`Accounting::in_flight`]).
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// How many requests may be under way at once when a budget holds: what the budget
/// can be overrun by is then what that many answers cost.
pub const IN_FLIGHT_UNDER_BUDGET: usize = 4;

impl Accounting {
    pub fn new(allowance_usd: Option<f64>, notify: Notify) -> Self {
        Accounting {
            allowance_usd,
            spent_usd: Mutex::new(0.0),
            notify,
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_UNDER_BUDGET)),
        }
    }

    pub fn limited(&self) -> bool {
        self.allowance_usd.is_some()
    }

    /// Under a budget, a place among the requests under way, waited for up to 60 s
    /// (`None` without a budget, or when none came free: the request is refused).
    pub async fn in_flight(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if !self.limited() {
            return None;
        }
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.in_flight.clone().acquire_owned(),
        )
        .await
        .ok()?
        .ok()
    }

    pub fn spent(&self) -> f64 {
        *self
            .spent_usd
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some((spent, allowance))` when no further request may go.
    pub fn exhausted(&self) -> Option<(f64, f64)> {
        let allowance = self.allowance_usd?;
        let spent = self.spent();
        (spent >= allowance).then_some((spent, allowance))
    }

    pub fn charge(&self, usd: f64) {
        if usd > 0.0 {
            *self
                .spent_usd
                .lock()
                .unwrap_or_else(PoisonError::into_inner) += usd;
        }
    }

    pub fn tell(&self, notice: Notice) {
        (self.notify)(notice);
    }
}

/// Reads a response's usage as its bytes pass, and charges it when dropped (at the end
/// of the body, or when the client went away mid-stream: what was used is still owed).
pub struct Meter {
    accounting: Arc<Accounting>,
    _in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
    sse: bool,
    pending: Vec<u8>,
    model: String,
    usage: Usage,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_write: u64,
    pub cache_read: u64,
}

/// The most of a line (SSE) or a whole JSON body kept to be read.
const MAX_PENDING: usize = 4 << 20;

impl Meter {
    pub fn new(
        accounting: Arc<Accounting>,
        content_type: &str,
        in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Self {
        Meter {
            accounting,
            _in_flight: in_flight,
            sse: content_type.starts_with("text/event-stream"),
            pending: Vec::new(),
            model: String::new(),
            usage: Usage::default(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > MAX_PENDING {
            // A line this long is no usage event; keep only what may still complete one.
            self.pending.clear();
            if !self.sse {
                return;
            }
        }
        self.pending.extend_from_slice(bytes);
        if !self.sse {
            return;
        }
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            if let Some(data) = line.strip_prefix(b"data:")
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
            {
                self.event(&v);
            }
        }
    }

    fn event(&mut self, v: &serde_json::Value) {
        match v["type"].as_str() {
            Some("message_start") => {
                self.take_model(&v["message"]);
                self.take_usage(&v["message"]["usage"]);
            }
            Some("message_delta") => self.take_usage(&v["usage"]),
            _ => {}
        }
    }

    fn take_model(&mut self, message: &serde_json::Value) {
        if let Some(m) = message["model"].as_str() {
            self.model = m.to_owned();
        }
    }

    /// Usage figures are cumulative within a message: the latest of each counts.
    fn take_usage(&mut self, u: &serde_json::Value) {
        let set = |field: &str, into: &mut u64| {
            if let Some(n) = u[field].as_u64() {
                *into = n;
            }
        };
        set("input_tokens", &mut self.usage.input);
        set("output_tokens", &mut self.usage.output);
        set("cache_creation_input_tokens", &mut self.usage.cache_write);
        set("cache_read_input_tokens", &mut self.usage.cache_read);
    }

    fn settle(&mut self) -> f64 {
        if !self.sse && !self.pending.is_empty() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.pending) {
                self.take_model(&v);
                self.take_usage(&v["usage"]);
            }
            self.pending.clear();
        }
        cost_usd(&self.model, self.usage)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let cost = self.settle();
        self.accounting.charge(cost);
    }
}

/// Dollars per million tokens: input, output. Cache writes cost 1.25× input, cache reads
/// 0.1× (Anthropic's published pricing).
fn price(model: &str) -> (f64, f64) {
    let m = model.to_ascii_lowercase();
    let newer_opus = ["opus-4-5", "opus-4-6", "opus-4-7", "opus-5"];
    if m.contains("opus") && newer_opus.iter().any(|v| m.contains(v)) {
        (5.0, 25.0)
    } else if m.contains("sonnet") {
        (3.0, 15.0)
    } else if m.contains("haiku-4") || m.contains("haiku-5") {
        (1.0, 5.0)
    } else if m.contains("haiku-3-5") {
        (0.8, 4.0)
    } else if m.contains("haiku") {
        (0.25, 1.25)
    } else {
        // Older Opus, and any model not known here: the dearest price.
        (15.0, 75.0)
    }
}

pub fn cost_usd(model: &str, u: Usage) -> f64 {
    let (input, output) = price(model);
    let per = |n: u64, usd: f64| n as f64 * usd / 1_000_000.0;
    per(u.input, input)
        + per(u.output, output)
        + per(u.cache_write, input * 1.25)
        + per(u.cache_read, input * 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(kind: &str) -> (Meter, Arc<Accounting>) {
        let acc = Arc::new(Accounting::new(Some(1.0), Arc::new(|_| {})));
        (Meter::new(acc.clone(), kind, None), acc)
    }

    #[test]
    fn a_streamed_response_is_charged_from_its_usage_events_split_anywhere() {
        let (mut m, acc) = meter("text/event-stream");
        let body = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",",
            "\"usage\":{\"input_tokens\":1000000,\"output_tokens\":1}}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":100000}}\n\n"
        );
        for chunk in body.as_bytes().chunks(7) {
            m.feed(chunk);
        }
        drop(m);
        // 1M input at $3 + 100k output at $15.
        assert!((acc.spent() - 4.5).abs() < 1e-9, "{}", acc.spent());
        assert_eq!(acc.exhausted(), Some((acc.spent(), 1.0)));
    }

    #[test]
    fn a_json_message_is_charged_and_an_unknown_model_at_the_dearest_price() {
        let (mut m, acc) = meter("application/json");
        m.feed(br#"{"model":"mystery","usage":{"input_tokens":1000,"output_tokens":0}}"#);
        drop(m);
        assert!((acc.spent() - 0.015).abs() < 1e-9, "{}", acc.spent());
        assert_eq!(acc.exhausted(), None);
    }
}
