//! Load helpers for `benches/compare.py`, the side-by-side benchmark:
//! - `loadkit sink ADDR`: a TCP sink; on EOF it writes back the byte count (8 bytes, BE).
//! - `loadkit stream ADDR SNI CA CERT KEY MB [NAME:PORT]`: one mTLS stream of MB MiB to the
//!   sink through a proxy (with a Linkerd transport header when NAME:PORT is given); prints MB/s.
//! - `loadkit idle ADDR SNI CA CERT KEY N SECONDS [transport]`: opens N mTLS connections (ALPN
//!   http/1.1, or transport.l5d.io/v1), holds them SECONDS, prints how many were established.
//! - `loadkit soak ...`: the soak behind `benches/soak.sh` (see [`soak`]).

mod common;
mod soak;

use crossgate::transport_header::TransportHeader;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sink") => sink(&args[1]).await,
        Some("stream") => stream(&args[1..]).await,
        Some("idle") => idle(&args[1..]).await,
        Some("soak") => soak::run(&args[1..]).await,
        _ => anyhow::bail!("usage: loadkit sink|stream|idle|soak ..."),
    }
}

async fn sink(addr: &str) -> anyhow::Result<()> {
    Ok(common::count_sink(TcpListener::bind(addr).await?).await?)
}

fn client(args: &[String], alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let read = |i: usize| std::fs::read_to_string(&args[i]);
    Ok(crossgate::tls::client_config_from_pem(
        &read(2)?,
        &read(3)?,
        &read(4)?,
        alpn,
    )?)
}

async fn stream(args: &[String]) -> anyhow::Result<()> {
    let header = args.get(6).map(|t| {
        let (name, port) = t.rsplit_once(':').expect("NAME:PORT");
        TransportHeader {
            port: port.parse().expect("port"),
            name: Some(name.to_string()),
            protocol: None,
        }
    });
    let alpn: &[&[u8]] = if header.is_some() {
        &[crossgate::transport_header::ALPN]
    } else {
        &[]
    };
    let config = client(args, alpn)?;
    let mb: u64 = args[5].parse()?;
    let total = mb * 1024 * 1024;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut tls = crossgate::tls::connect(args[0].parse()?, config, &args[1]).await?;
    if let Some(h) = header {
        tls.write_all(&h.encode()).await?;
    }
    let mut sent = 0u64;
    while sent < total {
        tls.write_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    tls.shutdown().await?;
    let mut n = [0u8; 8];
    tls.read_exact(&mut n).await?;
    anyhow::ensure!(
        u64::from_be_bytes(n) == sent,
        "sink counted {}",
        u64::from_be_bytes(n)
    );
    println!("{:.1}", total as f64 / 1e6 / start.elapsed().as_secs_f64());
    Ok(())
}

async fn idle(args: &[String]) -> anyhow::Result<()> {
    let alpn: &[u8] = match args.get(7).map(String::as_str) {
        Some("transport") => crossgate::transport_header::ALPN,
        _ => b"http/1.1",
    };
    let config = client(args, &[alpn])?;
    let n: usize = args[5].parse()?;
    let hold: u64 = args[6].parse()?;
    let addr = args[0].parse()?;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (config, sni, sem) = (config.clone(), args[1].clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let tls = crossgate::tls::connect(addr, config, &sni).await.ok();
            drop(permit);
            tls
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(tls)) = t.await {
            held.push(tls);
        }
    }
    println!("{}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
    Ok(())
}
