//! HTTP/1.1 `CONNECT` in plain HTTP mode: tunnelled to a routed target, counted on the
//! outbound leg, and refused like any request for a target outside the cluster.

mod support;
use std::sync::atomic::Ordering;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TARGET: &str = "tcpecho.test.svc.cluster.local:9899";

async fn connect_head(
    gw: &TestGateway,
    authority: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, &[b"http/1.1"]), GATEWAY)
        .await
        .unwrap();
    tls.write_all(format!("CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read the response head only: byte by byte up to the blank line.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tls.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    (tls, String::from_utf8_lossy(&head).to_string())
}

#[tokio::test]
async fn connect_tunnels_to_a_routed_target() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&static_route(TARGET, echo)).await;
    let (mut tls, head) = connect_head(&gw, TARGET).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls.write_all(b"through the tunnel").await.unwrap();
    let mut back = [0u8; 18];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"through the tunnel");
    drop(tls);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.wait_metric(&format!(
        "tcp_write_bytes_total{{direction=\"outbound\",peer=\"dst\",tls=\"no_identity\",no_tls_reason=\"not_provided_by_service_discovery\",authority=\"{TARGET}\",target_addr=\"{echo}\"}} 18"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_outside_the_cluster_is_refused() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&static_route(TARGET, echo)).await;
    for authority in [format!("{echo}"), "example.com:443".to_string()] {
        let (_tls, head) = connect_head(&gw, &authority).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{authority}: {head}");
        assert!(
            head.contains("l5d-proxy-error: bad gateway domain"),
            "{head}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}
