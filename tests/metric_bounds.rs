//! Metric series an outsider cannot mint: names a client invents (refused by the rules, or in
//! the domain but not resolving) are counted under `other`, never as labels of their own, on
//! the transport-header path and in plain HTTP mode; a target that was reached is labelled by
//! its name; names that do not resolve cost one DNS question each, not one per connection.

mod http_support;
mod support;

use crossgate::transport_header::TransportHeader;
use http_support::{ALPN_H2, Backend, get, h2_client, send_h2};
use std::net::Ipv4Addr;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

const EAST: &str = "api.east.serviceaccount.identity.linkerd.cluster.local";
const INVENTED: usize = 150;

async fn header_connection(gw: &TestGateway, identity: &str, name: &str) {
    let header = TransportHeader {
        port: 7000,
        name: Some(name.into()),
        protocol: None,
    };
    let mut tls = open(gw, gw.client(identity, ALPN_TRANSPORT), &header)
        .await
        .unwrap();
    let _ = tls.write_all(b"x").await;
    let _ = read_until_closed(&mut tls, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn invented_names_never_become_labels() {
    let dns = DnsServer::start(&[("real.ns.svc.cluster.local.", Ipv4Addr::LOCALHOST)]).await;
    let backend = Backend::start().await;
    let gw = start(&format!(
        "[routing]\ndns_servers = [\"{}\"]\n[[authorization]]\nidentities = [\"{EAST}\"]\n",
        dns.addr
    ))
    .await;
    for i in 0..INVENTED {
        // Denied by the rules (an identity without rights), and allowed but not resolving.
        header_connection(&gw, FRONTEND, &format!("denied{i}.ns.svc.cluster.local")).await;
        header_connection(&gw, EAST, &format!("nosuch{i}.ns.svc.cluster.local")).await;
    }
    // Plain HTTP mode: invented authorities on one connection.
    let tls = http_support::connect_tls(gw.addr, gw.client(EAST, ALPN_H2), None).await;
    let mut send = h2_client(tls).await;
    for i in 0..INVENTED {
        let host = format!("web{i}.ns.svc.cluster.local");
        let answer = send_h2(&mut send, get(&format!("http://{host}/"), &[])).await;
        assert_eq!(answer.status, 502, "{host}");
    }
    // A real target: reached, then labelled by its name.
    let real = format!("real.ns.svc.cluster.local:{}", backend.addr.port());
    let answer = send_h2(&mut send, get(&format!("http://{real}/"), &[])).await;
    assert_eq!(answer.status, 200);
    let answer = send_h2(&mut send, get(&format!("http://{real}/"), &[])).await;
    assert_eq!(answer.status, 200);

    let metrics = gw.metrics().await;
    for invented in ["denied", "nosuch", "web"] {
        let leaked: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains(&format!("{invented}1")))
            .collect();
        assert!(
            leaked.is_empty(),
            "invented names became labels: {leaked:?}"
        );
    }
    assert!(
        metrics.contains(&format!(
            "inbound_tcp_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"other\"}} {INVENTED}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("authority=\"{real}\"")),
        "the reached target is labelled by its name:\n{metrics}"
    );
    let folded = gw
        .metric_value("metric_targets_folded_total")
        .await
        .unwrap();
    assert!(folded >= (3 * INVENTED) as f64, "{folded}");
    // Bounded: the same size whatever the number of invented names.
    assert!(
        metrics.len() < 32 * 1024,
        "{} bytes:\n{metrics}",
        metrics.len()
    );
    // Each missing name was asked once (negative caching), not once per connection.
    let asked = dns.asked("nosuch1.ns.svc.cluster.local.", 1);
    assert!(asked <= 2, "asked {asked} times");
    gw.shutdown().await;
}
