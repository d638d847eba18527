//! The bodies that cross the upstream: a request's ([`RequestBody`]: the client's body, its
//! bytes counted for the access line, a malformed body turned into the client's error,
//! [`Refusal::Client`]) and a response's ([`ResponseBody`]: the request's share of its
//! endpoint's load, and its round trip at the first data frame).

use super::h2::H2Body;
use crate::refusal::Refusal;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// A request body on its way upstream; counts its bytes when an access line wants them.
pub struct RequestBody {
    inner: Incoming,
    bytes: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, bytes: Option<Arc<AtomicU64>>) -> RequestBody {
        RequestBody { inner, bytes }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    /// A body the client sent malformed becomes [`Refusal::Client`], which the upstream
    /// client carries back in its error chain: the answer is then 400 and the client's, not a
    /// 502 blamed on the upstream.
    type Error = Refusal;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Refusal>>> {
        let this = &mut *self;
        let polled = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let reason = crate::refusal::error_chain(&e);
                return Poll::Ready(Some(Err(Refusal::Client(reason))));
            }
            other => other,
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(bytes)) = (&polled, &this.bytes)
            && let Some(data) = frame.data_ref()
        {
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled.map(|f| f.map(|r| r.map_err(|e| Refusal::Client(e.to_string()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body from upstream, holding its request's place in the endpoint's load until it
/// ends or is dropped; its first data frame (or its end) is the request's round trip.
pub struct ResponseBody {
    inner: Inner,
    pending: Option<super::health::InFlight>,
}

/// An HTTP/1.1 connection's body (through hyper) or an HTTP/2 stream's (through `h2`).
enum Inner {
    H1(Incoming),
    H2(H2Body),
}

/// A response body's error, whichever connection it came by.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl ResponseBody {
    pub(super) fn h1(inner: Incoming, pending: super::health::InFlight) -> ResponseBody {
        ResponseBody {
            inner: Inner::H1(inner),
            pending: Some(pending),
        }
    }

    pub(super) fn h2(inner: H2Body, pending: super::health::InFlight) -> ResponseBody {
        ResponseBody {
            inner: Inner::H2(inner),
            pending: Some(pending),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled: Poll<Option<Result<Frame<Bytes>, BodyError>>> = match &mut this.inner {
            Inner::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inner::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        };
        if let Poll::Ready(frame) = &polled
            && let Some(pending) = this.pending.as_mut()
        {
            // The first data frame, or an end without one: the round trip is known.
            let data = matches!(frame, Some(Ok(f)) if f.is_data());
            if data || !matches!(frame, Some(Ok(_))) {
                pending.first_byte();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::H1(b) => b.is_end_stream(),
            Inner::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::H1(b) => b.size_hint(),
            Inner::H2(b) => b.size_hint(),
        }
    }
}
