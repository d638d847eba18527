//! One opaque TCP stream through the gateway, beside the same stream sent straight to the
//! backend: `cargo run --release --example stream_throughput [MB]`.
//! The gateway runs on its own 2-thread runtime, the client and the sink on another.

mod common;

use crossgate::certs::{GATEWAY_IDENTITY, Pki};
use crossgate::config::{Config, Overrides};
use crossgate::transport_header::TransportHeader;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENT: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";

fn main() -> anyhow::Result<()> {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2048);
    let dir = tempfile::tempdir()?;
    let pki = Pki::new()?;
    let gw_leaf = pki.leaf(GATEWAY_IDENTITY)?;
    let client_leaf = pki.leaf(CLIENT)?;
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem())?;
    std::fs::write(dir.path().join("tls.crt"), &gw_leaf.cert_pem)?;
    std::fs::write(dir.path().join("tls.key"), &gw_leaf.key_pem)?;

    let io_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sink = io_rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        tokio::spawn(common::count_sink(l));
        anyhow::Ok(addr)
    })?;

    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n\
         [routing.static]\n\"sink.bench.svc.cluster.local:9000\" = [\"{sink}\"]\n"
    );
    let config = Config::parse(&toml, "bench.toml", dir.path(), &Overrides::default())?;
    let gw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let gw = crossgate::Gateway::build(&config).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let listeners = gw_rt.block_on(crossgate::Listeners::bind(&config.server))?;
    let (gw_addr, _) = listeners.addrs()?;
    gw_rt.spawn(crossgate::run(gw, listeners, std::future::pending()));

    let client = crossgate::tls::client_config_from_pem(
        &pki.anchor_pem(),
        &client_leaf.cert_pem,
        &client_leaf.key_pem,
        &[crossgate::transport_header::ALPN],
    )?;
    let chunk = vec![0x5au8; 256 * 1024];
    let total = (mb * 1024 * 1024) as u64;
    io_rt.block_on(async {
        // Straight to the backend.
        let start = Instant::now();
        let mut s = TcpStream::connect(sink).await?;
        send(&mut s, &chunk, total).await?;
        let direct = total as f64 / 1e6 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let mut tls = crossgate::tls::connect(gw_addr, client, GATEWAY_IDENTITY).await?;
        let header = TransportHeader {
            port: 9000,
            name: Some("sink.bench.svc.cluster.local".into()),
            protocol: None,
        };
        tls.write_all(&header.encode()).await?;
        send(&mut tls, &chunk, total).await?;
        let via = total as f64 / 1e6 / start.elapsed().as_secs_f64();
        println!("one opaque TCP stream, {mb} MiB:");
        println!("  straight to the backend (plain TCP): {direct:>8.0} MB/s");
        println!(
            "  through crossgate (mTLS in, TCP out): {via:>8.0} MB/s  ({:.2} of direct)",
            via / direct
        );
        anyhow::Ok(())
    })
}

async fn send<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    chunk: &[u8],
    total: u64,
) -> anyhow::Result<()> {
    let mut sent = 0u64;
    while sent < total {
        s.write_all(chunk).await?;
        sent += chunk.len() as u64;
    }
    s.shutdown().await?;
    let mut n = [0u8; 8];
    s.read_exact(&mut n).await?;
    anyhow::ensure!(
        u64::from_be_bytes(n) == sent,
        "sink counted {} of {sent}",
        u64::from_be_bytes(n)
    );
    Ok(())
}
