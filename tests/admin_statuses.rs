//! What the admin port answers besides `/live`, `/ready` and `/metrics`: 404 for any other
//! path (near misses included), 405 with `Allow: GET, HEAD` for any other method on any path,
//! `HEAD` like `GET` without a body; over plaintext HTTP/1.1 on the wire, over HTTP/2, and over
//! mTLS as the service-mirror probes.

mod http_support;
mod support;

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use support::{FRONTEND, GATEWAY, parse_response, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Paths that are not the admin port's, each close to one that is.
const UNKNOWN: &[&str] = &[
    "/",
    "/nope",
    "/ready/",
    "/readyz",
    "/live/x",
    "/metrics/",
    "/METRICS",
    "/ready%00",
    "//ready",
];

/// Methods the admin port does not serve.
const NOT_ALLOWED: &[&str] = &["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// One raw HTTP/1.1 request with `connection: close`; the whole answer as text.
async fn raw(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = if method == "GET" || method == "HEAD" {
        ""
    } else {
        "content-length: 0\r\n"
    };
    let req = format!("{method} {path} HTTP/1.1\r\nhost: t\r\n{body}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405_on_the_wire() {
    let gw = start("").await;
    for path in UNKNOWN {
        let (status, head, body) = parse_response(&raw(gw.admin, "GET", path).await);
        assert_eq!(
            (status, body.as_str()),
            (404, "not found\n"),
            "GET {path}: {head}"
        );
    }
    for method in NOT_ALLOWED {
        for path in ["/ready", "/live", "/metrics", "/nope"] {
            let (status, head, body) = parse_response(&raw(gw.admin, method, path).await);
            assert_eq!(
                (status, body.as_str()),
                (405, "method not allowed\n"),
                "{method} {path}: {head}"
            );
            assert!(
                head.contains("\r\nallow: get, head"),
                "{method} {path}: {head}"
            );
        }
    }
    // HEAD: the status and headers of GET, no body.
    let (status, head, body) = parse_response(&raw(gw.admin, "HEAD", "/ready").await);
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let (status, _, body) = parse_response(&raw(gw.admin, "HEAD", "/nope").await);
    assert_eq!((status, body.as_str()), (404, ""));
    // None of it changed what the port serves.
    let (status, _, body) = parse_response(&raw(gw.admin, "GET", "/ready").await);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    gw.shutdown().await;
}

/// The statuses of `requests` (method, path) sent on one HTTP/2 connection over `io`.
async fn h2_statuses<I>(io: I, authority: &str, requests: &[(Method, &str)]) -> Vec<StatusCode>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for (method, path) in requests {
        let req = http::Request::builder()
            .method(method.clone())
            .uri(format!("https://{authority}{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let _ = resp.into_body().collect().await.unwrap();
        out.push(status);
    }
    out
}

#[tokio::test]
async fn the_same_statuses_over_http2_and_mtls() {
    let gw = start("").await;
    let requests = [
        (Method::GET, "/nope"),
        (Method::POST, "/ready"),
        (Method::DELETE, "/live"),
        (Method::GET, "/ready"),
    ];
    let want = [
        StatusCode::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::OK,
    ];
    let tcp = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    assert_eq!(h2_statuses(tcp, "t", &requests).await, want, "plaintext h2");
    // mTLS as the service-mirror's proxy probes: SNI the gateway identity, no transport header.
    let config = gw.client(FRONTEND, &[b"h2"]);
    let tls = crossgate::tls::connect(gw.admin, config, GATEWAY)
        .await
        .unwrap();
    assert_eq!(h2_statuses(tls, "t", &requests).await, want, "mTLS h2");
    gw.shutdown().await;
}
