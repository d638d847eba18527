//! The server name of a TLS ClientHello, read from the raw bytes without terminating TLS, for
//! the passthrough port. Bounded: at most [`MAX_HELLO`] bytes of handshake records, the
//! ClientHello reassembled across records and across however many reads delivered them.
//! Pure: [`parse`] is called again with the longer buffer after each read, and says whether
//! it needs more, found the hello, or refuses the bytes.

use std::borrow::Cow;

/// The most a ClientHello may take, its record headers included: one full TLS record. Real
/// hellos (a post-quantum key share, GREASE, padding) stay well under it.
pub const MAX_HELLO: usize = 16 * 1024;

const RECORD_HEADER: usize = 5;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello's prefix: read more (refused as too large past [`MAX_HELLO`]).
    Partial,
    /// A whole ClientHello, and the host name of its `server_name` extension, if any.
    Complete { sni: Option<String> },
}

/// Bytes that are not a ClientHello the gateway will read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a client hello")]
    NotHello,
    #[error("malformed client hello")]
    Malformed,
    #[error("client hello too large")]
    TooLarge,
}

/// Reads `buf`, everything the client sent so far.
pub fn parse(buf: &[u8]) -> Result<Hello, HelloError> {
    if buf.first().is_some_and(|b| *b != HANDSHAKE) {
        return Err(HelloError::NotHello);
    }
    let Some(message) = handshake_message(buf)? else {
        return if buf.len() >= MAX_HELLO {
            Err(HelloError::TooLarge)
        } else {
            Ok(Hello::Partial)
        };
    };
    let sni = server_name(&message).ok_or(HelloError::Malformed)?;
    Ok(Hello::Complete { sni })
}

/// The first handshake message's body, once the records hold it whole: borrowed when one
/// record carries it, reassembled when it spans several.
fn handshake_message(buf: &[u8]) -> Result<Option<Cow<'_, [u8]>>, HelloError> {
    let mut fragments: Vec<&[u8]> = Vec::new();
    let mut have = 0;
    let mut rest = buf;
    loop {
        let Some(header) = rest.get(..RECORD_HEADER) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != HANDSHAKE || header[1] != 3 {
            return Err(if fragments.is_empty() {
                HelloError::NotHello
            } else {
                HelloError::Malformed
            });
        }
        if len == 0 || len > 16 * 1024 {
            return Err(HelloError::Malformed);
        }
        let body = &rest[RECORD_HEADER..];
        let fragment = &body[..len.min(body.len())];
        fragments.push(fragment);
        have += fragment.len();
        if have >= 4 {
            let mut head = [0u8; 4];
            for (h, b) in head.iter_mut().zip(fragments.iter().flat_map(|f| f.iter())) {
                *h = *b;
            }
            if head[0] != CLIENT_HELLO {
                return Err(HelloError::NotHello);
            }
            let need =
                4 + (usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]));
            // The hello and the record headers it needs at the least.
            if need + RECORD_HEADER * need.div_ceil(16 * 1024) > MAX_HELLO {
                return Err(HelloError::TooLarge);
            }
            if have >= need {
                return Ok(Some(match fragments.as_slice() {
                    [one] => Cow::Borrowed(&one[4..need]),
                    many => {
                        let mut whole = many.concat();
                        whole.truncate(need);
                        whole.drain(..4);
                        Cow::Owned(whole)
                    }
                }));
            }
        }
        if body.len() < len {
            return Ok(None);
        }
        rest = &body[len..];
    }
}

/// A ClientHello body's `server_name` host name: `Some(None)` when it has none, `None` when
/// the body does not parse.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session_id = r.u8()?;
    if session_id > 32 {
        return None;
    }
    r.take(usize::from(session_id))?;
    let suites = r.u16()?;
    if suites < 2 || suites % 2 != 0 {
        return None;
    }
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let len = r.u16()?;
    let mut extensions = Reader(r.take(usize::from(len))?);
    let mut found = None;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = extensions.u16()?;
        let data = extensions.take(usize::from(len))?;
        if kind == SERVER_NAME {
            if found.is_some() {
                return None; // twice
            }
            found = Some(host_name(data)?);
        }
    }
    Some(found.flatten())
}

/// The `host_name` entry of a `server_name` extension's list.
fn host_name(data: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(data);
    let len = r.u16()?;
    let mut list = Reader(r.take(usize::from(len))?);
    if !r.0.is_empty() {
        return None;
    }
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let len = list.u16()?;
        let name = list.take(usize::from(len))?;
        if kind == HOST_NAME {
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            return Some(Some(String::from_utf8(name.to_vec()).ok()?));
        }
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests;
