//! The gateway's identity reloaded on SIGHUP, on the real binary, with `reload_interval = "1h"`
//! so that only the signal can pick the new files up: `identity_reloads_total{result}`, the new
//! leaf's serial presented, a `warn` when under 10 % of the leaf's life is left, and an `error`
//! naming the expiry date (with `/ready` at 503) once it has passed; clients refusing the expired
//! leaf are counted as `reason="rejected by client"` and said once at `error`.

mod http_support;
mod support;

use crossgate::certs::{GATEWAY_IDENTITY, Leaf, LeafSpec};
use http_support::BinaryGateway;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::time::Duration;
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, serial_of_der, serial_of_pem};

const HOURLY: &str = "reload_interval = \"1h\"\n";

/// The serial of the leaf the gateway presents to a new mTLS client.
async fn presented_serial(gw: &BinaryGateway) -> Vec<u8> {
    let tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    serial_of_der(&tls.get_ref().1.peer_certificates().unwrap()[0])
}

/// Writes `tls.crt` and `tls.key`, each beside and renamed over.
fn install(gw: &BinaryGateway, cert_pem: &str, key_pem: &str) {
    for (name, text) in [("tls.crt", cert_pem), ("tls.key", key_pem)] {
        let tmp = gw.file(&format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, gw.file(name)).unwrap();
    }
}

/// A gateway leaf from `gw`'s PKI, valid from 100 s ago for `100 + secs_left` seconds.
fn leaf_ending_in(gw: &BinaryGateway, secs_left: i64) -> Leaf {
    let now = time::OffsetDateTime::now_utc();
    let mut spec = LeafSpec::identity(GATEWAY_IDENTITY);
    spec.not_before = now - time::Duration::seconds(100);
    spec.not_after = now + time::Duration::seconds(secs_left);
    gw.pki.leaf_with(spec).unwrap()
}

async fn ready_status(gw: &BinaryGateway) -> u16 {
    let raw = support::http_get(gw.admin, "/ready").await;
    support::parse_response(&raw).0
}

#[tokio::test]
async fn sighup_reloads_the_identity_and_logs_its_end_of_life() {
    let gw = BinaryGateway::start_logged("", HOURLY, "info", false).await;
    let before = presented_serial(&gw).await;

    // 3 s left of 103: under 10 % at once.
    let leaf = leaf_ending_in(&gw, 3);
    install(&gw, &leaf.cert_pem, &leaf.key_pem);
    gw.signal("HUP").await;
    gw.wait_metric("identity_reloads_total{result=\"ok\"} 1")
        .await;
    let after = presented_serial(&gw).await;
    assert_ne!(after, before);
    assert_eq!(after, serial_of_pem(&leaf.cert_pem));
    let log = gw.stderr();
    let warned = |log: &str| log.matches("less than 10 % of its lifetime left").count();
    assert_eq!(warned(&log), 1, "{log}");

    // Past its end (by more than a second: certificate times have whole seconds and a
    // verifier accepts the last one): the next look (a SIGHUP here) logs the expiry once,
    // with its date; the same files no longer load; /ready answers 503.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    gw.signal("HUP").await;
    gw.wait_metric("identity_reloads_total{result=\"error\"} 1")
        .await;
    assert_eq!(ready_status(&gw).await, 503);
    let log = gw.stderr();
    let expired: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("own certificate has expired"))
        .collect();
    assert_eq!(expired.len(), 1, "{log}");
    assert!(expired[0].contains("ERROR"), "{}", expired[0]);
    let date = time::OffsetDateTime::from_unix_timestamp(
        crossgate::identity::validity_of(
            &CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .next()
                .unwrap()
                .unwrap(),
        )
        .unwrap()
        .1,
    )
    .unwrap()
    .format(&time::format_description::well_known::Rfc3339)
    .unwrap();
    assert!(expired[0].contains(&date), "{date} in {}", expired[0]);
    assert_eq!(warned(&log), 1, "warned again:\n{log}");

    // A client now refuses the expired leaf: counted as the client's rejection of ours, and
    // said once (not per connection) at `error` with the date.
    for _ in 0..3 {
        let refused =
            crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY).await;
        assert!(refused.is_err(), "a client accepted an expired leaf");
    }
    gw.wait_metric("inbound_tls_handshake_failures_total{reason=\"rejected by client\"} 3")
        .await;
    let log = gw.stderr();
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused the gateway's certificate"))
        .collect();
    assert_eq!(rejected.len(), 1, "{log}");
    assert!(rejected[0].contains("ERROR"), "{}", rejected[0]);
    assert!(rejected[0].contains(&date), "{date} in {}", rejected[0]);
    gw.terminate().await;
}

#[tokio::test]
async fn sighup_with_a_leaf_that_does_not_load_keeps_the_current_one() {
    let gw = BinaryGateway::start_logged("", HOURLY, "warn", false).await;
    let before = presented_serial(&gw).await;
    let key = std::fs::read_to_string(gw.file("tls.key")).unwrap();
    install(&gw, "not a certificate\n", &key);
    gw.signal("HUP").await;
    gw.wait_metric("identity_reloads_total{result=\"error\"} 1")
        .await;
    assert_eq!(presented_serial(&gw).await, before);
    assert_eq!(ready_status(&gw).await, 200);
    assert!(
        !gw.metrics()
            .await
            .contains("identity_reloads_total{result=\"ok\"}"),
        "counted a failed reload as ok"
    );
    gw.terminate().await;
}
