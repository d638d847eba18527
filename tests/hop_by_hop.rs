//! Hop-by-hop headers (RFC 9110 7.6.1) end to end: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE` other than `trailers`, `Transfer-Encoding`,
//! `Upgrade`, `Trailer`, `Proxy-Authorization` never cross the gateway, on requests (asserted
//! on the wire at a raw backend) and on responses (asserted at an HTTP/1 client on the wire and
//! at an HTTP/2 client), in plain mode and behind a transport header. End-to-end headers beside
//! them arrive untouched. `Transfer-Encoding: chunked` may appear only as the gateway's own
//! framing of a streamed body, never as a value the peer sent.

mod http_support;
mod support;
mod wire_support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::{ALPN_H1, get, send_h2};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, TestGateway};
use tokio::io::AsyncWriteExt;
use wire_support::{OK_RESPONSE, WireBackend, exchange, responses};

const TARGET: &str = "hop.test.svc.cluster.local";

/// The headers no peer may see from the other side (`x-named` is named by `Connection`).
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "x-named",
    "upgrade",
    "trailer",
    "proxy-authorization",
];

/// A request carrying every hop-by-hop header, with a chunked body.
const REQUEST: &str = "POST /hop HTTP/1.1\r\nhost: H\r\n\
    connection: keep-alive, x-named\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n\
    x-named: secret\r\nte: trailers, deflate\r\ntrailer: x-checksum\r\n\
    proxy-authorization: Basic c2VjcmV0\r\nupgrade: h2c\r\nx-end-to-end: kept\r\n\
    transfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

/// A response carrying every hop-by-hop header, with a chunked body.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
    connection: keep-alive, x-named\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n\
    x-named: secret\r\ntrailer: x-checksum\r\nupgrade: h2c\r\nx-end-to-end: kept\r\n\
    transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

async fn gateway(backend: &WireBackend) -> TestGateway {
    support::start(&format!(
        "[routing.static]\n\"{TARGET}:8080\" = [\"{}\"]\n",
        backend.addr
    ))
    .await
}

/// A TLS connection to `gw`: plain mode (ALPN http/1.1), or a transport header with the Http1
/// session protocol naming the target.
async fn http1(
    gw: &TestGateway,
    header: bool,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    if !header {
        return crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_H1), GATEWAY)
            .await
            .unwrap();
    }
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let h = TransportHeader {
        port: 8080,
        name: Some(TARGET.into()),
        protocol: Some(SessionProtocol::Http1),
    };
    tls.write_all(&h.encode()).await.unwrap();
    tls
}

#[tokio::test]
async fn request_hop_by_hop_headers_stop_at_the_gateway() {
    for header in [false, true] {
        let backend = WireBackend::start(OK_RESPONSE).await;
        let gw = gateway(&backend).await;
        let mut tls = http1(&gw, header).await;
        // The request, then `connection: close` on a second one so that the gateway closes.
        let request = format!(
            "{}GET /last HTTP/1.1\r\nhost: H\r\nconnection: close\r\n\r\n",
            REQUEST
        )
        .replace("host: H", &format!("host: {TARGET}:8080"));
        let raw = exchange(&mut tls, request.as_bytes()).await;
        let statuses: Vec<u16> = responses(&raw).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200], "{}", String::from_utf8_lossy(&raw));
        let seen = backend.assert_exactly("hop-by-hop request", &["/hop", "/last"]);
        let hop = &seen[0];
        for name in HOP {
            assert!(
                !hop.has(name),
                "header mode {header}: {name} reached the backend: {hop:#?}"
            );
        }
        assert_eq!(hop.all("te"), ["trailers"], "{hop:#?}");
        assert_eq!(hop.all("x-end-to-end"), ["kept"], "{hop:#?}");
        // The body streams: the gateway frames it itself, never with the client's codings.
        assert!(
            hop.all("transfer-encoding").iter().all(|v| *v == "chunked"),
            "{hop:#?}"
        );
        assert_eq!(hop.body, b"hello");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn response_hop_by_hop_headers_stop_at_the_gateway() {
    let backend = WireBackend::start(RESPONSE).await;
    let gw = gateway(&backend).await;
    // HTTP/1 clients, read on the wire.
    for header in [false, true] {
        let mut tls = http1(&gw, header).await;
        let request =
            format!("GET /r HTTP/1.1\r\nhost: {TARGET}:8080\r\nconnection: close\r\n\r\n");
        let raw = exchange(&mut tls, request.as_bytes()).await;
        let got = responses(&raw);
        assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&raw));
        let r = &got[0];
        assert_eq!(r.status, 200);
        for name in HOP {
            // The gateway's own `connection: close`, answering the client's, is its own.
            let own_close = *name == "connection" && r.header(name) == Some("close");
            assert!(
                own_close || !r.has(name),
                "header mode {header}: {name} reached the client: {r:#?}"
            );
        }
        assert_eq!(r.header("x-end-to-end"), Some("kept"));
        assert!(
            r.header("transfer-encoding").is_none_or(|v| v == "chunked"),
            "{r:#?}"
        );
        assert_eq!(r.body, b"hello");
    }
    // An HTTP/2 client after the H2 hint, its request upgraded from HTTP/1 as Linkerd sends it:
    // the gateway speaks HTTP/1 to the backend and HTTP/2 back.
    let header = TransportHeader {
        port: 8080,
        name: Some(TARGET.into()),
        protocol: Some(SessionProtocol::Http2),
    };
    let tls = http_support::connect_tls(
        gw.addr,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&header.encode()),
    )
    .await;
    let mut h2 = http_support::h2_client(tls).await;
    let a = send_h2(
        &mut h2,
        get(
            &format!("http://{TARGET}:8080/r"),
            &[("l5d-orig-proto", "HTTP/1.1")],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    for name in HOP.iter().chain(&["transfer-encoding"]) {
        assert!(
            a.header(name).is_none(),
            "{name} reached the HTTP/2 client: {a:?}"
        );
    }
    assert_eq!(a.header("x-end-to-end"), Some("kept"));
    assert_eq!(&a.body[..], b"hello");
    assert_eq!(backend.requests().len(), 3);
    gw.shutdown().await;
}

/// A WebSocket handshake keeps what makes it one (`Connection: upgrade`, `Upgrade`) both
/// ways, and nothing else `Connection` names.
#[tokio::test]
async fn an_upgrade_keeps_only_connection_upgrade_and_upgrade() {
    const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        connection: upgrade, x-named\r\nupgrade: websocket\r\nx-named: secret\r\n\
        keep-alive: timeout=5\r\n\r\n";
    let backend = WireBackend::start(SWITCH).await;
    let gw = gateway(&backend).await;
    let mut tls = http1(&gw, false).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: {TARGET}:8080\r\nconnection: Upgrade, x-named\r\n\
         upgrade: websocket\r\nx-named: secret\r\nkeep-alive: timeout=5\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let head = http_support::read_head(&mut tls).await;
    assert_eq!(head.status, 101, "{}", head.head);
    assert_eq!(
        head.header("connection").as_deref(),
        Some("upgrade"),
        "{}",
        head.head
    );
    assert_eq!(
        head.header("upgrade").as_deref(),
        Some("websocket"),
        "{}",
        head.head
    );
    for name in ["x-named", "keep-alive"] {
        assert!(
            head.header(name).is_none(),
            "{name} reached the client: {}",
            head.head
        );
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    let ws = &seen[0];
    assert_eq!(ws.all("connection"), ["upgrade"], "{ws:#?}");
    assert_eq!(ws.all("upgrade"), ["websocket"], "{ws:#?}");
    assert!(!ws.has("x-named") && !ws.has("keep-alive"), "{ws:#?}");
    assert!(ws.has("sec-websocket-key"), "{ws:#?}");
    drop(tls);
    gw.shutdown().await;
}
