//! Idle connections: the gateway waits for a client's first bytes before it gives the
//! connection any protocol buffers, and still serves data that arrived with the client's
//! handshake (already inside rustls, so the socket never turns readable again).

mod http_support;
mod support;
use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::{Backend, BinaryGateway, static_routes};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY};
use tokio::io::AsyncWriteExt;

/// A blocking rustls client that queues `data` before the handshake ends, so that its last
/// handshake flight and `data` leave in one write. Returns what the gateway answers.
fn coalesced(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    data: Vec<u8>,
) -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from(GATEWAY).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.writer().write_all(&data).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    // Finished and the early-queued data went out together; now read the answer.
    let mut out = Vec::new();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.ends_with(b"\r\n\r\nok") || out.ends_with(b"ping") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    out
}

#[tokio::test]
async fn a_transport_header_sent_with_the_finished_is_served() {
    let (echo, _) = support::echo_backend().await;
    let gw = support::start(&support::static_route(
        "echo.east.svc.cluster.local:7000",
        echo,
    ))
    .await;
    let header = TransportHeader {
        port: 7000,
        name: Some("echo.east.svc.cluster.local".into()),
        protocol: None,
    };
    let mut data = header.encode();
    data.extend_from_slice(b"ping");
    let (addr, config) = (gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT));
    let out = tokio::task::spawn_blocking(move || coalesced(addr, config, data))
        .await
        .unwrap();
    assert_eq!(out, b"ping", "echo through the gateway");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_http_request_sent_with_the_finished_is_served() {
    let backend = Backend::start().await;
    let target = "web.east.svc.cluster.local";
    let gw = support::start(&static_routes(&[(&format!("{target}:80"), backend.addr)])).await;
    for (alpn, header) in [
        (&[b"http/1.1".as_slice()][..], None),
        (ALPN_TRANSPORT, Some(SessionProtocol::Http1)),
    ] {
        let mut data = match header {
            Some(protocol) => TransportHeader {
                port: 80,
                name: Some(target.into()),
                protocol: Some(protocol),
            }
            .encode(),
            None => Vec::new(),
        };
        data.extend_from_slice(
            format!("GET / HTTP/1.1\r\nhost: {target}:80\r\nconnection: close\r\n\r\n").as_bytes(),
        );
        let (addr, config) = (gw.addr, gw.client(FRONTEND, alpn));
        let out = tokio::task::spawn_blocking(move || coalesced(addr, config, data))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "header {header:?}: {text}"
        );
    }
    gw.shutdown().await;
}

/// The real binary on one thread, holding `n` idle connections of the given ALPN (and
/// transport header, if any). Returns the RSS growth per connection in KiB, having checked
/// that the gateway still holds every connection.
async fn idle_kib_per_connection(
    alpn: &[&[u8]],
    header: Option<&TransportHeader>,
    n: usize,
) -> f64 {
    let gw = BinaryGateway::start("threads = 1", "").await;
    let client = gw.client(FRONTEND, alpn);
    // Warm up the allocator with a few connections, then measure from there.
    let mut held = Vec::new();
    let open = async |held: &mut Vec<_>| {
        let mut tls = crossgate::tls::connect(gw.listen, client.clone(), GATEWAY)
            .await
            .unwrap();
        if let Some(h) = header {
            tls.write_all(&h.encode()).await.unwrap();
        }
        held.push(tls);
    };
    for _ in 0..20 {
        open(&mut held).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = gw.rss_kib() as i64;
    for _ in 0..n {
        open(&mut held).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = gw.rss_kib() as i64;
    // Every connection is still open on the gateway's side: none was closed to save memory.
    let metrics = support::http_get(gw.admin, "/metrics").await;
    let closed: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("tcp_close_total{direction=\"inbound\"") && !l.ends_with(" 0"))
        .collect();
    assert!(
        closed.is_empty(),
        "the gateway closed idle connections: {closed:?}"
    );
    drop(held);
    (after - before) as f64 / n as f64
}

// Before the gateway waited for first bytes and boxed the 1.2 KB TLS stream (which every
// future on the way reserved room for), these cost 18.7, 14.0 and 21.6 KiB; then about 13.1,
// 12.5 and 13.2 KiB; since the connection waits for first bytes before any protocol's future
// exists (and the handshake's result is boxed inside its own future), about 10.6, 10.7 and
// 11.9 KiB, of which rustls's own read buffer is 4 KiB. Each bound sits just above.
// One test, one gateway at a time: at most 420 connections are open at once.
#[tokio::test]
async fn idle_connections_cost_little_memory() {
    let kib = idle_kib_per_connection(&[b"http/1.1"], None, 400).await;
    println!("idle HTTPS connection: {kib:.1} KiB");
    assert!(kib < 11.8, "{kib:.1} KiB per idle HTTPS connection");

    let kib = idle_kib_per_connection(ALPN_TRANSPORT, None, 400).await;
    println!("connection awaiting its transport header: {kib:.1} KiB");
    assert!(kib < 11.8, "{kib:.1} KiB per connection awaiting a header");

    let header = TransportHeader {
        port: 80,
        name: Some("web.east.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http2),
    };
    let kib = idle_kib_per_connection(ALPN_TRANSPORT, Some(&header), 400).await;
    println!("HTTP/2 session behind a header, no request yet: {kib:.1} KiB");
    assert!(kib < 13.2, "{kib:.1} KiB per idle HTTP session");
}
