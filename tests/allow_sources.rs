//! `[server] allow_sources`: a peer outside every listed network is closed at accept, before
//! any TLS byte, and counted as `inbound_tcp_errors_total{error="unauthorized source"}`; a
//! peer inside one is served as usual.

mod support;
use crossgate::transport_header::TransportHeader;
use std::sync::atomic::Ordering;
use support::*;
use tokio::io::AsyncWriteExt;

const TCPECHO: &str = "tcpecho.test.svc.cluster.local:9899";

fn header() -> TransportHeader {
    TransportHeader {
        port: 9899,
        name: Some("tcpecho.test.svc.cluster.local".into()),
        protocol: None,
    }
}

fn tables(backend: std::net::SocketAddr) -> String {
    format!(
        "{}[[authorization]]\nidentities = [\"{FRONTEND}\"]\nservices = [\"*.test.svc.cluster.local\"]\n",
        static_route(TCPECHO, backend)
    )
}

#[tokio::test]
async fn source_outside_the_allow_list_is_closed_before_tls() {
    let (backend, accepted) = echo_backend().await;
    let gw = start(&format!(
        "allow_sources = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n{}",
        tables(backend)
    ))
    .await;
    // A raw TCP client: the gateway closes without a single byte (no ServerHello, no alert).
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    assert_closed_without_bytes(&mut tcp).await;
    gw.wait_metric(&tcp_error_line("unauthorized source", 1))
        .await;
    // An mTLS client with a valid leaf fares no better, and nothing reaches the backend.
    let tls = open(&gw, gw.client(FRONTEND, ALPN_TRANSPORT), &header()).await;
    assert!(tls.is_err(), "handshake completed from a refused source");
    gw.wait_metric(&tcp_error_line("unauthorized source", 2))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("inbound_tls_handshake_failures_total{"),
        "a refused source reached the handshake:\n{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn source_inside_the_allow_list_is_served() {
    let (backend, accepted) = echo_backend().await;
    let gw = start(&format!(
        "allow_sources = [\"127.0.0.0/8\"]\n{}",
        tables(backend)
    ))
    .await;
    let mut tls = open(&gw, gw.client(FRONTEND, ALPN_TRANSPORT), &header())
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, b"ping");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(!gw.metrics().await.contains("unauthorized source"));
    gw.shutdown().await;
}
