//! Splitting the agent log into complete lines. A line is only parsed once its newline
//! has arrived; the unfinished tail waits, and is not counted in the committed offset.

#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Add bytes; return the lines they complete (without the newline).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let Some(last_nl) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    /// Bytes received but not yet part of a complete line.
    pub fn pending_len(&self) -> u64 {
        self.pending.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_partial_lines_until_their_newline() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"{\"a\":").is_empty());
        assert_eq!(b.pending_len(), 5);
        assert_eq!(b.push(b"1}\n{\"b\"").as_slice(), ["{\"a\":1}"]);
        assert_eq!(b.pending_len(), 4);
        assert_eq!(b.push(b":2}\n\n").as_slice(), ["{\"b\":2}"]);
        assert_eq!(b.pending_len(), 0);
    }
}
