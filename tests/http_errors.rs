//! The gateway's own HTTP answers (DESIGN.md, "Refusals: one table, one function"): status,
//! `l5d-proxy-error`, the metric, and that nothing reached the backend; and the same refusals
//! to gRPC clients as HTTP 200 with `grpc-status` and `grpc-message`. Loops: by `Forwarded`,
//! by the client's identity in plain HTTP mode (508) and in transport mode (closed).

mod http_support;
mod support;

use http::Method;
use http_support::*;
use std::time::{Duration, Instant};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, TestGateway, start, vector};
use tokio::io::AsyncWriteExt;

const INTRUDER: &str = "intruder.east.serviceaccount.identity.linkerd.cluster.local";
const CLOSED: &str = "closed.test.svc.cluster.local:80";
/// In the cluster domain, so routed, but outside the authorization rule's services.
const SECRET: &str = "http://secret.other.svc.cluster.local:80";
const PODINFO_URI: &str = "http://podinfo.test.svc.cluster.local:9898";

/// A gateway with `podinfo` on `backend`, `closed` on a port nobody listens on (failing fast
/// after 150 ms, below the 300 ms response timeouts of some tests), and one rule: FRONTEND
/// may reach `*.test.svc.cluster.local`.
async fn refusing_gateway(backend: &Backend, server_keys: &str) -> TestGateway {
    let routes = static_routes(&[(PODINFO, backend.addr), (CLOSED, closed_port())]);
    start(&format!(
        "{server_keys}\n{routes}[discovery]\nfailfast_timeout = \"150ms\"\n\
         [[authorization]]\nidentities = [\"{FRONTEND}\"]\nservices = [\"*.test.svc.cluster.local\"]\n"
    ))
    .await
}

fn assert_refused(a: &Answer, status: u16, proxy_error: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("l5d-proxy-error"), Some(proxy_error), "{a:?}");
}

#[tokio::test]
async fn bad_gateway_domain_for_outside_names_and_ip_literals() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H1), None).await;
    let mut h1 = h1_client(tls).await;
    let a = send_h1(&mut h1, get("/x", &[("host", "example.com")])).await;
    assert_refused(&a, 404, "bad gateway domain");
    // Even the backend's own address: the gateway is never an open proxy.
    let ip = backend.addr.to_string();
    let a = send_h1(&mut h1, get("/x", &[("host", &ip)])).await;
    assert_refused(&a, 404, "bad gateway domain");
    // And by l5d-dst-canonical over HTTP/2.
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(
            &format!("{PODINFO_URI}/x"),
            &[(
                "l5d-dst-canonical",
                "kubernetes.default.svc.example.org:443",
            )],
        ),
    )
    .await;
    assert_refused(&a, 404, "bad gateway domain");
    gw.wait_metric(&http_error_line("gateway domain invalid", 3))
        .await;
    assert_eq!(backend.count(), 0, "a refused request reached the backend");
    assert_eq!(backend.connections(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn unauthorized_identity_or_service_is_403() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    // An identity the rule does not name.
    let a = plain_h2(
        gw.addr,
        gw.client(INTRUDER, ALPN_H2),
        get(&format!("{PODINFO_URI}/x"), &[]),
    )
    .await;
    assert_refused(&a, 403, "unauthorized");
    // A service the rule does not name.
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("{SECRET}/x"), &[]),
    )
    .await;
    assert_refused(&a, 403, "unauthorized");
    gw.wait_metric(&format!(
        "inbound_http_authz_deny_total{{client_id=\"{INTRUDER}\",authority=\"{PODINFO}\"}} 1"
    ))
    .await;
    // A service that was never reached is not a label of its own (a client could invent
    // any number of them): its denials are counted under `other`.
    gw.wait_metric(&format!(
        "inbound_http_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"other\"}} 1"
    ))
    .await;
    let m = gw.metrics().await;
    assert!(
        lines_with(&m, "inbound_http_errors_total{").is_empty(),
        "authorization denials are counted in the authz families only\n{m}"
    );
    assert_eq!(backend.count(), 0, "a refused request reached the backend");
    // The allowed pair still passes.
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("{PODINFO_URI}/x"), &[]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    gw.shutdown().await;
}

/// A target whose only endpoint refuses connections has no ready endpoint: requests wait
/// `failfast_timeout` for one, then fail fast with 504, as Linkerd's gateway answers.
#[tokio::test]
async fn closed_upstream_fails_fast() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("http://{CLOSED}/x"), &[]),
    )
    .await;
    assert_refused(&a, 504, "service in fail-fast");
    gw.wait_metric(&http_error_line("failfast", 1)).await;
    gw.wait_metric(&format!(
        "response_total{{{},status_code=\"504\",classification=\"failure\"}} 1",
        request_labels(FRONTEND, CLOSED)
    ))
    .await;
    gw.wait_metric(&format!(
        "outbound_http_balancer_endpoints{{authority=\"{CLOSED}\",endpoint_state=\"pending\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504_at_the_response_timeout() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "response_timeout = \"300ms\"").await;
    let started = Instant::now();
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("{PODINFO_URI}/slow"), &[]),
    )
    .await;
    let took = started.elapsed();
    assert_refused(&a, 504, "response timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "answered after {took:?}, the timeout is 300ms and the backend takes 2 s"
    );
    gw.wait_metric(&http_error_line("response timeout", 1))
        .await;
    assert_eq!(backend.count(), 1);
    // Fast requests are not affected.
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("{PODINFO_URI}/fast"), &[]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    gw.shutdown().await;
}

/// A gateway with `max_in_flight = 1`, its one permit held by a `/slow` request (2 s) that
/// the backend has received; an HTTP/2 connection for more requests.
async fn one_slow_request_in_flight() -> (
    Backend,
    TestGateway,
    hyper::client::conn::http2::SendRequest<ReqBody>,
    tokio::task::JoinHandle<Answer>,
) {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "max_in_flight = 1").await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H2), None).await;
    let h2 = h2_client(tls).await;
    let mut slow_h2 = h2.clone();
    let slow = tokio::spawn(async move {
        send_h2(&mut slow_h2, get(&format!("{PODINFO_URI}/slow"), &[])).await
    });
    backend.wait_count(1, 5).await;
    (backend, gw, h2, slow)
}

#[tokio::test]
async fn in_flight_limit_sheds_load_with_503() {
    let (backend, gw, mut h2, slow) = one_slow_request_in_flight().await;
    let a = send_h2(&mut h2, get(&format!("{PODINFO_URI}/shed"), &[])).await;
    assert_refused(&a, 503, "loadshed");
    let a = send_h2(
        &mut h2,
        request(
            Method::POST,
            &format!("{PODINFO_URI}/pkg.Svc/Shed"),
            &[("content-type", "application/grpc"), ("te", "trailers")],
            empty(),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("grpc-status"), Some("14"), "{a:?}");
    assert_eq!(a.header("l5d-proxy-error"), Some("loadshed"), "{a:?}");
    gw.wait_metric(&http_error_line("loadshed", 2)).await;
    assert_eq!(backend.count(), 1, "a shed request reached the backend");
    let a = within(10, "the slow request", slow).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    // The permit came back: the next request passes.
    let a = send_h2(&mut h2, get(&format!("{PODINFO_URI}/after"), &[])).await;
    assert_eq!(a.status, 200, "{a:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn grpc_clients_get_grpc_status_for_every_refusal() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "response_timeout = \"300ms\"").await;
    let loop_forwarded = format!("by={GATEWAY};for=x");
    let loop_header = [("forwarded", loop_forwarded.as_str())];
    // (refusal, URI, extra request headers, grpc-status, grpc-message prefix)
    let cases = [
        (
            "403",
            format!("{SECRET}/pkg.Svc/M"),
            &[][..],
            "7",
            "unauthorized",
        ),
        (
            "404",
            "http://example.com/pkg.Svc/M".into(),
            &[],
            "5",
            "bad gateway domain",
        ),
        (
            "504 fail-fast",
            format!("http://{CLOSED}/pkg.Svc/M"),
            &[],
            "4",
            "service in fail-fast",
        ),
        (
            "504",
            format!("{PODINFO_URI}/slow"),
            &[],
            "4",
            "response timeout",
        ),
        (
            "508",
            format!("{PODINFO_URI}/pkg.Svc/M"),
            &loop_header,
            "10",
            "gateway loop detected",
        ),
    ];
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H2), None).await;
    let mut h2 = h2_client(tls).await;
    for (case, uri, extra, grpc_status, message) in cases {
        let mut headers = vec![("content-type", "application/grpc"), ("te", "trailers")];
        headers.extend_from_slice(extra);
        let a = send_h2(
            &mut h2,
            request(Method::POST, &uri, &headers, full(&b"\0\0\0\0\0"[..])),
        )
        .await;
        assert_eq!(a.status, 200, "{case}: {a:?}");
        assert_eq!(
            a.header("content-type"),
            Some("application/grpc"),
            "{case}: {a:?}"
        );
        assert_eq!(a.header("grpc-status"), Some(grpc_status), "{case}: {a:?}");
        let got = a.header("grpc-message").unwrap_or_default();
        assert!(got.starts_with(message), "{case}: {a:?}");
        let proxy_error = a.header("l5d-proxy-error").unwrap_or_default();
        assert!(proxy_error.starts_with(message), "{case}: {a:?}");
    }
    let m = gw.metrics().await;
    for error in [
        "gateway domain invalid",
        "failfast",
        "response timeout",
        "gateway loop",
    ] {
        let line = http_error_line(error, 1);
        assert!(m.lines().any(|l| l == line), "missing {line}\n{m}");
    }
    let deny =
        format!("inbound_http_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"other\"}} 1");
    assert!(m.lines().any(|l| l == deny), "missing {deny}\n{m}");
    // Only the timed-out request reached the backend.
    let seen = backend.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].uri.path(), "/slow");
    gw.shutdown().await;
}

#[tokio::test]
async fn shed_requests_are_counted_as_requests() {
    let (_backend, gw, mut h2, slow) = one_slow_request_in_flight().await;
    let a = send_h2(&mut h2, get(&format!("{PODINFO_URI}/shed"), &[])).await;
    assert_refused(&a, 503, "loadshed");
    assert_eq!(
        within(10, "the slow request", slow).await.unwrap().status,
        200
    );
    let labels = request_labels(FRONTEND, PODINFO);
    gw.wait_metric(&format!(
        "response_total{{{labels},status_code=\"503\",classification=\"failure\"}} 1"
    ))
    .await;
    gw.wait_metric(&format!(
        "response_total{{{labels},status_code=\"200\",classification=\"success\"}} 1"
    ))
    .await;
    // Two responses were counted: two requests were received.
    gw.wait_metric(&format!("request_total{{{labels}}} 2"))
        .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_by_own_identity_is_a_loop_and_others_are_appended() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(
        &mut h2,
        get(
            &format!("{PODINFO_URI}/loop"),
            &[(
                "forwarded",
                &format!("for=10.0.0.1;by={GATEWAY};proto=https"),
            )],
        ),
    )
    .await;
    assert_eq!(a.status, 508, "{a:?}");
    assert_eq!(a.header("l5d-proxy-error"), Some("gateway loop detected"));
    gw.wait_metric(&http_error_line("gateway loop", 1)).await;
    assert_eq!(backend.count(), 0, "a loop reached the backend");
    // Another gateway's element is kept and ours appended after it.
    let other = "by=other-gateway.example;for=a.b;host=x.y.svc.cluster.local:80;proto=https";
    let a = send_h2(
        &mut h2,
        get(
            &format!("{PODINFO_URI}/not-a-loop"),
            &[("forwarded", other)],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let s = backend.last();
    let all = s.all("forwarded").join(", ");
    assert_eq!(all, format!("{other}, {}", forwarded(FRONTEND, PODINFO)));
    gw.shutdown().await;
}

#[tokio::test]
async fn plain_client_with_the_gateway_identity_is_a_loop() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    let a = plain_h2(
        gw.addr,
        gw.client(GATEWAY, ALPN_H2),
        get(&format!("{PODINFO_URI}/loop"), &[]),
    )
    .await;
    assert_eq!(a.status, 508, "{a:?}");
    assert_eq!(a.header("l5d-proxy-error"), Some("gateway loop detected"));
    gw.wait_metric(&http_error_line("gateway loop", 1)).await;
    assert_eq!(backend.count(), 0, "a loop reached the backend");
    gw.shutdown().await;
}

#[tokio::test]
async fn transport_client_with_the_gateway_identity_is_closed() {
    let backend = Backend::start().await;
    let gw = refusing_gateway(&backend, "").await;
    let mut tls = connect_tls(
        gw.addr,
        gw.client(GATEWAY, ALPN_TRANSPORT),
        Some(&vector("h2-hint.hex")),
    )
    .await;
    // An HTTP/2 preface that must never be answered.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    match closed_within(&mut tls, 3).await {
        Some(bytes) => assert!(bytes.is_empty(), "gateway answered {} bytes", bytes.len()),
        None => panic!("the gateway kept a looping connection open"),
    }
    gw.wait_metric("inbound_tcp_errors_total{error=\"gateway loop\"} 1")
        .await;
    assert_eq!(backend.count(), 0);
    assert_eq!(backend.connections(), 0);
    gw.shutdown().await;
}

/// Reads until the peer closes (EOF or error) within `secs`: `Some(bytes read)` when it closed,
/// `None` when it was still open.
async fn closed_within<R: tokio::io::AsyncRead + Unpin>(r: &mut R, secs: u64) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|_| out)
}
