//! Bounding the agent's output lines on their way into the log. Complete lines are written
//! whole; a line that grows past the limit is dropped as it streams (never held in full)
//! and replaced by one marker line the parser turns into an error event; a torn last line
//! (the agent died mid-write) is replaced the same way. So the log holds only complete
//! lines, and nothing the agent prints can make the daemon hold more than the limit.

pub struct LineCap {
    limit: usize,
    current: Vec<u8>,
    /// Bytes of an oversized line dropped so far (`Some` while inside one).
    dropping: Option<u64>,
}

impl LineCap {
    pub fn new(limit: usize) -> Self {
        LineCap {
            limit,
            current: Vec::new(),
            dropping: None,
        }
    }

    /// Feed bytes; returns what to append to the log (complete lines only).
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let nl = chunk.iter().position(|b| *b == b'\n');
            let (part, rest, ends) = match nl {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if let Some(dropped) = self.dropping.as_mut() {
                *dropped += part.len() as u64;
            } else if self.current.len() + part.len() > self.limit {
                self.dropping = Some((self.current.len() + part.len()) as u64);
                self.current = Vec::new();
            } else {
                self.current.extend_from_slice(part);
            }
            if ends {
                match self.dropping.take() {
                    Some(bytes) => out.extend(marker("harvest_line_too_long", bytes, self.limit)),
                    None if forged_marker(&self.current) => {
                        tracing::warn!("dropped an agent line posing as a harvest marker");
                        self.current.clear();
                    }
                    None => {
                        out.append(&mut self.current);
                        out.push(b'\n');
                    }
                }
            }
        }
        out
    }

    /// At the end of the output: a line without its newline is reported, not kept.
    pub fn finish(&mut self) -> Vec<u8> {
        let torn = self.dropping.take().unwrap_or(0) + self.current.len() as u64;
        self.current = Vec::new();
        if torn == 0 {
            Vec::new()
        } else {
            marker("harvest_torn_line", torn, self.limit)
        }
    }
}

/// Whether an agent's line claims a marker's type. The CLI never emits one (its types
/// are its own), so such a line comes from a process that took over the CLI's stdout
/// and wants the daemon to believe the supervisor wrote it. Only lines that mention the
/// prefix at all are parsed.
fn forged_marker(line: &[u8]) -> bool {
    const PREFIX: &[u8] = b"harvest_";
    if !line.windows(PREFIX.len()).any(|w| w == PREFIX) {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(|t| t.starts_with("harvest_")))
        .unwrap_or(false)
}

fn marker(kind: &str, bytes: u64, limit: usize) -> Vec<u8> {
    let mut line = serde_json::json!({"type": kind, "bytes": bytes, "limit": limit}).to_string();
    line.push('\n');
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines_posing_as_markers_are_dropped() {
        let mut c = LineCap::new(1000);
        let out = c.push(
            b"{\"type\":\"harvest_network_denied\",\"host\":\"x\",\"port\":1}\n{\"type\":\"assistant\",\"text\":\"harvest_ is fine here\"}\n",
        );
        assert_eq!(
            out,
            b"{\"type\":\"assistant\",\"text\":\"harvest_ is fine here\"}\n"
        );
    }

    #[test]
    fn complete_lines_pass_split_anywhere() {
        let mut c = LineCap::new(100);
        assert_eq!(c.push(b"{\"a\""), b"");
        assert_eq!(c.push(b":1}\n{\"b\":2}\n{"), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(c.push(b"}\n"), b"{}\n");
        assert!(c.finish().is_empty());
    }

    #[test]
    fn an_oversized_line_becomes_one_marker_and_the_next_line_survives() {
        let mut c = LineCap::new(8);
        let mut out = c.push(b"0123456");
        out.extend(c.push(b"789abcdef"));
        out.extend(c.push(b"ghij\n{\"ok\":1}\n"));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let m: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(m["type"], "harvest_line_too_long");
        assert_eq!(m["bytes"], 20);
        assert_eq!(lines[1], "{\"ok\":1}");
    }

    #[test]
    fn a_torn_last_line_is_reported() {
        let mut c = LineCap::new(100);
        assert_eq!(c.push(b"{\"a\":1}\n{\"half"), b"{\"a\":1}\n");
        let m: serde_json::Value = serde_json::from_slice(&c.finish()).unwrap();
        assert_eq!(m["type"], "harvest_torn_line");
        assert_eq!(m["bytes"], 6);
    }
}
