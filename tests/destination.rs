//! What the gateway does with what the Destination controller says, and with its silence: a
//! `Remove` in the middle of traffic loses no request; a controller that is down falls back to
//! DNS (through a resolver the test controls) or, with `fallback = "fail"`, answers 502 at
//! once; `NoEndpoints{exists: true}` never falls back (no endpoint is ready: 504 fail-fast); a
//! stream that breaks keeps serving the last set it had.

mod http_support;
mod support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::{Backend, connect_tls, get, h2_client, send_h2};
use std::net::SocketAddr;
use support::destination::{Addr, DestinationStub, Step};
use support::meshed::{MeshedBackend, Mode};
use support::{ALPN_TRANSPORT, DNS_A, DnsServer, FRONTEND, GATEWAY, TestGateway};

const WEB: &str = "web.test.svc.cluster.local";
const WEB_ID: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";

type H2 = hyper::client::conn::http2::SendRequest<http_support::ReqBody>;

async fn h2_through(gw: &TestGateway, port: u16) -> H2 {
    let hdr = TransportHeader {
        port,
        name: Some(WEB.into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    let cfg = gw.client(FRONTEND, ALPN_TRANSPORT);
    h2_client(connect_tls(gw.addr, cfg, Some(&hdr)).await).await
}

async fn status(h2: &mut H2, port: u16) -> (u16, String) {
    let a = send_h2(h2, get(&format!("http://{WEB}:{port}/"), &[])).await;
    let why = a.header("l5d-proxy-error").unwrap_or_default().to_string();
    (a.status.as_u16(), why)
}

/// A closed port: a controller that is down.
fn down() -> SocketAddr {
    http_support::closed_port()
}

fn discovery(addr: SocketAddr, fallback: &str, dns: Option<&DnsServer>) -> String {
    let dns = dns.map_or(String::new(), |d| {
        format!("[routing]\ndns_servers = [\"{}\"]\n", d.addr)
    });
    format!(
        "[discovery]\ndestination_addr = \"{addr}\"\nfallback = \"{fallback}\"\n\
         stream_initial_timeout = \"300ms\"\nfailfast_timeout = \"300ms\"\n{dns}"
    )
}

async fn gateway(pki: crossgate::certs::Pki, extra: &str) -> TestGateway {
    let leaf = pki.leaf(GATEWAY).unwrap();
    support::start_with(pki, leaf, extra).await
}

#[tokio::test]
async fn remove_in_the_middle_of_traffic_loses_no_request() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let a = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let b = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let stub = DestinationStub::plaintext().await;
    let path = format!("{WEB}:9898");
    let both = vec![Addr::meshed(a.addr, WEB_ID), Addr::meshed(b.addr, WEB_ID)];
    stub.script(&path, vec![Step::Add(both), Step::Pause]);
    let gw = gateway(pki, &discovery(stub.addr, "dns", None)).await;

    // Four clients, 50 requests each; `a` is removed after the first round.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(h2_through(&gw, 9898).await);
    }
    let mut failed = Vec::new();
    for round in 0..50 {
        if round == 10 {
            stub.push(&path, Step::Remove(vec![a.addr]));
            gw.wait_metric("discovery_updates_total{op=\"remove\"} 1")
                .await;
        }
        let mut set = tokio::task::JoinSet::new();
        for c in &clients {
            let mut c = c.clone();
            set.spawn(async move { status(&mut c, 9898).await });
        }
        while let Some(done) = set.join_next().await {
            let (code, why) = done.unwrap();
            if code != 200 {
                failed.push((round, code, why));
            }
        }
    }
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let (on_a, on_b) = (a.requests().len(), b.requests().len());
    assert_eq!(on_a + on_b, 200);
    assert!(
        on_a > 0 && on_a <= 40,
        "a served {on_a}, only before its removal"
    );
}

#[tokio::test]
async fn a_controller_that_is_down_falls_back_to_dns_or_fails() {
    let backend = Backend::start().await;
    let port = backend.addr.port();
    let dns = DnsServer::start(&[(&format!("{WEB}."), std::net::Ipv4Addr::LOCALHOST)]).await;
    let pki = crossgate::certs::Pki::new().unwrap();
    let gw = gateway(pki, &discovery(down(), "dns", Some(&dns))).await;
    let mut h2 = h2_through(&gw, port).await;
    assert_eq!(status(&mut h2, port).await, (200, String::new()));
    assert_eq!(
        backend.count(),
        1,
        "served by the DNS endpoint in plaintext"
    );
    assert!(dns.asked(&format!("{WEB}."), DNS_A) >= 1);

    let pki = crossgate::certs::Pki::new().unwrap();
    let failing = gateway(pki, &discovery(down(), "fail", Some(&dns))).await;
    let mut h2 = h2_through(&failing, port).await;
    assert_eq!(
        status(&mut h2, port).await,
        (502, "upstream: no endpoints".to_string())
    );
    assert_eq!(backend.count(), 1, "nothing reached the backend");
}

#[tokio::test]
async fn no_endpoints_that_exist_never_fall_back_and_unknown_services_do() {
    let backend = Backend::start().await;
    let port = backend.addr.port();
    let dns = DnsServer::start(&[(&format!("{WEB}."), std::net::Ipv4Addr::LOCALHOST)]).await;
    let stub = DestinationStub::plaintext().await;
    stub.script(
        &format!("{WEB}:{port}"),
        vec![Step::NoEndpoints { exists: true }, Step::Pause],
    );
    let pki = crossgate::certs::Pki::new().unwrap();
    let gw = gateway(pki, &discovery(stub.addr, "dns", Some(&dns))).await;
    let mut h2 = h2_through(&gw, port).await;
    // An empty set: no endpoint is ready, so the request fails fast after failfast_timeout.
    assert_eq!(
        status(&mut h2, port).await,
        (504, "service in fail-fast".to_string())
    );
    assert_eq!(dns.asked(&format!("{WEB}."), DNS_A), 0, "DNS never asked");
    assert_eq!(backend.count(), 0);
    gw.wait_metric("discovery_updates_total{op=\"no_endpoints\"} 1")
        .await;

    // A service the controller does not know (`exists: false`) falls back to DNS.
    let other = Backend::start().await;
    let p2 = other.addr.port();
    let mut h2 = h2_through(&gw, p2).await;
    assert_eq!(status(&mut h2, p2).await, (200, String::new()));
    assert_eq!(other.count(), 1);
}

#[tokio::test]
async fn a_broken_stream_keeps_serving_the_last_set() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let pod = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let stub = DestinationStub::plaintext().await;
    let path = format!("{WEB}:9898");
    stub.script(
        &path,
        vec![Step::Add(vec![Addr::meshed(pod.addr, WEB_ID)]), Step::Pause],
    );
    let gw = gateway(pki, &discovery(stub.addr, "fail", None)).await;
    let mut h2 = h2_through(&gw, 9898).await;
    assert_eq!(status(&mut h2, 9898).await.0, 200);
    stub.stop();
    gw.wait_metric("discovery_streams{state=\"reconnecting\"} 1")
        .await;
    for _ in 0..5 {
        assert_eq!(status(&mut h2, 9898).await, (200, String::new()));
    }
    // A new connection, too, is served from the last known set.
    let mut fresh = h2_through(&gw, 9898).await;
    assert_eq!(status(&mut fresh, 9898).await.0, 200);
    assert_eq!(pod.requests().len(), 7);
}
