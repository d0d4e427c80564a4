//! Splitting a session command's log into stdout and stderr. Each line of the log is
//! prefixed with a 3-byte marker (`01 01 01` stdout, `02 02 02` stderr); markers may be
//! split across WebSocket frames (the toolbox reads the log in 1024-byte chunks), so the
//! last one or two bytes are held back while they could begin a marker.

const STDOUT: [u8; 3] = [1, 1, 1];
const STDERR: [u8; 3] = [2, 2, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Default)]
pub struct Demuxer {
    buf: Vec<u8>,
    current: Option<Stream>,
}

/// What one push yields, per stream, in order of arrival within each.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Split {
    fn put(&mut self, stream: Option<Stream>, bytes: &[u8]) {
        match stream {
            Some(Stream::Stdout) => self.stdout.extend_from_slice(bytes),
            Some(Stream::Stderr) => self.stderr.extend_from_slice(bytes),
            // Bytes before the first marker belong to no stream.
            None => {}
        }
    }
}

impl Demuxer {
    pub fn push(&mut self, bytes: &[u8]) -> Split {
        self.buf.extend_from_slice(bytes);
        let mut out = Split::default();
        let mut start = 0;
        let mut i = 0;
        while i + 3 <= self.buf.len() {
            let w = &self.buf[i..i + 3];
            let stream = if w == STDOUT {
                Some(Stream::Stdout)
            } else if w == STDERR {
                Some(Stream::Stderr)
            } else {
                None
            };
            if let Some(s) = stream {
                out.put(self.current, &self.buf[start..i]);
                self.current = Some(s);
                i += 3;
                start = i;
            } else {
                i += 1;
            }
        }
        // Hold back a tail that may be the start of a marker split across frames.
        let mut keep_from = self.buf.len();
        while keep_from > start
            && self.buf.len() - keep_from < 2
            && matches!(self.buf[keep_from - 1], 1 | 2)
        {
            keep_from -= 1;
        }
        out.put(self.current, &self.buf[start..keep_from]);
        self.buf.drain(..keep_from);
        out
    }

    /// The stream ended: what was held back goes to the current stream.
    pub fn finish(&mut self) -> Split {
        let mut out = Split::default();
        let rest = std::mem::take(&mut self.buf);
        out.put(self.current, &rest);
        out
    }
}

/// Demux a whole log at once.
pub fn split_all(log: &[u8]) -> Split {
    let mut d = Demuxer::default();
    let mut s = d.push(log);
    let rest = d.finish();
    s.stdout.extend(rest.stdout);
    s.stderr.extend(rest.stderr);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<u8> {
        let mut l = Vec::new();
        for (m, line) in [
            (STDOUT, "{\"type\":\"system\"}"),
            (STDERR, "warning: é"),
            (STDOUT, "{\"type\":\"result\"}"),
            (STDOUT, ""),
            (STDERR, "last"),
        ] {
            l.extend_from_slice(&m);
            l.extend_from_slice(line.as_bytes());
            l.push(b'\n');
        }
        l
    }

    #[test]
    fn every_frame_split_gives_the_same_streams() {
        let whole = split_all(&log());
        assert_eq!(
            String::from_utf8(whole.stdout.clone()).unwrap(),
            "{\"type\":\"system\"}\n{\"type\":\"result\"}\n\n"
        );
        assert_eq!(
            String::from_utf8(whole.stderr.clone()).unwrap(),
            "warning: é\nlast\n"
        );
        let bytes = log();
        for frame in 1..=bytes.len() {
            let mut d = Demuxer::default();
            let mut got = Split::default();
            for chunk in bytes.chunks(frame) {
                let s = d.push(chunk);
                got.stdout.extend(s.stdout);
                got.stderr.extend(s.stderr);
            }
            let s = d.finish();
            got.stdout.extend(s.stdout);
            got.stderr.extend(s.stderr);
            assert_eq!(got, whole, "frames of {frame} bytes");
        }
    }

    #[test]
    fn a_held_back_byte_that_is_not_a_marker_is_still_delivered() {
        let mut d = Demuxer::default();
        let mut s = d.push(&[1, 1, 1, b'a', 1]);
        assert_eq!(s.stdout, b"a");
        let more = d.push(b"b\n");
        s.stdout.extend(more.stdout);
        assert_eq!(s.stdout, b"a\x01b\n");
    }
}
