//! A byte stream that counts what passes through it into a leg's counters (and, for an access
//! line, one connection's own), and optionally stamps its last activity for an idle deadline.
//! Below both the client side ([`crate::proxy`]) and the upstream side ([`crate::upstream`]).

use prometheus_client::metrics::counter::Counter;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The counters a metered stream adds its bytes to: a leg's (read, written), and optionally
/// one connection's own (for its access line).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    read: Counter,
    write: Counter,
    local: Option<(Counter, Counter)>,
}

impl From<(Counter, Counter)> for Counters {
    fn from((read, write): (Counter, Counter)) -> Counters {
        Counters {
            read,
            write,
            local: None,
        }
    }
}

impl Counters {
    /// Also counts into `local` (read, written).
    pub fn also(mut self, local: (Counter, Counter)) -> Counters {
        self.local = Some(local);
        self
    }

    fn read(&self, n: u64) {
        self.read.inc_by(n);
        if let Some((read, _)) = &self.local {
            read.inc_by(n);
        }
    }

    fn wrote(&self, n: u64) {
        self.write.inc_by(n);
        if let Some((_, write)) = &self.local {
            write.inc_by(n);
        }
    }
}

/// A stream that counts the bytes read and written and, when given a clock, stamps the last
/// activity (milliseconds since its epoch). HTTP connections pass no clock: they track
/// activity per request, which saves a clock read per read and write.
pub struct Metered<S> {
    inner: S,
    counters: Counters,
    clock: Option<(Instant, Arc<AtomicU64>)>,
}

impl<S> Metered<S> {
    pub fn new(
        inner: S,
        counters: impl Into<Counters>,
        clock: Option<(Instant, Arc<AtomicU64>)>,
    ) -> Self {
        Metered {
            inner,
            counters: counters.into(),
            clock,
        }
    }

    fn touch(&self) {
        if let Some((epoch, activity)) = &self.clock {
            activity.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.counters.read(n as u64);
            this.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            this.counters.wrote(n as u64);
            this.touch();
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
