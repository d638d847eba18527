//! The transport header as production reads it: `read_unbounded` over a stream whose bytes
//! arrive in pieces of fuzzer-chosen sizes (and with `Pending` between some of them), checked
//! against `decode` over the whole buffer. It must agree (the same header and length, or the
//! same error; `Truncated` where the buffer ends before the decoder could tell), consume no byte
//! past the header, and never panic.
//!
//! Input: byte 0 is the number `k` (0..=15) of split bytes that follow; those `k` bytes are the
//! piece sizes, used in turn (0 means "Pending once, then go on"); the rest is the stream.

use crossgate::transport_header::{HeaderError, PREFACE, decode, read_unbounded};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// A reader handing out `data` in pieces.
struct Pieces<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: &'a [u8],
    turn: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = match self.sizes {
            [] => usize::MAX,
            sizes => sizes[self.turn % sizes.len()] as usize,
        };
        self.turn += 1;
        if size == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = size.min(buf.remaining()).min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// The preface and the length prefix: `read_unbounded` reads this much before it can refuse.
const HEAD_LEN: usize = PREFACE.len() + 4;

/// One input, as libFuzzer hands it to the target (and `tests/fuzz_known.rs` replays it).
pub fn check(input: &[u8]) {
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let k = (k as usize % 16).min(rest.len());
    let (sizes, data) = rest.split_at(k);
    // Zero-size pieces only: the reader would never progress.
    if !sizes.is_empty() && sizes.iter().all(|s| *s == 0) {
        return;
    }
    let mut reader = Pieces {
        data,
        pos: 0,
        sizes,
        turn: 0,
    };
    let read = runtime().block_on(read_unbounded(&mut reader));
    match (decode(data), read) {
        (Ok(Some((want, n))), Ok((got, m))) => {
            assert_eq!(want, got);
            assert_eq!(n, m);
            assert_eq!(reader.pos, n, "read past the header");
        }
        // The stream ended before the header did.
        (Ok(None), Err(HeaderError::Truncated)) => {}
        (Err(e), Err(got)) => {
            if data.len() >= HEAD_LEN {
                assert_eq!(e, got);
            } else {
                // Too short for the head: the reader sees the end first.
                assert_eq!(got, HeaderError::Truncated, "decode said {e:?}");
            }
        }
        (want, got) => panic!("decode {want:?} but read {got:?}"),
    }
}
