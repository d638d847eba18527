//! Opaque TCP: a bidirectional copy between the client's TLS stream and the upstream socket,
//! with half-close (a FIN one way leaves the other way open), an idle deadline over both
//! directions, and bytes counted on both legs as they pass.

use prometheus_client::metrics::counter::Counter;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Copy buffer per direction; a TLS record carries at most 16 KiB of plaintext.
const BUF: usize = 64 * 1024;

/// Why a stream ended other than by both sides closing.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Copies both ways until both directions have closed. Returns the bytes copied
/// (client to upstream, upstream to client).
pub async fn proxy<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    client_counters: (Counter, Counter),
    upstream_counters: (Counter, Counter),
) -> Result<(u64, u64), StreamError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let clock = Some((epoch, activity.clone()));
    let mut client = Metered::new(client, client_counters, clock.clone());
    let mut upstream = Metered::new(upstream, upstream_counters, clock);
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF);
    tokio::pin!(copy);
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = epoch + last + idle;
        tokio::select! {
            res = &mut copy => return res.map_err(StreamError::Io),
            _ = tokio::time::sleep_until(deadline) => {
                let now = Duration::from_millis(activity.load(Ordering::Relaxed));
                if now == last {
                    return Err(StreamError::Idle(idle));
                }
            }
        }
    }
}

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
pub(crate) struct Metered<S> {
    inner: S,
    counters: Counters,
    clock: Option<(Instant, Arc<AtomicU64>)>,
}

impl<S> Metered<S> {
    pub(crate) fn new(
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counters() -> (Counter, Counter) {
        (Counter::default(), Counter::default())
    }

    #[tokio::test]
    async fn half_close_both_ways() {
        let (mut client, gw_client) = tokio::io::duplex(1024);
        let (gw_upstream, mut backend) = tokio::io::duplex(1024);
        let (cc, uc) = (counters(), counters());
        let (c_read, u_write) = (cc.0.clone(), uc.1.clone());
        let task = tokio::spawn(proxy(
            gw_client,
            gw_upstream,
            Duration::from_secs(5),
            cc,
            uc,
        ));
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // The other direction still works after the client's FIN.
        backend.write_all(b"world").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world");
        assert_eq!(task.await.unwrap().unwrap(), (5, 5));
        assert_eq!(c_read.get(), 5);
        assert_eq!(u_write.get(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadline() {
        let (_client, gw_client) = tokio::io::duplex(1024);
        let (gw_upstream, _backend) = tokio::io::duplex(1024);
        let res = proxy(
            gw_client,
            gw_upstream,
            Duration::from_secs(30),
            counters(),
            counters(),
        )
        .await;
        assert!(matches!(res, Err(StreamError::Idle(_))));
    }
}
