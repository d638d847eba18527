//! HTTP/1 request smuggling shapes sent through the gateway, in plain HTTP mode (ALPN
//! http/1.1, target from `Host`) and behind a transport header (session protocol Http1, as a
//! Linkerd source proxy without the H2 hint sends): CL+TE both ways, duplicate
//! `Content-Length`, obfuscated `Transfer-Encoding`, a request hidden in a body, pipelined
//! requests. Each is either refused (400, nothing upstream) or forwarded as exactly the
//! requests the gateway parsed, each framed unambiguously, with not one byte besides them:
//! the backend is a raw recorder with a strict parser (`tests/wire_support`), and the test
//! counts its requests and bytes.

mod http_support;
mod support;
mod wire_support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::ALPN_H1;
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, TestGateway};
use tokio::io::AsyncWriteExt;
use wire_support::{OK_RESPONSE, WireBackend, exchange, responses};

/// What the gateway must do with a shape.
enum Outcome {
    /// 400, the connection closed, nothing sent upstream.
    Refused,
    /// Exactly these requests (path, body) reach the backend, each answered 200.
    Forwarded(&'static [(&'static str, &'static str)]),
}
use Outcome::*;

/// `host: H` stands for the target's `host:port` (bodies say `host: x`: they are data).
const SHAPES: &[(&str, &str, Outcome)] = &[
    (
        "CL.TE: content-length covers a request after the last chunk",
        "POST /a HTTP/1.1\r\nhost: H\r\ncontent-length: 40\r\ntransfer-encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Forwarded(&[("/a", "")]),
    ),
    (
        "TE.CL: transfer-encoding first, a short content-length after",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n\
         8\r\nSMUGGLED\r\n0\r\n\r\n",
        Forwarded(&[("/a", "SMUGGLED")]),
    ),
    (
        "two content-lengths that differ",
        "POST /a HTTP/1.1\r\nhost: H\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        Refused,
    ),
    (
        "two equal content-lengths",
        "POST /a HTTP/1.1\r\nhost: H\r\ncontent-length: 5\r\ncontent-length: 5\r\n\
         connection: close\r\n\r\nhello",
        Forwarded(&[("/a", "hello")]),
    ),
    (
        "one content-length line listing two values",
        "POST /a HTTP/1.1\r\nhost: H\r\ncontent-length: 5, 5\r\nconnection: close\r\n\r\nhello",
        Refused,
    ),
    (
        "transfer-encoding: chunked, identity (chunked not last)",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding: chunked, identity\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Refused,
    ),
    (
        "transfer-encoding with a space before the colon",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding : chunked\r\ncontent-length: 5\r\n\r\n\
         0\r\n\r\n",
        Refused,
    ),
    (
        "transfer-encoding: xchunked",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        Refused,
    ),
    (
        "transfer-encoding on two lines, identity last",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n\
         0\r\n\r\n",
        Refused,
    ),
    (
        "transfer-encoding folded onto a continuation line",
        "POST /a HTTP/1.1\r\nhost: H\r\ntransfer-encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n",
        Refused,
    ),
    (
        "transfer-encoding in HTTP/1.0",
        "POST /a HTTP/1.0\r\nhost: H\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        Refused,
    ),
    (
        "a request inside a body framed by content-length",
        "POST /a HTTP/1.1\r\nhost: H\r\ncontent-length: 35\r\nconnection: close\r\n\r\n\
         GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Forwarded(&[("/a", "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n")]),
    ),
    (
        "three pipelined requests in one write, one with a body",
        "GET /one HTTP/1.1\r\nhost: H\r\n\r\n\
         POST /two HTTP/1.1\r\nhost: H\r\ncontent-length: 5\r\n\r\nhello\
         GET /three HTTP/1.1\r\nhost: H\r\nconnection: close\r\n\r\n",
        Forwarded(&[("/one", ""), ("/two", "hello"), ("/three", "")]),
    ),
];

/// The target of shape `i`.
fn target(i: usize) -> String {
    format!("shape{i}.test.svc.cluster.local:8080")
}

/// A gateway routing each shape's target to its own recording backend.
async fn gateway() -> (TestGateway, Vec<WireBackend>) {
    let mut backends = Vec::new();
    let mut routes = String::from("[routing.static]\n");
    for i in 0..SHAPES.len() {
        let b = WireBackend::start(OK_RESPONSE).await;
        routes.push_str(&format!("\"{}\" = [\"{}\"]\n", target(i), b.addr));
        backends.push(b);
    }
    (support::start(&routes).await, backends)
}

/// Sends every shape on its own connection (`header`: behind a transport header naming the
/// shape's target, else plain mode) and checks what the client and the backend saw.
async fn every_shape(gw: &TestGateway, backends: &[WireBackend], header: bool) {
    let refused = SHAPES.iter().filter(|s| matches!(s.2, Refused)).count();
    for (i, ((what, request, outcome), backend)) in SHAPES.iter().zip(backends).enumerate() {
        let (name, port) = target(i)
            .split_once(':')
            .map(|(n, p)| (n.to_string(), p.parse().unwrap()))
            .unwrap();
        let request = request.replace("host: H\r\n", &format!("host: {name}:{port}\r\n"));
        let mut tls = if header {
            let h = TransportHeader {
                port,
                name: Some(name.clone()),
                protocol: Some(SessionProtocol::Http1),
            };
            let mut tls =
                crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
                    .await
                    .unwrap();
            tls.write_all(&h.encode()).await.unwrap();
            tls
        } else {
            crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_H1), GATEWAY)
                .await
                .unwrap()
        };
        let raw = exchange(&mut tls, request.as_bytes()).await;
        let got = responses(&raw);
        let what = format!(
            "{what} ({})",
            if header {
                "transport header"
            } else {
                "plain mode"
            }
        );
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        match outcome {
            Refused => {
                assert_eq!(statuses, [400], "{what}: {}", String::from_utf8_lossy(&raw));
                assert_eq!(got[0].header("connection"), Some("close"), "{what}");
                assert_eq!(
                    (backend.connections(), backend.bytes()),
                    (0, 0),
                    "{what}: refused, yet something reached the backend: {:?}",
                    backend.requests()
                );
            }
            Forwarded(expected) => {
                assert_eq!(
                    statuses,
                    vec![200; expected.len()],
                    "{what}: {}",
                    String::from_utf8_lossy(&raw)
                );
                let paths: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
                let seen = backend.assert_exactly(&what, &paths);
                for (req, (path, body)) in seen.iter().zip(expected.iter()) {
                    assert_eq!(
                        String::from_utf8_lossy(&req.body),
                        *body,
                        "{what}: body of {path}"
                    );
                }
            }
        }
    }
    // Each refusal is the client's error, never an i/o failure of the gateway or upstream.
    gw.wait_metric(&format!(
        "inbound_http_errors_total{{error=\"client\"}} {refused}"
    ))
    .await;
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("error=\"i/o\""), "{metrics}");
}

#[tokio::test]
async fn smuggling_shapes_in_plain_mode() {
    let (gw, backends) = gateway().await;
    every_shape(&gw, &backends, false).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn smuggling_shapes_behind_a_transport_header() {
    let (gw, backends) = gateway().await;
    every_shape(&gw, &backends, true).await;
    gw.shutdown().await;
}
