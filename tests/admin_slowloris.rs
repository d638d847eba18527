//! The admin port under slowloris, on the real binary: 200 plaintext connections, each sending
//! one byte of a request head per second (and reconnecting when closed, as an attacker
//! would), against the default `admin_max_connections = 100`. A fresh `/ready` from another
//! client must still be answered at once: p99 under 100 ms. Past the cap, connections are
//! accepted on probation (a complete head within 1 s, one request), so slow ones never
//! leave a fast one in the backlog.

mod http_support;
mod support;

use http_support::BinaryGateway;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEAD: &[u8] = b"GET /ready HTTP/1.1\r\nhost: slow\r\n\r\n";

/// One attacker: a byte of a head per second, on a new connection whenever one is closed.
static CONNECTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn slowloris(admin: SocketAddr) {
    loop {
        CONNECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(mut tcp) = tokio::net::TcpStream::connect(admin).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut buf = [0u8; 256];
        for byte in HEAD.iter().cycle() {
            if tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                r = tcp.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break },
            }
        }
    }
}

/// A fresh client's `GET /ready`: the time from connect to the complete 200 answer.
async fn ready_took(admin: SocketAddr) -> Duration {
    let start = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
        tcp.write_all(b"GET /ready HTTP/1.1\r\nhost: kubelet\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.ok()?;
        out.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    match answered {
        Ok(Some(())) => start.elapsed(),
        // Refused, cut or late: counted as the whole deadline.
        _ => Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_within_100ms_under_slowloris() {
    let test = Instant::now();
    let gw = BinaryGateway::start("", "").await;
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(gw.admin)))
        .collect();
    // Every attacker connected and some bytes in: the cap is full of slow heads.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut took = Vec::new();
    while took.len() < 200 {
        took.push(ready_took(gw.admin).await);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for a in &attackers {
        a.abort();
    }
    took.sort();
    let (p50, p99) = (took[took.len() / 2], took[took.len() * 99 / 100]);
    eprintln!(
        "attacker connections: {}",
        CONNECTS.load(std::sync::atomic::Ordering::Relaxed)
    );
    let failed = took
        .iter()
        .filter(|t| **t >= Duration::from_secs(2))
        .count();
    eprintln!(
        "/ready under slowloris: p50 {p50:?} p99 {p99:?} max {:?}, {failed} failed",
        took[took.len() - 1]
    );
    assert!(p99 < Duration::from_millis(100), "p50 {p50:?} p99 {p99:?}");
    gw.terminate().await;
    assert!(
        test.elapsed() < Duration::from_secs(20),
        "{:?}",
        test.elapsed()
    );
}
