//! The TCP socket under a TLS stream, able to read ahead.
//!
//! rustls takes its ciphertext about 4 KiB at a time (its deframer grows its buffer by 4 KiB
//! per read and shrinks it again when empty), so a bulk stream costs one `recvfrom` per 4–8 KiB:
//! 36,876 for 256 MiB each way through an opaque stream. With read-ahead on, one `recvfrom`
//! takes what the kernel holds, up to the buffer's size, and rustls's small reads are served
//! from it (8,461 for the same stream, with 64 KiB; a copy more in user space, less time in the
//! kernel: 2–4 % less CPU per MiB).
//! It is off until a connection is known to carry a stream (opaque TCP): an idle or HTTP
//! connection holds no buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP socket with an optional read-ahead buffer.
pub struct Wire {
    tcp: TcpStream,
    ahead: Option<Box<Ahead>>,
}

/// Bytes read from the socket and not yet handed on: `buf[start..end]`.
struct Ahead {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Wire {
    pub fn new(tcp: TcpStream) -> Wire {
        Wire { tcp, ahead: None }
    }

    /// Reads ahead from now on, `size` bytes at most per system call. Idempotent.
    pub fn read_ahead(&mut self, size: usize) {
        if self.ahead.is_none() {
            self.ahead = Some(Box::new(Ahead {
                buf: vec![0; size].into_boxed_slice(),
                start: 0,
                end: 0,
            }));
        }
    }

    /// Waits until there is something to read (or an error or end), reading nothing and
    /// making no system call: the socket's readiness as tokio tracks it, which the last read
    /// cleared if it came back short (it took all there was) or would have blocked. Only a
    /// last read that exactly filled its buffer leaves it set with nothing behind: then this
    /// returns early, and the caller's read waits under the same deadline. (A `peek` here
    /// cost a `recvfrom` on most connections of the no-hint path, two when it had to wait.)
    pub async fn readable(&self) -> io::Result<()> {
        match &self.ahead {
            Some(a) if a.start < a.end => Ok(()),
            _ => self.tcp.readable().await,
        }
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(ahead) = this.ahead.as_deref_mut() else {
            return Pin::new(&mut this.tcp).poll_read(cx, out);
        };
        if ahead.start == ahead.end {
            // A caller asking for as much as the buffer holds gains nothing from it.
            if out.remaining() >= ahead.buf.len() {
                return Pin::new(&mut this.tcp).poll_read(cx, out);
            }
            let mut fill = ReadBuf::new(&mut ahead.buf);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut fill))?;
            ahead.start = 0;
            ahead.end = fill.filled().len();
        }
        let n = out.remaining().min(ahead.end - ahead.start);
        out.put_slice(&ahead.buf[ahead.start..ahead.start + n]);
        ahead.start += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Wire, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (Wire::new(s), c)
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_read_ahead() {
        let (mut wire, mut peer) = pair().await;
        wire.read_ahead(64 * 1024);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();
        peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = wire.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn readable_sees_bytes_already_read_ahead() {
        let (mut wire, mut peer) = pair().await;
        wire.read_ahead(1024);
        peer.write_all(b"abcdef").await.unwrap();
        let mut two = [0u8; 2];
        wire.read_exact(&mut two).await.unwrap();
        // The rest is in the buffer, not on the socket: readable must not wait for more.
        tokio::time::timeout(std::time::Duration::from_secs(1), wire.readable())
            .await
            .expect("readable waited on the socket")
            .unwrap();
        let mut rest = [0u8; 4];
        wire.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"cdef");
    }

    #[tokio::test]
    async fn readable_waits_after_a_read_took_all_and_wakes_on_bytes_or_close() {
        use std::time::Duration;
        let (mut wire, mut peer) = pair().await;
        peer.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 64];
        // A short read: it took all there was.
        assert_eq!(wire.read(&mut buf).await.unwrap(), 3);
        let waited = tokio::time::timeout(Duration::from_millis(100), wire.readable()).await;
        assert!(waited.is_err(), "readable returned with nothing to read");
        peer.write_all(b"d").await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), wire.readable())
            .await
            .expect("readable missed the new bytes")
            .unwrap();
        assert_eq!(wire.read(&mut buf).await.unwrap(), 1);
        drop(peer);
        tokio::time::timeout(Duration::from_secs(1), wire.readable())
            .await
            .expect("readable missed the close")
            .unwrap();
        assert_eq!(wire.read(&mut buf).await.unwrap(), 0);
    }
}
