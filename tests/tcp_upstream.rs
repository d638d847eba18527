//! The upstream side of opaque TCP: a refusing endpoint, failover to the next endpoint, and
//! connections spread across the endpoints of a target.

mod support;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

const TARGET: &str = "tcpecho.test.svc.cluster.local:9899";

/// An address on which nothing listens: bound, then released.
fn refusing_endpoint() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn endpoints(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[routing.static]\n\"{TARGET}\" = [{}]\n", list.join(", "))
}

/// One opaque connection through the captured header: sends `msg`, half-closes, returns
/// what came back before the gateway closed (`None` if it stayed open 3 s).
async fn roundtrip(gw: &TestGateway, msg: &[u8]) -> Option<Vec<u8>> {
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let _ = tls.write_all(&vector("opaque.hex")).await;
    let _ = tls.write_all(msg).await;
    let _ = tls.shutdown().await;
    read_until_closed(&mut tls, Duration::from_secs(3)).await
}

#[tokio::test]
async fn refusing_backend_closes_the_client_and_counts_io() {
    let dead = refusing_endpoint();
    let gw = start(&endpoints(&[dead])).await;
    assert_eq!(roundtrip(&gw, b"anyone there?").await, Some(vec![]));
    gw.wait_metric(&tcp_error_line("i/o", 1)).await;
    let m = gw.metrics().await;
    assert!(
        !m.contains("direction=\"outbound\""),
        "an upstream leg was opened to a refusing endpoint:\n{m}"
    );
    gw.wait_metric(&format!(
        "tcp_close_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\",classification=\"failure\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn failover_to_the_next_endpoint() {
    let dead = refusing_endpoint();
    let (echo, accepted) = echo_backend().await;
    let gw = start(&endpoints(&[dead, echo])).await;
    // Whichever endpoint rotation starts at, every connection must reach the echo.
    for i in 0..4 {
        let msg = format!("attempt {i}");
        assert_eq!(
            roundtrip(&gw, msg.as_bytes()).await,
            Some(msg.into_bytes()),
            "connection {i}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    gw.wait_metric(&format!(
        "tcp_open_total{{direction=\"outbound\",peer=\"dst\",tls=\"no_identity\",no_tls_reason=\"not_provided_by_service_discovery\",authority=\"{TARGET}\",target_addr=\"{echo}\"}} 4"
    ))
    .await;
    let m = gw.metrics().await;
    assert!(
        !m.contains("inbound_tcp_errors_total{"),
        "a failed-over connection was counted as an error:\n{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn each_target_is_balanced_over_its_own_endpoints() {
    // Target A has two endpoints, target B one. Connections alternate A, B, A, B: each goes to
    // an endpoint of its own target, and A's are weighed among A's endpoints only (the
    // balancer keeps the lighter of two by round trip and streams open, so which of A's two
    // takes them depends on their measured connect times).
    let (a1, a1_accepted) = echo_backend().await;
    let (a2, a2_accepted) = echo_backend().await;
    let (b, b_accepted) = echo_backend().await;
    let gw = start(&format!(
        "[routing.static]\n\"{TARGET}\" = [\"{a1}\", \"{a2}\"]\n\"other.test.svc.cluster.local:9899\" = [\"{b}\"]\n"
    ))
    .await;
    let other = crossgate::transport_header::TransportHeader {
        port: 9899,
        name: Some("other.test.svc.cluster.local".into()),
        protocol: None,
    };
    for i in 0..4 {
        let msg = format!("a {i}");
        assert_eq!(roundtrip(&gw, msg.as_bytes()).await, Some(msg.into_bytes()));
        let mut tls = open(&gw, gw.client(FRONTEND, ALPN_TRANSPORT), &other)
            .await
            .unwrap();
        tls.write_all(b"b").await.unwrap();
        tls.shutdown().await.unwrap();
        assert_eq!(read_all(&mut tls).await, b"b");
    }
    assert_eq!(b_accepted.load(Ordering::SeqCst), 4);
    let on_a = a1_accepted.load(Ordering::SeqCst) + a2_accepted.load(Ordering::SeqCst);
    assert_eq!(on_a, 4);
    gw.shutdown().await;
}
