//! What the default access log (`refusals`) writes for failures, on the binary with
//! `--log-format json`: a request refused after admission (502 `no such service`, 504
//! fail-fast) gets its line like any refusal; a connection that fails after it moved data says
//! how many bytes it moved; a client that closes without TLS `close_notify` has closed, not
//! failed.

mod http_support;
mod support;

use crossgate::transport_header::TransportHeader;
use http_support::{ALPN_H1, BinaryGateway, access_lines, closed_port};
use serde_json::Value;
use std::time::Duration;
use support::{ALPN_TRANSPORT, DnsServer, FRONTEND, GATEWAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "tcpecho.test.svc.cluster.local";

/// The first access line `pick` accepts, waiting up to 5 s.
async fn line(gw: &BinaryGateway, pick: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..250 {
        if let Some(l) = access_lines(gw).into_iter().find(|l| pick(l)) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no such access line:\n{}", gw.stderr());
}

async fn gateway(dns: &DnsServer, echo: std::net::SocketAddr) -> BinaryGateway {
    let tables = format!(
        "[routing]\ndns_servers = [\"{}\"]\n[routing.static]\n\
         \"closed.test.svc.cluster.local:80\" = [\"{}\"]\n\"{ECHO}:9899\" = [\"{echo}\"]\n\
         [discovery]\nfailfast_timeout = \"300ms\"\n",
        dns.addr,
        closed_port()
    );
    BinaryGateway::start_logged("idle_timeout = \"400ms\"", &tables, "info", true).await
}

/// One plain HTTP/1.1 request for `host`; the status line.
async fn get(gw: &BinaryGateway, host: &str) -> String {
    let mut tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_H1), GATEWAY)
        .await
        .unwrap();
    let req = format!("GET /x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn opaque(gw: &BinaryGateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let header = TransportHeader {
        port: 9899,
        name: Some(ECHO.into()),
        protocol: None,
    };
    tls.write_all(&header.encode()).await.unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    tls
}

#[tokio::test]
async fn failed_requests_and_connections_get_their_lines_by_default() {
    let dns = DnsServer::start(&[]).await;
    let (echo, _) = support::echo_backend().await;
    let gw = gateway(&dns, echo).await;

    assert!(
        get(&gw, "nosuch.test.svc.cluster.local")
            .await
            .starts_with("HTTP/1.1 502")
    );
    let l = line(&gw, |l| l["kind"] == "request" && l["status"] == 502).await;
    assert_eq!(l["outcome"], "refused", "{l}");
    assert_eq!(l["reason"], "upstream: no such service", "{l}");
    assert_eq!(l["target"], "nosuch.test.svc.cluster.local:80", "{l}");
    assert_eq!(l["method"], "GET", "{l}");

    assert!(
        get(&gw, "closed.test.svc.cluster.local")
            .await
            .starts_with("HTTP/1.1 504")
    );
    let l = line(&gw, |l| l["kind"] == "request" && l["status"] == 504).await;
    assert_eq!(l["reason"], "service in fail-fast", "{l}");

    // An opaque stream that echoed, then idled out: failed, with its bytes.
    let idle = opaque(&gw).await;
    let l = line(&gw, |l| {
        l["kind"] == "connection" && l["protocol"] == "opaque"
    })
    .await;
    assert_eq!(l["outcome"], "failed", "{l}");
    assert!(l["reason"].as_str().unwrap().contains("idle"), "{l}");
    assert!(l["bytes_in"].as_u64().unwrap() >= 5, "{l}");
    assert_eq!(l["bytes_out"], 5, "{l}");
    drop(idle);
    gw.terminate().await;
}

#[tokio::test]
async fn a_client_closing_without_close_notify_has_not_failed() {
    let dns = DnsServer::start(&[]).await;
    let (echo, _) = support::echo_backend().await;
    let gw = gateway(&dns, echo).await;
    let tls = opaque(&gw).await;
    // The TCP connection closes with no TLS close_notify.
    let (mut tcp, _) = tls.into_inner();
    tcp.shutdown().await.unwrap();
    drop(tcp);
    gw.wait_metric(&format!(
        "tcp_close_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\",classification=\"success\"}} 1"
    ))
    .await;
    let m = gw.metrics().await;
    assert!(
        !m.contains("inbound_tcp_errors_total{error=\"i/o\"}"),
        "{m}"
    );
    assert!(access_lines(&gw).is_empty(), "{}", gw.stderr());
    gw.terminate().await;
}
