//! Connection-level refusals after the handshake: the transport header names a target the
//! gateway must not reach, is malformed or incomplete, the client is not authorized or is the
//! gateway itself. Each closes the connection without a byte, reaches no backend, and is counted.

mod support;
use crossgate::transport_header::{PREFACE, TransportHeader};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

const TIMEOUTS: &str = "handshake_timeout = \"300ms\"\nheader_timeout = \"300ms\"\n";
const TCPECHO: &str = "tcpecho.test.svc.cluster.local";

fn header(name: Option<&str>, port: u16) -> TransportHeader {
    TransportHeader {
        port,
        name: name.map(str::to_string),
        protocol: None,
    }
}

/// Sends `bytes` after the handshake as FRONTEND and asserts the gateway closes without a byte.
async fn refused_after(gw: &TestGateway, bytes: &[u8]) {
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    assert_closed_without_bytes(&mut tls).await;
}

/// A gateway routing `tcpecho...:9899` statically to an echo backend; `extra` holds tables
/// placed after `[routing.static]`.
async fn gateway(extra: &str) -> (TestGateway, std::net::SocketAddr, Arc<AtomicUsize>) {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!(
        "{TIMEOUTS}{}{extra}",
        static_route(&format!("{TCPECHO}:9899"), echo)
    ))
    .await;
    (gw, echo, accepted)
}

#[tokio::test]
async fn captured_bad_domain_header_is_refused() {
    // The captured name, statically routed on another port: only the exact name:port is a key.
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!(
        "{TIMEOUTS}{}",
        static_route("podinfo.test.example.com:9899", echo)
    ))
    .await;
    let mut bytes = vector("bad-domain.hex");
    bytes.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&tcp_error_line("gateway domain invalid", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn ip_literal_name_is_refused() {
    let (gw, echo, accepted) = gateway("").await;
    let mut bytes = header(Some("127.0.0.1"), echo.port()).encode();
    bytes.extend_from_slice(b"hello");
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&tcp_error_line("gateway domain invalid", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn ipv6_literal_name_is_refused() {
    // Well-formed but never routable: refused by routing as a bad gateway domain.
    let (gw, echo, accepted) = gateway("").await;
    for (i, name) in ["::1", "[::1]"].into_iter().enumerate() {
        let mut bytes = header(Some(name), echo.port()).encode();
        bytes.extend_from_slice(b"hello");
        refused_after(&gw, &bytes).await;
        gw.wait_metric(&tcp_error_line("gateway domain invalid", i as u64 + 1))
            .await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn header_without_name_is_refused() {
    let (gw, _, accepted) = gateway("").await;
    let mut bytes = header(None, 9899).encode();
    bytes.extend_from_slice(b"hello");
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&tcp_error_line("transport header", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn header_longer_than_64_kib_is_refused() {
    let (gw, _, accepted) = gateway("").await;
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(&(64 * 1024 + 1u32).to_be_bytes());
    bytes.extend_from_slice(&[0u8; 1024]);
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&tcp_error_line("transport header", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn truncated_header_is_refused() {
    let (gw, _, accepted) = gateway("").await;
    let full = vector("opaque.hex");
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&full[..full.len() - 10]).await.unwrap();
    // close_notify and FIN in the middle of the header.
    tls.shutdown().await.unwrap();
    assert_closed_without_bytes(&mut tls).await;
    gw.wait_metric(&tcp_error_line("transport header", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn header_that_never_completes_times_out() {
    let (gw, _, accepted) = gateway("").await;
    let full = vector("opaque.hex");
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&full[..30]).await.unwrap();
    tls.flush().await.unwrap();
    let started = std::time::Instant::now();
    // The connection stays open on our side: only the gateway's header deadline can end it.
    assert_closed_without_bytes(&mut tls).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the header deadline: {:?}",
        started.elapsed()
    );
    gw.wait_metric(&tcp_error_line("transport header", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_alpn_is_refused_at_the_handshake() {
    let (gw, _, accepted) = gateway("").await;
    let config = gw.client(FRONTEND, &[b"foo/1"]);
    match crossgate::tls::connect(gw.addr, config, GATEWAY).await {
        Ok(mut tls) => {
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let _ = tls.write_all(&vector("opaque.hex")).await;
            assert_closed_without_bytes(&mut tls).await;
            panic!("handshake completed with ALPN {alpn:?}");
        }
        Err(e) => assert!(
            e.to_string().to_ascii_lowercase().contains("protocol"),
            "unexpected handshake error: {e}"
        ),
    }
    gw.wait_metric(&handshake_failure_line("protocol", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn authorization_rules_deny_and_allow() {
    const EAST: &str = "backend.east.serviceaccount.identity.linkerd.cluster.local";
    let rules = "[[authorization]]\n\
                 identities = [\"*.east.serviceaccount.identity.linkerd.cluster.local\"]\n\
                 services = [\"*.test.svc.cluster.local\"]\n\
                 [[authorization]]\n\
                 identities = [\"*.west.serviceaccount.identity.linkerd.cluster.local\"]\n\
                 services = [\"*.other.svc.cluster.local\"]\n";
    let (gw, _, accepted) = gateway(rules).await;
    // west/frontend may reach *.other only.
    let mut bytes = vector("opaque.hex");
    bytes.extend_from_slice(b"denied");
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&format!(
        "inbound_tcp_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"{TCPECHO}:9899\"}} 1"
    ))
    .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    let m = gw.metrics().await;
    assert!(
        !m.contains("inbound_tcp_errors_total{"),
        "a denial is counted in the authz family only:\n{m}"
    );
    // east/backend is allowed to the same target.
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(EAST, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&vector("opaque.hex")).await.unwrap();
    tls.write_all(b"allowed").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(
        read_until_closed(&mut tls, Duration::from_secs(3)).await,
        Some(b"allowed".to_vec())
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.wait_metric(&format!(
        "inbound_tcp_authz_allow_total{{client_id=\"{EAST}\",authority=\"{TCPECHO}:9899\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn client_with_the_gateways_identity_is_a_loop() {
    let (gw, _, accepted) = gateway("").await;
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(GATEWAY, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let _ = tls.write_all(&vector("opaque.hex")).await;
    let _ = tls.write_all(b"loop").await;
    assert_closed_without_bytes(&mut tls).await;
    gw.wait_metric(&tcp_error_line("gateway loop", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn static_name_on_another_port_resolves_by_dns() {
    // A DNS server that knows no name: the other port must not fall back to the static endpoint.
    let dns = DnsServer::start(&[]).await;
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!(
        "{TIMEOUTS}[routing]\ndns_servers = [\"{}\"]\n{}",
        dns.addr,
        static_route(&format!("{TCPECHO}:9899"), echo)
    ))
    .await;
    let mut bytes = TransportHeader {
        port: 9900,
        name: Some(TCPECHO.into()),
        protocol: None,
    }
    .encode();
    bytes.extend_from_slice(b"hello");
    refused_after(&gw, &bytes).await;
    gw.wait_metric(&tcp_error_line("no such service", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert!(
        dns.asked(&format!("{TCPECHO}."), DNS_A) >= 1,
        "the name was not looked up: {:?}",
        dns.questions()
    );
    gw.shutdown().await;
}
