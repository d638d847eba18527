//! The body of a request on its way upstream: the client's body, its bytes counted for the
//! access line, and a malformed body turned into the client's error ([`Refusal::Client`]).

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
