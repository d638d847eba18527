//! The Linkerd transport header: what a source proxy writes after the TLS handshake when ALPN
//! negotiated `transport.l5d.io/v1`, naming the target and the session protocol.
//!
//! Wire form: the 23-byte preface `transport.l5d.io/v1\r\n\r\n`, a big-endian `u32` length, then
//! a protobuf `transport.l5d.io.Header`. Decoding is a pure function over bytes ([`decode`]);
//! [`read`] drives it over an async stream under a deadline. Routing the name is not done here.

use crate::names;
use prost::Message;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The ALPN protocol id under which a transport header follows the handshake.
pub const ALPN: &[u8] = b"transport.l5d.io/v1";
/// The preface that starts every header.
pub const PREFACE: &[u8] = b"transport.l5d.io/v1\r\n\r\n";
/// Linkerd refuses headers longer than this.
pub const MAX_LEN: usize = 64 * 1024;

/// What the application speaks after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionProtocol {
    Http1,
    Http2,
}

impl SessionProtocol {
    /// The metric label value for this protocol.
    pub fn as_label(self) -> &'static str {
        match self {
            SessionProtocol::Http1 => "http/1",
            SessionProtocol::Http2 => "http/2",
        }
    }
}

/// A decoded, validated transport header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportHeader {
    pub port: u16,
    /// The gateway target's name; `None` when the header names no target.
    pub name: Option<String>,
    /// `None` means opaque TCP.
    pub protocol: Option<SessionProtocol>,
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("connection did not start with the transport header preface")]
    BadPreface,
    #[error("header length {0} exceeds {MAX_LEN} bytes")]
    TooLong(usize),
    #[error("connection closed before the header was complete")]
    Truncated,
    #[error("header is not a valid protobuf message: {0}")]
    Malformed(String),
    #[error("port {0} is outside 1..=65535")]
    BadPort(i32),
    #[error("name {0:?} is not a DNS name")]
    BadName(String),
    #[error("header names no target")]
    NoName,
    #[error("header not complete within {0:?}")]
    Timeout(Duration),
    #[error("i/o error while reading header: {0}")]
    Io(String),
}

mod proto {
    //! `transport.l5d.io.Header`, by prost derive (no build script).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Header {
        #[prost(int32, tag = "1")]
        pub port: i32,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, optional, tag = "3")]
        pub session_protocol: Option<SessionProtocol>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionProtocol {
        #[prost(oneof = "Kind", tags = "1, 2")]
        pub kind: Option<Kind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        Http1(Http1),
        #[prost(message, tag = "2")]
        Http2(Http2),
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Http1 {}

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Http2 {}
}

impl TransportHeader {
    /// Encodes the header with its preface and length, as a source proxy sends it.
    pub fn encode(&self) -> Vec<u8> {
        let msg = proto::Header {
            port: i32::from(self.port),
            name: self.name.clone().unwrap_or_default(),
            session_protocol: self.protocol.map(|p| proto::SessionProtocol {
                kind: Some(match p {
                    SessionProtocol::Http1 => proto::Kind::Http1(proto::Http1 {}),
                    SessionProtocol::Http2 => proto::Kind::Http2(proto::Http2 {}),
                }),
            }),
        };
        let len = msg.encoded_len();
        let mut out = Vec::with_capacity(PREFACE.len() + 4 + len);
        out.extend_from_slice(PREFACE);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        msg.encode(&mut out).expect("Vec grows as needed");
        out
    }
}

/// The preface and the length prefix.
const HEAD_LEN: usize = PREFACE.len() + 4;

/// Checks the preface and returns the announced body length, refused above [`MAX_LEN`].
fn body_len(head: &[u8; HEAD_LEN]) -> Result<usize, HeaderError> {
    let (preface, len) = head.split_at(PREFACE.len());
    if preface != PREFACE {
        return Err(HeaderError::BadPreface);
    }
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_LEN {
        return Err(HeaderError::TooLong(len));
    }
    Ok(len)
}

/// Decodes a header from the start of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((header, n)))` means the header took the first `n` bytes and the rest belong to
/// the application.
pub fn decode(buf: &[u8]) -> Result<Option<(TransportHeader, usize)>, HeaderError> {
    let pre = buf.len().min(PREFACE.len());
    if buf[..pre] != PREFACE[..pre] {
        return Err(HeaderError::BadPreface);
    }
    let Some(head) = buf.first_chunk::<HEAD_LEN>() else {
        return Ok(None);
    };
    let len = body_len(head)?;
    let start = HEAD_LEN;
    if buf.len() < start + len {
        return Ok(None);
    }
    let header = decode_message(&buf[start..start + len])?;
    Ok(Some((header, start + len)))
}

/// Decodes and validates the protobuf body alone.
pub fn decode_message(body: &[u8]) -> Result<TransportHeader, HeaderError> {
    let msg = proto::Header::decode(body).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    let port = u16::try_from(msg.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(HeaderError::BadPort(msg.port))?;
    let name = if msg.name.is_empty() {
        None
    } else if names::is_dns_name(&msg.name) || names::is_ip_literal(&msg.name) {
        // IP literals are well-formed but never routable: routing refuses them as a bad
        // gateway domain, as the refusal table says.
        Some(msg.name)
    } else {
        return Err(HeaderError::BadName(msg.name));
    };
    let protocol = msg.session_protocol.and_then(|p| p.kind).map(|k| match k {
        proto::Kind::Http1(_) => SessionProtocol::Http1,
        proto::Kind::Http2(_) => SessionProtocol::Http2,
    });
    Ok(TransportHeader {
        port,
        name,
        protocol,
    })
}

/// Reads exactly one header from `io`, consuming no byte past it, within `deadline`.
/// Returns the header and the number of bytes it took.
pub async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
    deadline: Duration,
) -> Result<(TransportHeader, usize), HeaderError> {
    match tokio::time::timeout(deadline, read_unbounded(io)).await {
        Ok(r) => r,
        Err(_) => Err(HeaderError::Timeout(deadline)),
    }
}

/// [`read`] without a deadline, for a caller that bounds more than the read.
pub async fn read_unbounded<I: AsyncRead + Unpin>(
    io: &mut I,
) -> Result<(TransportHeader, usize), HeaderError> {
    let mut head = [0u8; HEAD_LEN];
    io.read_exact(&mut head).await.map_err(io_error)?;
    let len = body_len(&head)?;
    // Grown as bytes arrive: a peer that announces 64 KiB and sends nothing costs nothing.
    let mut body = Vec::with_capacity(len.min(256));
    (&mut *io)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(io_error)?;
    if body.len() < len {
        return Err(HeaderError::Truncated);
    }
    Ok((decode_message(&body)?, head.len() + len))
}

fn io_error(e: std::io::Error) -> HeaderError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        HeaderError::Truncated
    } else {
        HeaderError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn design_example_round_trips() {
        let bytes = hex(
            "7472616e73706f72742e6c35642e696f2f76310d0a0d0a 0000001c 08c81f \
             1213666f6f2e6261722e6578616d706c652e636f6d 1a021200",
        );
        let h = TransportHeader {
            port: 4040,
            name: Some("foo.bar.example.com".into()),
            protocol: Some(SessionProtocol::Http2),
        };
        assert_eq!(h.encode(), bytes);
        assert_eq!(decode(&bytes).unwrap(), Some((h, bytes.len())));
    }

    #[test]
    fn http1_encoding() {
        let h = TransportHeader {
            port: 9898,
            name: Some("a.b.svc.cluster.local".into()),
            protocol: Some(SessionProtocol::Http1),
        };
        assert!(h.encode().ends_with(&hex("1a020a00")));
    }

    #[test]
    fn captured_vectors_decode() {
        let cases = [
            (
                include_str!("../tests/vectors/h2-hint.hex"),
                9898,
                "podinfo.test.svc.cluster.local",
                Some(SessionProtocol::Http2),
            ),
            (
                include_str!("../tests/vectors/h1-nohint.hex"),
                9898,
                "podinfo-h1.test.svc.cluster.local",
                Some(SessionProtocol::Http1),
            ),
            (
                include_str!("../tests/vectors/opaque.hex"),
                9899,
                "tcpecho.test.svc.cluster.local",
                None,
            ),
            (
                include_str!("../tests/vectors/bad-domain.hex"),
                9898,
                "podinfo.test.example.com",
                Some(SessionProtocol::Http2),
            ),
        ];
        for (text, port, name, protocol) in cases {
            let bytes = hex(text);
            let (h, n) = decode(&bytes).unwrap().unwrap();
            assert_eq!(n, bytes.len());
            assert_eq!(h.port, port);
            assert_eq!(h.name.as_deref(), Some(name));
            assert_eq!(h.protocol, protocol);
            // Re-encoding gives the captured bytes exactly.
            assert_eq!(h.encode(), bytes);
        }
    }

    #[test]
    fn trailing_application_bytes_are_left() {
        let mut bytes = TransportHeader {
            port: 80,
            name: Some("x.y.svc.cluster.local".into()),
            protocol: None,
        }
        .encode();
        let n = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(decode(&bytes).unwrap().unwrap().1, n);
    }

    #[test]
    fn every_prefix_needs_more() {
        let bytes = TransportHeader {
            port: 80,
            name: Some("x.y.svc.cluster.local".into()),
            protocol: Some(SessionProtocol::Http1),
        }
        .encode();
        for i in 0..bytes.len() {
            assert_eq!(decode(&bytes[..i]), Ok(None), "prefix {i}");
        }
    }

    #[test]
    fn refusals() {
        let mut long = PREFACE.to_vec();
        long.extend_from_slice(&((MAX_LEN as u32) + 1).to_be_bytes());
        assert_eq!(decode(&long), Err(HeaderError::TooLong(MAX_LEN + 1)));
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(HeaderError::BadPreface));
        let port0 = hex("0000 0000");
        let mut b = PREFACE.to_vec();
        b.extend_from_slice(&port0);
        assert!(matches!(decode(&b), Err(HeaderError::BadPort(0))));
        for (port, name) in [(70000, "a.b"), (-1, "a.b"), (80, "bad name!"), (80, "-a.b")] {
            let msg = proto::Header {
                port,
                name: name.into(),
                session_protocol: None,
            };
            let err = decode_message(&msg.encode_to_vec()).unwrap_err();
            assert!(
                matches!(err, HeaderError::BadPort(_) | HeaderError::BadName(_)),
                "{err:?}"
            );
        }
        assert!(matches!(
            decode_message(&[0xff, 0xff]),
            Err(HeaderError::Malformed(_))
        ));
    }

    /// Arbitrary bytes never panic the decoder, and whatever it accepts re-encodes to a header
    /// that decodes to the same value (a deterministic stand-in for the fuzz target).
    #[test]
    fn arbitrary_input_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = TransportHeader {
            port: 9898,
            name: Some("podinfo.test.svc.cluster.local".into()),
            protocol: Some(SessionProtocol::Http2),
        }
        .encode();
        for _ in 0..50_000 {
            // Half the inputs mutate a valid header, half are noise after a valid preface.
            let mut input = if next() % 2 == 0 {
                valid.clone()
            } else {
                let mut v = PREFACE.to_vec();
                let len = (next() % 80) as usize;
                v.extend_from_slice(&(len as u32).to_be_bytes());
                v.extend((0..len).map(|_| next() as u8));
                v
            };
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % input.len();
                input[i] = next() as u8;
            }
            input.truncate(input.len() - (next() % 3) as usize);
            if let Ok(Some((h, n))) = decode(&input) {
                assert!(n <= input.len());
                let again = h.encode();
                assert_eq!(decode(&again), Ok(Some((h, again.len()))));
            }
        }
    }

    #[tokio::test]
    async fn read_split_and_truncated() {
        let bytes = TransportHeader {
            port: 9898,
            name: Some("podinfo.test.svc.cluster.local".into()),
            protocol: Some(SessionProtocol::Http2),
        }
        .encode();
        let (mut client, mut server) = tokio::io::duplex(64);
        let b2 = bytes.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in b2.chunks(3) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"rest").await.unwrap();
            client
        });
        let (h, n) = read(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(h.port, 9898);
        assert_eq!(n, bytes.len());
        let _client = writer.await.unwrap();
        let mut rest = [0u8; 4];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"rest");

        let (mut client, mut server) = tokio::io::duplex(64);
        {
            use tokio::io::AsyncWriteExt;
            client.write_all(&bytes[..30]).await.unwrap();
            drop(client);
        }
        assert_eq!(
            read(&mut server, Duration::from_secs(5)).await,
            Err(HeaderError::Truncated)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn read_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let err = read(&mut server, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(err, HeaderError::Timeout(Duration::from_secs(10)));
    }
}
