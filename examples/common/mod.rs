//! Shared by the examples: the byte-counting sink behind the stream benchmarks.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Accepts on `l` forever; each connection is read to its end, then answered with the
/// number of bytes read (8 bytes, big-endian).
pub async fn count_sink(l: TcpListener) -> std::io::Result<()> {
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = s.write_all(&n.to_be_bytes()).await;
        });
    }
}
