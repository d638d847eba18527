//! The connection caps do something, and what the README says they do. On the gateway port,
//! with `max_connections = 3` and three connections open, a fourth waits in the backlog: its
//! handshake does not complete and `tcp_open_total` stays at 3, until one of the three closes.
//! On the admin port, with `admin_max_connections = 3` and three keep-alive connections open,
//! a fourth is on probation: answered once, then closed, while each of the three answers
//! again; once one of them closes, a new connection is served as usual. Both tests fail if
//! the cap is ignored.

mod http_support;
mod support;

use crossgate::transport_header::TransportHeader;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a capped connection is watched not to be served: far above what a handshake or an
/// admin answer takes on 127.0.0.1 (milliseconds), short enough for the suite.
const NOT_SERVED: Duration = Duration::from_millis(500);

/// The inbound leg's series for `FRONTEND`.
fn inbound_open_total() -> String {
    format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\"}}"
    )
}

#[tokio::test]
async fn past_max_connections_a_client_waits_until_one_closes() {
    let (echo, accepted) = echo_backend().await;
    let name = "echo.test.svc.cluster.local";
    let gw = start(&format!(
        "max_connections = 3\n{}",
        static_route(&format!("{name}:{}", echo.port()), echo)
    ))
    .await;
    let header = TransportHeader {
        port: echo.port(),
        name: Some(name.into()),
        protocol: None,
    };
    let client = gw.client(FRONTEND, ALPN_TRANSPORT);
    // Three opaque streams, each proven open by an echo.
    let mut held = Vec::new();
    for i in 0..3 {
        let mut tls = open(&gw, client.clone(), &header).await.unwrap();
        let msg = format!("held {i}");
        tls.write_all(msg.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; msg.len()];
        tls.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, msg.as_bytes());
        held.push(tls);
    }
    gw.wait_metric(&format!("{} 3", inbound_open_total())).await;

    // The fourth: TCP connects (the kernel's backlog), the handshake does not complete.
    let (addr, fourth_client) = (gw.addr, client.clone());
    let mut fourth =
        tokio::spawn(async move { crossgate::tls::connect(addr, fourth_client, GATEWAY).await });
    let early = tokio::time::timeout(NOT_SERVED, &mut fourth).await;
    assert!(
        early.is_err(),
        "the fourth connection was served past max_connections = 3"
    );
    assert_eq!(gw.metric_value(&inbound_open_total()).await, Some(3.0));

    // One of the three closes: the fourth is accepted and served.
    let mut first = held.remove(0);
    first.shutdown().await.unwrap();
    assert!(
        read_until_closed(&mut first, Duration::from_secs(5))
            .await
            .is_some()
    );
    let mut tls = tokio::time::timeout(Duration::from_secs(5), fourth)
        .await
        .expect("the fourth handshake completes once a slot is free")
        .unwrap()
        .expect("handshake");
    tls.write_all(&header.encode()).await.unwrap();
    tls.write_all(b"fourth").await.unwrap();
    let mut echoed = [0u8; 6];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"fourth");
    gw.wait_metric(&format!("{} 4", inbound_open_total())).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    drop((held, tls));
    gw.shutdown().await;
}

/// Sends `GET /live` on `tcp` and reads its answer (content-length framed): the status.
async fn live(tcp: &mut TcpStream) -> u16 {
    tcp.write_all(b"GET /live HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let head = http_support::read_head(tcp).await;
    let body = http_support::read_body(tcp, &head).await;
    assert_eq!(body, b"live\n");
    head.status
}

/// Whether the admin port closes `tcp` (EOF or error) within `bound`, nothing more read.
async fn closed_within(tcp: &mut TcpStream, bound: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(bound, tcp.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn past_admin_max_connections_a_client_is_answered_once_then_closed() {
    let gw = start("admin_max_connections = 3\nadmin_idle_timeout = \"30s\"\n").await;
    // Three keep-alive connections, each answered once: they hold the three slots.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(served_as_usual(gw.admin).await);
    }
    // The fourth is on probation: one answer, and no second one.
    let mut fourth = TcpStream::connect(gw.admin).await.unwrap();
    assert_eq!(live(&mut fourth).await, 200);
    fourth
        .write_all(b"GET /live HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // The three are served as usual: each answers again. (Right away: an admin connection
    // must send its next head within 2 s of its last answer.)
    for tcp in held.iter_mut() {
        assert_eq!(live(tcp).await, 200);
    }
    let mut after_one = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), fourth.read_to_end(&mut after_one))
        .await
        .is_ok();
    assert!(
        closed && after_one.is_empty(),
        "the fourth admin connection, past admin_max_connections = 3, was served as usual: \
         closed {closed}, then read {:?}",
        String::from_utf8_lossy(&after_one)
    );
    // One of the three closes: its slot is free again, and a new connection keeps alive.
    drop(held.remove(0));
    let mut tcp = served_as_usual(gw.admin).await;
    assert_eq!(live(&mut tcp).await, 200);
    gw.shutdown().await;
}

/// A new admin connection that is served as usual (kept alive after its answer). A slot is
/// returned when the port has seen its connection close, a moment after the client closed:
/// until then a new connection is on probation, closed after one answer, and another is
/// tried (5 s at most).
async fn served_as_usual(admin: std::net::SocketAddr) -> TcpStream {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut tcp = TcpStream::connect(admin).await.unwrap();
        assert_eq!(live(&mut tcp).await, 200);
        // A connection on probation is closed at once after its answer.
        if !closed_within(&mut tcp, Duration::from_millis(200)).await {
            return tcp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no admin connection was served as usual within 5 s"
        );
    }
}
