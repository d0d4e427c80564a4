//! Secrets never reach the store or the logs: the values a session was given are replaced
//! wherever they appear in what the agent printed (a `printenv` in a Bash call, an error
//! that echoes a header).

use harvest_protocol::Secret;

pub const MASK: &str = "[redacted]";

/// The secret values worth masking (very short values would mask ordinary text).
pub fn values<'a>(secrets: impl Iterator<Item = &'a Secret>) -> Vec<String> {
    secrets
        .map(|s| s.expose().to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_leaves_clean_text_alone() {
        let vals = values([Secret::new("sk-ant-abcdef123"), Secret::new("short")].iter());
        assert_eq!(vals.len(), 1);
        assert_eq!(
            redact("k=sk-ant-abcdef123 again sk-ant-abcdef123", &vals).as_deref(),
            Some("k=[redacted] again [redacted]")
        );
        assert_eq!(redact("nothing here", &vals), None);
    }
}
