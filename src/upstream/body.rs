//! The bodies that cross the upstream: a request's ([`RequestBody`]: the client's body, its
//! bytes counted for the access line, a malformed body turned into the client's error,
//! [`Refusal::Client`]) and a response's ([`ResponseBody`]: the request's share of its
//! endpoint's load, and its round trip at the first data frame).

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
    inner: Incoming,
    pending: Option<super::health::InFlight>,
}

impl ResponseBody {
    pub(super) fn new(inner: Incoming, pending: super::health::InFlight) -> ResponseBody {
        ResponseBody {
            inner,
            pending: Some(pending),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
