//! The access log on the real binary with `--log-format json`: one line per finished
//! connection and, with `[log] access = "all"`, per request, each field its own JSON key,
//! asserted field by field; `refusals` (the default) writes only what was refused; `off`
//! writes nothing.

mod http_support;
mod support;

use crossgate::transport_header::TransportHeader;
use http_support::{ALPN_H1, Backend, BinaryGateway, access_lines, static_routes};
use serde_json::Value;
use std::time::Duration;
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web.demo.svc.cluster.local:8080";

async fn wait_lines(gw: &BinaryGateway, n: usize) -> Vec<Value> {
    for _ in 0..250 {
        let lines = access_lines(gw);
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} access lines:\n{}", gw.stderr());
}

/// A refused transport-header connection (name outside the cluster domain), then one plain
/// HTTP/1.1 request that is served.
async fn traffic(gw: &BinaryGateway) {
    let mut tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    let header = TransportHeader {
        port: 80,
        name: Some("example.com".into()),
        protocol: None,
    };
    tls.write_all(&header.encode()).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(tls.read(&mut buf).await, Ok(0) | Err(_)));

    let mut tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_H1), GATEWAY)
        .await
        .unwrap();
    let req = format!(
        "POST /hello HTTP/1.1\r\nhost: {WEB}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nworld"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn all_logs_connections_and_requests_field_by_field() {
    let backend = Backend::start().await;
    let tables = format!(
        "[log]\naccess = \"all\"\n{}",
        static_routes(&[(WEB, backend.addr)])
    );
    let gw = BinaryGateway::start_logged("", &tables, "info", true).await;
    traffic(&gw).await;
    // The refused connection, the request, and the request's connection.
    let lines = wait_lines(&gw, 3).await;

    let refused = lines
        .iter()
        .find(|l| l["kind"] == "connection" && l["outcome"] == "refused")
        .expect("a refused connection line");
    assert_eq!(refused["client_id"], FRONTEND);
    assert_eq!(refused["protocol"], "opaque");
    assert_eq!(refused["target"], "example.com:80");
    assert_eq!(refused["reason"], "bad gateway domain");
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(refused["duration_ms"].as_f64().unwrap() >= 0.0);

    let request = lines
        .iter()
        .find(|l| l["kind"] == "request")
        .expect("a request line");
    assert_eq!(request["client_id"], FRONTEND);
    assert_eq!(request["method"], "POST");
    assert_eq!(request["target"], WEB);
    assert_eq!(request["endpoint"], backend.addr.to_string());
    assert_eq!(request["protocol"], "http");
    assert_eq!(request["status"], 200);
    assert_eq!(request["outcome"], "ok");
    assert_eq!(request["bytes_in"], 5);
    assert!(request["bytes_out"].as_u64().unwrap() > 0, "{request}");
    assert!(request.get("reason").is_none(), "{request}");

    let served = lines
        .iter()
        .find(|l| l["kind"] == "connection" && l["protocol"] == "http")
        .expect("the served connection's line");
    assert_eq!(served["outcome"], "ok");
    assert!(served["bytes_in"].as_u64().unwrap() > 60, "{served}");
    assert!(served["bytes_out"].as_u64().unwrap() > 20, "{served}");
    gw.terminate().await;
}

/// The `conn` span is at `debug`: at that level the lines logged inside a connection carry it
/// (its peer and client identity); at the default level a connection pays nothing for it.
#[tokio::test]
async fn at_debug_lines_inside_a_connection_carry_its_span() {
    let backend = Backend::start().await;
    let routes = static_routes(&[(WEB, backend.addr)]);
    let gw = BinaryGateway::start_logged("", &routes, "crossgate=debug", true).await;
    traffic(&gw).await;
    wait_lines(&gw, 1).await;
    let stderr = gw.stderr();
    let in_conn = stderr
        .lines()
        .filter(|l| l.contains("\"name\":\"conn\""))
        .find(|l| l.contains(FRONTEND));
    assert!(
        in_conn.is_some(),
        "no line carries the conn span:\n{stderr}"
    );
    gw.terminate().await;

    let gw = BinaryGateway::start_logged("", &routes, "info", true).await;
    traffic(&gw).await;
    wait_lines(&gw, 1).await;
    assert!(
        !gw.stderr().contains("\"name\":\"conn\""),
        "{}",
        gw.stderr()
    );
    gw.terminate().await;
}

#[tokio::test]
async fn refusals_by_default_and_nothing_when_off() {
    let backend = Backend::start().await;
    let routes = static_routes(&[(WEB, backend.addr)]);
    let gw = BinaryGateway::start_logged("", &routes, "info", true).await;
    traffic(&gw).await;
    backend.wait_count(1, 5).await;
    let lines = wait_lines(&gw, 1).await;
    // Give a wrongly written line for the served request time to appear.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines_now = access_lines(&gw);
    assert_eq!(lines_now.len(), 1, "{lines_now:?}");
    assert_eq!(lines[0]["outcome"], "refused");
    assert_eq!(lines[0]["reason"], "bad gateway domain");
    gw.terminate().await;

    let tables = format!("[log]\naccess = \"off\"\n{routes}");
    let gw = BinaryGateway::start_logged("", &tables, "info", true).await;
    traffic(&gw).await;
    backend.wait_count(2, 5).await;
    gw.wait_metric("inbound_tcp_errors_total{error=\"gateway domain invalid\"} 1")
        .await;
    assert!(access_lines(&gw).is_empty(), "{}", gw.stderr());
    gw.terminate().await;
}
