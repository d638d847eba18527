//! `[identity.linkerd]`: the gateway's leaf from an identity controller of our own (plaintext
//! on loopback, and TLS with a server name), renewed at 70 % of its life; answers that must
//! not be used are refused while the old leaf serves; the token is read at each call; both
//! modes at once is exit 64.

mod support;

use crossgate::certs::Pki;
use std::time::{Duration, Instant};
use support::identity::{Answer, IdentityStub, start_gateway};
use tonic::Code;

/// The value of a metric series, once it is at least `min`.
async fn wait_at_least(gw: &support::TestGateway, series: &str, min: f64) -> f64 {
    for _ in 0..500 {
        if let Some(v) = gw.metric_value(series).await
            && v >= min
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{series} never reached {min}:\n{}", gw.metrics().await);
}

#[tokio::test]
async fn plaintext_loopback_leaf_then_mtls() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::plaintext(&pki, "sa-token").await;
    let gw = start_gateway(pki, &stub, false, "sa-token", "").await;
    gw.until_ready().await;
    gw.served_serial().await.expect("mTLS with the issued leaf");
    assert_eq!(stub.tokens(), vec!["sa-token".to_string()]);
    let m = gw.metrics().await;
    for line in [
        "identity_certify_requests_total{result=\"ok\"} 1",
        "identity_cert_refreshes_total 1",
        "identity_reloads_total{result=\"ok\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing in:\n{m}");
    }
    let expiry = gw
        .metric_value("identity_cert_expiration_timestamp_seconds")
        .await
        .unwrap();
    assert!(expiry > crossgate::identity::unix_now() as f64 + 3000.0);
    assert!(
        gw.metric_value("identity_cert_refresh_timestamp_seconds")
            .await
            .unwrap()
            > 0.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn tls_to_the_controller_by_server_name() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::tls(&pki, "t").await;
    let gw = start_gateway(pki, &stub, true, "t", "").await;
    gw.until_ready().await;
    gw.served_serial().await.expect("mTLS with the issued leaf");
    gw.shutdown().await;
}

#[tokio::test]
async fn controller_with_another_identity_is_not_trusted() {
    // The controller presents its leaf (CONTROLLER) to any SNI; the gateway expects another.
    let pki = Pki::new().unwrap();
    let other = IdentityStub::tls_with(&pki, "t", false).await;
    let gw = start_gateway(
        pki,
        &other,
        false,
        "t",
        "server_name = \"evil.ns.serviceaccount.identity.linkerd.cluster.local\"\nmin_refresh = \"100ms\"\n",
    )
    .await;
    wait_at_least(
        &gw,
        "identity_certify_requests_total{result=\"error\"}",
        1.0,
    )
    .await;
    assert!(gw.admin_get("/ready").await.starts_with("HTTP/1.1 503"));
    gw.shutdown().await;
}

#[tokio::test]
async fn not_ready_and_handshakes_refused_until_the_first_leaf() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::plaintext(&pki, "t").await;
    stub.set_answer(Answer::Error(Code::Unavailable));
    let gw = start_gateway(pki, &stub, false, "t", "min_refresh = \"100ms\"\n").await;
    wait_at_least(
        &gw,
        "identity_certify_requests_total{result=\"error\"}",
        2.0,
    )
    .await;
    assert!(gw.admin_get("/ready").await.starts_with("HTTP/1.1 503"));
    assert!(gw.served_serial().await.is_err(), "no leaf: no handshake");
    stub.set_answer(Answer::Issue(Duration::from_secs(3600)));
    gw.until_ready().await;
    gw.served_serial().await.expect("mTLS once issued");
    gw.shutdown().await;
}

#[tokio::test]
async fn renews_at_70_percent_without_a_failed_handshake() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::plaintext(&pki, "t").await;
    // Valid from a minute ago for 4 s more: renewal about 2.5 s after each Certify.
    stub.set_answer(Answer::Issue(Duration::from_secs(4)));
    let gw = start_gateway(pki, &stub, false, "t", "min_refresh = \"100ms\"\n").await;
    gw.until_ready().await;
    let first = gw.served_serial().await.unwrap();
    let start = Instant::now();
    let mut serials = vec![first];
    while start.elapsed() < Duration::from_millis(4500) {
        let s = gw
            .served_serial()
            .await
            .expect("no failed handshake across renewals");
        if serials.last() != Some(&s) {
            serials.push(s);
        }
        assert!(gw.admin_get("/ready").await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serials.len() >= 2, "renewed {} times", serials.len() - 1);
    let ok = gw
        .metric_value("identity_certify_requests_total{result=\"ok\"}")
        .await
        .unwrap();
    assert!((2.0..=4.0).contains(&ok), "{ok} Certify calls in 4.5 s");
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_answers_refused_and_the_old_leaf_serves() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::plaintext(&pki, "t").await;
    let gw = start_gateway(
        pki,
        &stub,
        false,
        "t",
        "min_refresh = \"50ms\"\nmax_refresh = \"100ms\"\n",
    )
    .await;
    gw.until_ready().await;
    let ok = wait_at_least(&gw, "identity_certify_requests_total{result=\"ok\"}", 1.0).await;
    stub.set_answer(Answer::Error(Code::PermissionDenied));
    wait_at_least(
        &gw,
        "identity_certify_requests_total{result=\"error\"}",
        1.0,
    )
    .await;
    let held = gw.served_serial().await.unwrap();
    let mut refused = 0.0;
    for answer in [Answer::OtherName, Answer::OtherKey, Answer::Expired] {
        stub.set_answer(answer.clone());
        refused += 2.0;
        wait_at_least(
            &gw,
            "identity_certify_requests_total{result=\"refused\"}",
            refused,
        )
        .await;
        assert_eq!(gw.served_serial().await.unwrap(), held, "{answer:?}");
        assert!(gw.admin_get("/ready").await.starts_with("HTTP/1.1 200"));
    }
    let errors = gw
        .metric_value("identity_reloads_total{result=\"error\"}")
        .await
        .unwrap();
    assert!(errors >= 6.0, "{errors}");
    let now_ok = gw
        .metric_value("identity_certify_requests_total{result=\"ok\"}")
        .await
        .unwrap();
    assert!(now_ok <= ok + 1.0, "no leaf taken while refusing");
    gw.shutdown().await;
}

#[tokio::test]
async fn token_read_again_at_each_call() {
    let pki = Pki::new().unwrap();
    let stub = IdentityStub::plaintext(&pki, "first").await;
    let gw = start_gateway(
        pki,
        &stub,
        false,
        "first",
        "min_refresh = \"50ms\"\nmax_refresh = \"100ms\"\n",
    )
    .await;
    gw.until_ready().await;
    std::fs::write(gw.dir.path().join("token"), "second").unwrap();
    stub.set_token("second");
    for _ in 0..300 {
        if stub.tokens().iter().any(|t| t == "second") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tokens = stub.tokens();
    assert_eq!(tokens.first().map(String::as_str), Some("first"));
    assert!(tokens.iter().any(|t| t == "second"), "{tokens:?}");
    gw.shutdown().await;
}

#[test]
fn both_modes_or_neither_is_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "tls.crt", "tls.key", "token"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        "[identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n\
         name = \"gw.ns.serviceaccount.identity.linkerd.cluster.local\"\n\
         [identity.linkerd]\naddr = \"127.0.0.1:8080\"\ntoken_file = \"token\"\n",
    )
    .unwrap();
    let out = support::crossgate(&["check", "--config", both.to_str().unwrap()]);
    let stderr = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in ["identity.linkerd", "identity.certificate", "identity.key"] {
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
    let neither = dir.path().join("neither.toml");
    std::fs::write(&neither, "[identity]\ntrust_anchors = \"ca.crt\"\n").unwrap();
    let out = support::crossgate(&["run", "--config", neither.to_str().unwrap()]);
    let stderr = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("[identity.linkerd]"), "{stderr}");
}

#[test]
fn check_explains_linkerd_mode() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("token"), "t").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[identity]\ntrust_anchors = \"ca.crt\"\n\
         name = \"gw.ns.serviceaccount.identity.linkerd.cluster.local\"\n\
         [identity.linkerd]\naddr = \"linkerd-identity-headless.linkerd.svc.cluster.local.:8080\"\n\
         server_name = \"linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local\"\n\
         token_file = \"token\"\n",
    )
    .unwrap();
    let out = support::crossgate(&["check", "--config", config.to_str().unwrap()]);
    let stdout = support::text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out.stderr));
    assert!(stdout.contains("identity mode: linkerd"), "{stdout}");
    assert!(
        stdout.contains("TLS to linkerd-identity.linkerd"),
        "{stdout}"
    );
}
