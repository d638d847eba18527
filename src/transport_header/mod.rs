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
mod tests;
