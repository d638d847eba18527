//! `[server] metrics = "ADDR"`: `/metrics` moves to a private plaintext port and the public
//! admin port answers only `/live` and `/ready` (404 on `/metrics`), so a LoadBalancer in front
//! of the admin port never exposes metrics. Without it, the admin port serves `/metrics`.
//! Both carry `crossgate_build_info{version}`.

mod support;
use support::*;

const BUILD_INFO: &str = concat!(
    "crossgate_build_info{version=\"",
    env!("CARGO_PKG_VERSION"),
    "\"} 1"
);

#[tokio::test]
async fn metrics_on_the_private_port_only() {
    let gw = start("metrics = \"127.0.0.1:0\"").await;
    let private = gw.metrics_addr.expect("metrics port bound");
    assert_ne!(private, gw.admin);

    let (status, _, body) = parse_response(&gw.admin_get("/live").await);
    assert_eq!((status, body.as_str()), (200, "live\n"));
    let (status, _, body) = parse_response(&gw.admin_get("/ready").await);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _, body) = parse_response(&gw.admin_get("/metrics").await);
    assert_eq!(status, 404, "admin port still serves /metrics: {body}");
    assert!(!body.contains("crossgate_build_info"));

    let (status, head, body) = parse_response(&http_get(private, "/metrics").await);
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.lines().any(|l| l == BUILD_INFO), "{body}");
    assert!(body.contains("identity_cert_expiration_timestamp_seconds"));
    gw.shutdown().await;
}

#[tokio::test]
async fn metrics_on_the_admin_port_by_default() {
    let gw = start("").await;
    assert_eq!(gw.metrics_addr, None);
    let (status, _, body) = parse_response(&gw.admin_get("/metrics").await);
    assert_eq!(status, 200);
    assert!(body.lines().any(|l| l == BUILD_INFO), "{body}");
    gw.shutdown().await;
}
