//! Opaque TCP through the transport header: the captured Linkerd bytes, echo, half-close,
//! a refusing backend.

mod support;
use std::sync::atomic::Ordering;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn captured_opaque_header_reaches_echo_backend() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&static_route("tcpecho.test.svc.cluster.local:9899", echo)).await;
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    // Exactly what linkerd2-proxy sent, then 4096 bytes of application data.
    tls.write_all(&vector("opaque.hex")).await.unwrap();
    let payload: Vec<u8> = b"0123456789abcdefghijklmnopqrstuvwxyz"
        .iter()
        .cycle()
        .take(4096)
        .copied()
        .collect();
    tls.write_all(&payload).await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, payload);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let m = gw.metrics().await;
    let client = format!("client_id=\"{FRONTEND}\"");
    assert!(m.contains(&format!(
        "inbound_tcp_transport_header_connections_total{{target_port=\"9899\",target_name=\"tcpecho.test.svc.cluster.local\",{client}}} 1"
    )), "{m}");
    gw.wait_metric(&format!(
        "tcp_read_bytes_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",{client},route=\"header\"}} {}",
        vector("opaque.hex").len() + 4096
    ))
    .await;
    gw.wait_metric(&format!(
        "tcp_write_bytes_total{{direction=\"outbound\",peer=\"dst\",tls=\"no_identity\",no_tls_reason=\"not_provided_by_service_discovery\",authority=\"tcpecho.test.svc.cluster.local:9899\",target_addr=\"{echo}\"}} 4096"
    ))
    .await;
    gw.wait_metric(&format!(
        "tcp_close_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",{client},route=\"header\",classification=\"success\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn half_close_keeps_the_other_direction_open() {
    // A backend that reads to EOF, then answers: the answer must still reach the client.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
    });
    let gw = start(&static_route("sink.test.svc.cluster.local:80", backend)).await;
    let header = crossgate::transport_header::TransportHeader {
        port: 80,
        name: Some("sink.test.svc.cluster.local".into()),
        protocol: None,
    };
    let mut tls = open(&gw, gw.client(FRONTEND, ALPN_TRANSPORT), &header)
        .await
        .unwrap();
    tls.write_all(&[7u8; 100_000]).await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, b"got 100000 bytes");
    gw.shutdown().await;
}
