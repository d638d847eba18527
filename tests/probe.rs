//! The prober against real crossgate gateways on 127.0.0.1: over mTLS and plaintext; a
//! gateway stopped (dead only after the threshold) and started again; a gateway presenting
//! another identity; a hostname whose address changes between probes (a DNS stub the test
//! controls); a configuration with every problem reported. The `gateways` command is in
//! `tests/gateways.rs`.

mod probe_support;
mod support;
use probe_support::*;
use std::net::Ipv4Addr;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn mtls_probe_of_a_real_gateway() {
    let gw = start("").await;
    let files = prober_files(&gw);
    let prober = start_prober(
        Some(&files),
        &link(
            "east",
            "127.0.0.1",
            gw.admin.port(),
            Some(GATEWAY),
            "100ms",
            3,
        ),
    )
    .await;
    prober.wait(&probes("east", true), |v| v >= 2.0).await;
    let m = prober.metrics().await;
    assert_eq!(value(&m, &cluster("gateway_enabled", "east")), Some(1.0));
    assert_eq!(value(&m, &cluster("gateway_alive", "east")), Some(1.0));
    assert_eq!(
        value(&m, &cluster("gateway_mirrored_services", "east")),
        Some(2.0)
    );
    assert_eq!(value(&m, &probes("east", false)), Some(0.0));
    let latency = value(&m, &cluster("gateway_latency", "east")).unwrap();
    assert!(latency > 0.0 && latency < 1000.0, "latency {latency} ms");
    let observed = value(&m, &cluster("gateway_probe_latency_ms_count", "east")).unwrap();
    assert!(observed >= 2.0, "{m}");
    gw.shutdown().await;
}

#[tokio::test]
async fn plaintext_probe_of_a_real_gateway() {
    let gw = start("").await;
    let prober = start_prober(
        None,
        &link("east", "127.0.0.1", gw.admin.port(), None, "100ms", 3),
    )
    .await;
    prober.wait(&probes("east", true), |v| v >= 2.0).await;
    prober
        .wait(&cluster("gateway_alive", "east"), |v| v == 1.0)
        .await;
    // The same link with TLS but no client identity cannot even be configured.
    let bad = link("east", "127.0.0.1", 1, Some(GATEWAY), "1s", 3);
    let err = crossgate::probe::ProbeConfig::parse(&bad, "p.toml", std::path::Path::new("."))
        .unwrap_err();
    assert!(err.0[0].contains("link[0].identity"), "{err}");
    gw.shutdown().await;
}

#[tokio::test]
async fn stopped_gateway_is_dead_only_after_the_threshold_and_alive_again_when_restarted() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = RunningGateway::start(&pki, dir.path(), "127.0.0.1:0").await;
    let files = write_prober_files(&pki, dir.path());
    let prober = start_prober(
        Some(&files),
        &link(
            "east",
            "127.0.0.1",
            gw.admin.port(),
            Some(GATEWAY),
            "50ms",
            3,
        ),
    )
    .await;
    prober
        .wait(&cluster("gateway_alive", "east"), |v| v == 1.0)
        .await;
    let admin = gw.admin;
    gw.stop().await;

    // Every scrape: alive 0 only once three failures are counted (the failures are counted
    // before the gauge moves, so one scrape never shows the gauge ahead of the counter).
    let mut seen_alive_with_failures = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = prober.metrics().await;
        let failed = value(&m, &probes("east", false)).unwrap_or(0.0);
        let alive = value(&m, &cluster("gateway_alive", "east"));
        if alive == Some(0.0) {
            assert!(failed >= 3.0, "dead after {failed} failures:\n{m}");
            break;
        }
        seen_alive_with_failures |= failed >= 1.0;
        assert!(tokio::time::Instant::now() < deadline, "never dead:\n{m}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        seen_alive_with_failures,
        "never saw the gateway still alive after a failure"
    );
    let m = prober.metrics().await;
    let reasons: f64 = ["connect", "status", "timeout", "tls"]
        .iter()
        .filter_map(|r| value(&m, &failures("east", r)))
        .sum();
    assert_eq!(Some(reasons), value(&m, &probes("east", false)), "{m}");

    let again = RunningGateway::start(&pki, dir.path(), &admin.to_string()).await;
    prober
        .wait(&cluster("gateway_alive", "east"), |v| v == 1.0)
        .await;
    again.stop().await;
}

#[tokio::test]
async fn gateway_presenting_another_identity_fails_with_reason_tls() {
    let gw = start("").await;
    let files = prober_files(&gw);
    let other = "other-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
    let prober = start_prober(
        Some(&files),
        &link("east", "127.0.0.1", gw.admin.port(), Some(other), "50ms", 2),
    )
    .await;
    prober.wait(&failures("east", "tls"), |v| v >= 2.0).await;
    let m = prober.metrics().await;
    assert_eq!(value(&m, &probes("east", true)), Some(0.0), "{m}");
    assert_eq!(value(&m, &cluster("gateway_alive", "east")), Some(0.0));
    assert_eq!(value(&m, &failures("east", "connect")), Some(0.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn hostname_is_resolved_again_at_every_probe() {
    let gw = start("").await;
    let name = "gw.east.example.";
    // First an address where nothing listens on the admin port.
    let dns = DnsServer::start(&[(name, Ipv4Addr::new(127, 0, 0, 2))]).await;
    let links = format!(
        "[probe]\ndns_servers = [\"{}\"]\n{}{}",
        dns.addr,
        link("east", name, gw.admin.port(), None, "50ms", 3),
        link(
            "nowhere",
            "missing.example.",
            gw.admin.port(),
            None,
            "50ms",
            3
        ),
    );
    let prober = start_prober(None, &links).await;
    prober
        .wait(&failures("east", "connect"), |v| v >= 2.0)
        .await;
    assert_eq!(prober.value(&probes("east", true)).await, Some(0.0));
    dns.set(name, Ipv4Addr::LOCALHOST);
    prober
        .wait(&cluster("gateway_alive", "east"), |v| v == 1.0)
        .await;
    prober
        .wait(&failures("nowhere", "resolve"), |v| v >= 1.0)
        .await;
    let m = prober.metrics().await;
    let probed =
        value(&m, &probes("east", true)).unwrap() + value(&m, &probes("east", false)).unwrap();
    assert!(
        dns.asked(name, DNS_A) as f64 >= probed,
        "{} questions for {probed} probes",
        dns.asked(name, DNS_A)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn every_configuration_problem_is_reported_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(
        &path,
        "[server]\nadmin = \"nope\"\n[[link]]\nname = \"east\"\naddress = \"a b\"\nperiod = \"x\"\n\
         [[link]]\naddress = \"10.0.0.1\"\nidentity = \"gw.example.com\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(["probe", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.admin",
        "link[0].address",
        "link[0].period",
        "link[1].name",
        "link[1].identity",
    ] {
        assert!(
            err.contains(&format!("{}: {key}", path.display())),
            "no {key} in:\n{err}"
        );
    }
}
