//! Secrets never reach the store or the logs: the values a session was given are replaced
//! wherever they appear in what the agent printed (a `printenv` in a Bash call, an error
//! that echoes a header).

use harvest_protocol::Secret;

pub const MASK: &str = "[redacted]";

/// The secret values worth masking: credentials, not the API's address, and nothing so
/// short it would mask ordinary text.
pub fn values(secrets: &std::collections::BTreeMap<String, Secret>) -> Vec<String> {
    secrets
        .iter()
        .filter(|(k, _)| k.as_str() != "ANTHROPIC_BASE_URL")
        .map(|(_, s)| s.expose().to_owned())
        .filter(|v| v.len() >= 8)
        .collect()
}

pub fn redact(text: &str, values: &[String]) -> Option<String> {
    if !values.iter().any(|v| text.contains(v.as_str())) {
        return None;
    }
    let mut out = text.to_owned();
    for v in values {
        out = out.replace(v.as_str(), MASK);
    }
    Some(out)
}

/// Masking across streamed deltas: a secret may arrive split over several deltas
/// (`sk` / `-ant-secret-1` / `23`), each harmless alone. The end of what streamed so far
/// is held back only while it could be the start of a secret (the longest suffix that is
/// a prefix of one), until the next delta shows whether it is; the block's end flushes
/// it. Ordinary text is rarely held, and then only a few characters; what is held lives
/// in memory only (a daemon that dies loses it from the deltas, not from the block's
/// complete text that follows).
#[derive(Debug, Default)]
pub struct DeltaRedactor {
    held: String,
}

impl DeltaRedactor {
    /// What of this delta may be shown now (possibly nothing).
    pub fn push(&mut self, delta: &str, values: &[String]) -> String {
        if values.is_empty() {
            return std::mem::take(&mut self.held) + delta;
        }
        self.held.push_str(delta);
        if let Some(masked) = redact(&self.held, values) {
            self.held = masked;
        }
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let suffix = &self.held[i..];
                values
                    .iter()
                    .any(|v| v.len() > suffix.len() && v.starts_with(suffix))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// The block ended: whatever is held is shown (it holds no whole secret).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn a_secret_split_across_deltas_never_shows_whole_or_in_pieces() {
        let vals = values(&secrets(&[
            ("ANTHROPIC_API_KEY", "sk-rt-secret-123"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1"),
        ]));
        assert_eq!(vals.len(), 1, "the base URL is not a secret");
        let mut d = DeltaRedactor::default();
        let mut shown = String::new();
        for piece in [
            "the key is sk",
            "-rt-secret-1",
            "23 and more text here",
            " done",
        ] {
            let out = d.push(piece, &vals);
            assert!(
                !out.contains("secret"),
                "a piece of the key was shown: {out:?}"
            );
            shown.push_str(&out);
        }
        shown.push_str(&d.flush());
        assert_eq!(shown, "the key is [redacted] and more text here done");
    }

    #[test]
    fn ordinary_text_streams_without_delay() {
        let vals = vec!["sk-rt-secret-123".to_owned()];
        let mut d = DeltaRedactor::default();
        assert_eq!(d.push("one two three ", &vals), "one two three ");
        assert_eq!(d.push("four", &vals), "four");
        // Only a possible start of the secret waits.
        assert_eq!(d.push(" ask", &vals), " a");
        assert_eq!(d.push("ed", &vals), "sked");
    }

    #[test]
    fn without_secrets_deltas_pass_at_once() {
        let mut d = DeltaRedactor::default();
        assert_eq!(d.push("hello", &[]), "hello");
        assert_eq!(d.flush(), "");
    }

    #[test]
    fn masks_every_occurrence_and_leaves_clean_text_alone() {
        let vals = values(&secrets(&[("A", "sk-ant-abcdef123"), ("B", "short")]));
        assert_eq!(vals.len(), 1);
        assert_eq!(
            redact("k=sk-ant-abcdef123 again sk-ant-abcdef123", &vals).as_deref(),
            Some("k=[redacted] again [redacted]")
        );
        assert_eq!(redact("nothing here", &vals), None);
    }
}
