//! Targets that are not static resolve through DNS (`[routing] dns_servers`), answers are
//! cached for their TTL, and a name that does not exist is the refusal `no such service`:
//! 502 `upstream: no such service` over HTTP, a closed connection in opaque mode, counted as
//! `error="no such service"`. A name refused by routing or authorization (or a loop) asks
//! DNS nothing. The DNS server is a minimal one in `support` (UDP, A records, TTL 5) that
//! records every question.

mod http_support;
mod support;
use crossgate::transport_header::TransportHeader;
use http_support::{ALPN_H2, get, http_error_line, plain_h2};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

const ECHO: &str = "echo.test.svc.cluster.local";

async fn roundtrip(gw: &TestGateway, name: &str, port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let header = TransportHeader {
        port,
        name: Some(name.into()),
        protocol: None,
    };
    let mut tls = open(gw, gw.client(FRONTEND, ALPN_TRANSPORT), &header)
        .await
        .unwrap();
    let _ = tls.write_all(msg).await;
    let _ = tls.shutdown().await;
    read_until_closed(&mut tls, Duration::from_secs(5)).await
}

#[tokio::test]
async fn resolved_name_is_echoed_and_the_answer_cached() {
    let dns = DnsServer::start(&[(&format!("{ECHO}."), Ipv4Addr::LOCALHOST)]).await;
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!("[routing]\ndns_servers = [\"{}\"]\n", dns.addr)).await;
    for i in 0..2 {
        let msg = format!("via dns {i}");
        assert_eq!(
            roundtrip(&gw, ECHO, echo.port(), msg.as_bytes()).await,
            Some(msg.into_bytes()),
            "connection {i}; questions: {:?}",
            dns.questions()
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Two connections well within the TTL of 5 s: one question for the A record.
    assert_eq!(
        dns.asked(&format!("{ECHO}."), DNS_A),
        1,
        "questions: {:?}",
        dns.questions()
    );
    assert!(
        dns.asked(&format!("{ECHO}."), DNS_AAAA) <= 1,
        "the empty AAAA answer was not cached: {:?}",
        dns.questions()
    );
    gw.wait_metric(&format!(
        "tcp_open_total{{direction=\"outbound\",peer=\"dst\",tls=\"no_identity\",no_tls_reason=\"not_provided_by_service_discovery\",authority=\"{ECHO}:{}\",target_addr=\"{echo}\"}} 2",
        echo.port()
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_name_closes_the_connection_as_no_such_service() {
    let dns = DnsServer::start(&[(&format!("{ECHO}."), Ipv4Addr::LOCALHOST)]).await;
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!("[routing]\ndns_servers = [\"{}\"]\n", dns.addr)).await;
    let missing = "missing.test.svc.cluster.local";
    assert_eq!(
        roundtrip(&gw, missing, echo.port(), b"hello").await,
        Some(vec![]),
        "questions: {:?}",
        dns.questions()
    );
    gw.wait_metric(&tcp_error_line("no such service", 1)).await;
    assert!(
        !gw.metrics().await.contains("error=\"i/o\""),
        "a missing name is not an i/o failure"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert!(
        dns.asked(&format!("{missing}."), DNS_A) >= 1,
        "questions: {:?}",
        dns.questions()
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_name_over_http_is_502_no_such_service() {
    let dns = DnsServer::start(&[(&format!("{ECHO}."), Ipv4Addr::LOCALHOST)]).await;
    let gw = start(&format!("[routing]\ndns_servers = [\"{}\"]\n", dns.addr)).await;
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get("http://nosuch.test.svc.cluster.local:80/x", &[]),
    )
    .await;
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(
        a.header("l5d-proxy-error"),
        Some("upstream: no such service"),
        "{a:?}"
    );
    gw.wait_metric(&http_error_line("no such service", 1)).await;
    gw.shutdown().await;
}

/// A name refused by routing or authorization costs no DNS question: the refusal comes before
/// any resolution, over a transport header and in plain HTTP mode, and an allowed name then
/// shows the server is the one asked.
#[tokio::test]
async fn refused_names_ask_dns_nothing() {
    let dns = DnsServer::start(&[
        (&format!("{ECHO}."), Ipv4Addr::LOCALHOST),
        ("denied.other.svc.cluster.local.", Ipv4Addr::LOCALHOST),
    ])
    .await;
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!(
        "[routing]\ndns_servers = [\"{}\"]\n\
         [[authorization]]\nidentities = [\"{FRONTEND}\"]\nservices = [\"*.test.svc.cluster.local\"]\n",
        dns.addr
    ))
    .await;
    // Transport header, opaque: not authorized; outside the domain; an IP literal; one label
    // short of <svc>.<ns>.svc.<domain>.
    let opaque = [
        "denied.other.svc.cluster.local",
        "echo.example.com",
        "10.0.0.1",
        "test.svc.cluster.local",
    ];
    for name in opaque {
        assert_eq!(
            roundtrip(&gw, name, echo.port(), b"x").await,
            Some(vec![]),
            "{name}"
        );
    }
    // Plain HTTP mode: 403, 404, 404, and a loop by `Forwarded` (508).
    let own = crossgate::certs::GATEWAY_IDENTITY;
    let loop_by = format!("by={own}");
    type Refused<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let requests: [Refused; 4] = [
        ("http://denied.other.svc.cluster.local:80/", &[], 403),
        ("http://echo.example.com:80/", &[], 404),
        ("http://127.0.0.1:80/", &[], 404),
        (
            "http://echo.test.svc.cluster.local:80/",
            &[("forwarded", loop_by.as_str())],
            508,
        ),
    ];
    for (uri, headers, status) in requests {
        let a = plain_h2(gw.addr, gw.client(FRONTEND, ALPN_H2), get(uri, headers)).await;
        assert_eq!(a.status, status, "{uri}: {a:?}");
    }
    // The gateway's own identity as the client: refused as a loop before any resolution.
    let a = plain_h2(
        gw.addr,
        gw.client(GATEWAY, ALPN_H2),
        get("http://echo.test.svc.cluster.local:80/", &[]),
    )
    .await;
    assert_eq!(a.status, 508, "{a:?}");
    let m = gw.metrics().await;
    assert!(
        m.contains("inbound_tcp_authz_deny_total{") && m.contains("inbound_http_authz_deny_total{"),
        "{m}"
    );
    assert_eq!(dns.questions(), vec![], "refused names were looked up");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    // The control: an allowed name is asked of this server, and reaches the backend.
    assert_eq!(
        roundtrip(&gw, ECHO, echo.port(), b"allowed").await,
        Some(b"allowed".to_vec())
    );
    assert!(
        dns.asked(&format!("{ECHO}."), DNS_A) >= 1,
        "{:?}",
        dns.questions()
    );
    assert!(
        dns.questions()
            .iter()
            .all(|(n, _)| n == &format!("{ECHO}.")),
        "{:?}",
        dns.questions()
    );
    gw.shutdown().await;
}
