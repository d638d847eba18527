//! `crossgate demo`: a throwaway PKI, backends, the gateway and clients, all on loopback, every
//! way crossgate serves, then a prober watching the gateway die, with what happened printed.
//! Exits 0 only when every step behaved. [`backends`] holds the demo's backends, [`probe`]
//! the prober step, [`meshed`] the meshed pod, [`sni`] the targets named by SNI.

mod admin;
mod backends;
mod meshed;
mod probe;
mod sni;

use crate::certs::{GATEWAY_IDENTITY, Pki};
use crate::config::{Config, Overrides};
use crate::transport_header::{SessionProtocol, TransportHeader};
use anyhow::{Context, bail, ensure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";
/// The meshed pod: not in `[routing.static]`, learnt from the destination controller.
const POD: &str = "pod.demo.svc.cluster.local";
const POD_IDENTITY: &str = "pod.demo.serviceaccount.identity.linkerd.cluster.local";

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

    let echo = backends::spawn_echo().await?;
    let web = backends::spawn_http_backend().await?;
    println!("backends: TCP echo on {echo}, HTTP/1.1+HTTP/2 on {web}");
    let (secure, secure_anchor) = sni::spawn_secure_backend().await?;
    println!("TLS workload {} on {secure} (its own PKI)", sni::SECURE);
    let pod = meshed::spawn_pod(&pki, POD_IDENTITY, dir.path()).await?;
    let controller = meshed::spawn_destination(&format!("{POD}:8443"), pod, POD_IDENTITY).await?;
    println!(
        "meshed pod {POD_IDENTITY} on {pod} (mTLS only), its destination controller on {controller}"
    );

    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n\
         [routing]\ncluster_domain = \"cluster.local\"\n[routing.static]\n\
         \"echo.demo.svc.cluster.local:7000\" = [\"{echo}\"]\n\
         \"web.demo.svc.cluster.local:8080\" = [\"{web}\"]\n\
         \"{secure_name}:7000\" = [\"{secure}\"]\n\
         [discovery]\ndestination_addr = \"{controller}\"\n\
         [[authorization]]\nidentities = [\"*.west.serviceaccount.identity.linkerd.cluster.local\"]\n\
         services = [\"*.demo.svc.cluster.local\"]\n{sni_tables}",
        secure_name = sni::SECURE,
        sni_tables = sni::tables(&pki, dir.path())?,
    );
    let config = Config::parse(&toml, "demo.toml", dir.path(), &Overrides::default())?;
    let gw = crate::Gateway::build(&config).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let listeners = crate::Listeners::bind_all(&config).await?;
    let (gw_addr, admin_addr) = listeners.addrs()?;
    let passthrough_addr = listeners
        .port_addr(crate::Port::Passthrough)?
        .context("no passthrough port")?;
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

    let all_alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let web_header = |protocol| TransportHeader {
        port: 8080,
        name: Some("web.demo.svc.cluster.local".into()),
        protocol: Some(protocol),
    };
    let h2_client = |alpn: &'static [&'static [u8]]| {
        crate::tls::client_config_from_pem(
            &pki.anchor_pem(),
            &client_leaf.cert_pem,
            &client_leaf.key_pem,
            alpn,
        )
    };
    let uri = "http://web.demo.svc.cluster.local:8080/hello";

    println!("\n4. HTTP/2 through the transport header (session protocol Http2)");
    let (status, _, body) = http_via(
        gw_addr,
        client.clone(),
        Some(web_header(SessionProtocol::Http2)),
        true,
        uri,
        None,
    )
    .await?;
    println!("   {status}: {body}");
    ensure!(
        status == 200 && body.contains("HTTP/2"),
        "HTTP/2 through the header failed"
    );

    println!(
        "\n5. HTTP/1.1 upgraded by a source proxy (HTTP/2 + l5d-orig-proto), sent upstream as HTTP/1.1"
    );
    let (status, headers, body) = http_via(
        gw_addr,
        client.clone(),
        Some(web_header(SessionProtocol::Http2)),
        true,
        uri,
        Some("HTTP/1.1"),
    )
    .await?;
    println!(
        "   {status} (l5d-orig-proto: {}): {body}",
        headers
            .get("l5d-orig-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    );
    ensure!(
        status == 200 && body.contains("HTTP/1.1"),
        "orig-proto downgrade failed"
    );

    println!(
        "\n6. HTTP/1.1 through the transport header (session protocol Http1, no Host, as Linkerd sends)"
    );
    let (status, _, body) = http_via(
        gw_addr,
        client.clone(),
        Some(web_header(SessionProtocol::Http1)),
        false,
        "/hello",
        None,
    )
    .await?;
    println!("   {status}: {body}");
    ensure!(status == 200, "HTTP/1.1 through the header failed");

    println!(
        "\n7. plain HTTP mode (ALPN h2 / http/1.1, target from the authority), as curl or Envoy would"
    );
    let plain = h2_client(all_alpn)?;
    let (status, _, body) = http_via(gw_addr, plain.clone(), None, true, uri, None).await?;
    println!("   h2:       {status}: {body}");
    ensure!(status == 200, "plain h2 failed");
    let plain1 = h2_client(&[b"http/1.1"])?;
    let (status, _, body) = http_via(gw_addr, plain1.clone(), None, false, uri, None).await?;
    println!("   http/1.1: {status}: {body}");
    ensure!(status == 200, "plain http/1.1 failed");
    let (status, headers, _) = http_via(
        gw_addr,
        plain,
        None,
        true,
        "http://kubernetes.default.svc.cluster.local/api",
        None,
    )
    .await?;
    println!(
        "   a target the rules do not allow -> {status}, l5d-proxy-error: {}",
        headers
            .get("l5d-proxy-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    );
    ensure!(status == 403, "unauthorized target was not refused");

    println!(
        "\n8. a meshed pod from the Destination API, dialled over mTLS as the gateway (HTTP/2, and HTTP/1.1 riding it with l5d-orig-proto)"
    );
    meshed::step(gw_addr, client.clone()).await?;

    println!(
        "\n9. targets named by SNI: terminated on the mTLS port, spliced on the passthrough port"
    );
    let no_alpn = crate::tls::client_config_from_pem(
        &pki.anchor_pem(),
        &client_leaf.cert_pem,
        &client_leaf.key_pem,
        &[],
    )?;
    sni::step(gw_addr, passthrough_addr, no_alpn, &secure_anchor).await?;

    println!("\n10. the admin port");
    admin::step(admin_addr).await?;

    println!("\n11. a prober (the source side) probing the gateway's /ready over mTLS");
    let client_files = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&client_files.0, &client_leaf.cert_pem)?;
    std::fs::write(&client_files.1, &client_leaf.key_pem)?;
    let stop = async move {
        let _ = stop_tx.send(());
        running.await.context("gateway task")
    };
    probe::probe_then_stop(dir.path(), admin_addr, stop).await?;
    println!("\ndemo complete: every step behaved");
    Ok(())
}

/// One HTTP request through the gateway, over a fresh mTLS connection: with `header`, the
/// transport header first; `h2` picks HTTP/2 (else HTTP/1.1); `orig_proto` marks an
/// upgraded HTTP/1 request as a source proxy does.
async fn http_via(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    header: Option<TransportHeader>,
    h2: bool,
    uri: &str,
    orig_proto: Option<&str>,
) -> anyhow::Result<(u16, http::HeaderMap, String)> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut tls = crate::tls::connect(addr, config, GATEWAY_IDENTITY).await?;
    if let Some(h) = header {
        tls.write_all(&h.encode()).await?;
    }
    let mut req = http::Request::get(uri).body(Empty::<bytes::Bytes>::new())?;
    if let Some(p) = orig_proto {
        req.headers_mut()
            .insert("l5d-orig-proto", http::HeaderValue::from_str(p)?);
    }
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        send.send_request(req).await?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        if !uri.starts_with('/') {
            let host = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default();
            *req.uri_mut() = req.uri().path().parse()?;
            req.headers_mut()
                .insert(http::header::HOST, http::HeaderValue::from_str(&host)?);
        }
        send.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).trim().to_string(),
    ))
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

pub(super) async fn admin_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
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
        if let Ok(r) = admin_get(admin, "/ready").await
            && r.starts_with("HTTP/1.1 200")
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    bail!("gateway not ready in 2s")
}
