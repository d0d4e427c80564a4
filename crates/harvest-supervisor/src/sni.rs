//! The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3), read from the
//! first bytes a client sends through a CONNECT tunnel, so that a tunnel opened to an
//! allowed host cannot carry a TLS session to another one fronted by the same address
//! (a CDN serves many names on one IP). What stays out of reach without intercepting
//! TLS: the HTTP `Host` inside the encrypted session, and Encrypted Client Hello, whose
//! outer name is the only one visible (docs/providers.md says so).

/// What the first bytes of a tunnel say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not TLS at all.
    NotTls,
    /// TLS, but not all of the first record has arrived.
    Incomplete,
    /// A ClientHello naming this server (`None`: it names none).
    Tls(Option<String>),
    /// TLS that does not parse as a ClientHello.
    Malformed,
}

pub fn parse(bytes: &[u8]) -> Hello {
    if bytes.is_empty() {
        return Hello::Incomplete;
    }
    if bytes[0] != 0x16 {
        return Hello::NotTls;
    }
    if bytes.len() < 5 {
        return Hello::Incomplete;
    }
    let record_len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    let Some(record) = bytes.get(5..5 + record_len) else {
        return Hello::Incomplete;
    };
    client_hello(record).map_or(Hello::Malformed, Hello::Tls)
}

/// The SNI of a handshake message that is a ClientHello in one record (what every
/// client sends; a hello split over records is treated as malformed).
fn client_hello(b: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(b);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader(r.take(len)?);
    r.take(2 + 32)?; // version, random
    let sid = usize::from(r.u8()?);
    r.take(sid)?;
    let suites = usize::from(r.u16()?);
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    if r.0.is_empty() {
        return Some(None);
    }
    let ext_len = usize::from(r.u16()?);
    let mut exts = Reader(r.take(ext_len)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = usize::from(exts.u16()?);
        let data = exts.take(len)?;
        if kind == 0 {
            let mut d = Reader(data);
            let list = usize::from(d.u16()?);
            let mut list = Reader(d.take(list)?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let n = usize::from(list.u16()?);
                let name = list.take(n)?;
                if name_type == 0 {
                    return Some(Some(String::from_utf8_lossy(name).into_owned()));
                }
            }
        }
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// A minimal ClientHello naming `name` (for tests, here and in `egress`).
#[cfg(test)]
pub fn hello_for(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
    sni.extend_from_slice(n);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_read_whole_and_only_once_the_record_is_in() {
        let hello = hello_for("pypi.org");
        assert_eq!(parse(&hello), Hello::Tls(Some("pypi.org".into())));
        assert_eq!(parse(&hello[..hello.len() - 1]), Hello::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        let mut bad = hello.clone();
        bad[5] = 2; // a ServerHello
        assert_eq!(parse(&bad), Hello::Malformed);
    }
}
