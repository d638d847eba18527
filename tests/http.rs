//! HTTP through the gateway with the bytes a real Linkerd source proxy sends (the captured
//! transport headers, HTTP/2 in absolute form, HTTP/1.1 without `Host`), Linkerd's header
//! semantics (`l5d-client-id`, `Forwarded`, `l5d-orig-proto`, `Host`), loop detection, plain
//! HTTP mode driven by curl, and the per-request metrics.

mod http_support;
mod support;

use http::{Method, Version};
use http_support::*;
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, TestGateway, start, vector};
use tokio::io::AsyncWriteExt;

const H2_URI: &str = "http://podinfo.test.svc.cluster.local:9898";

/// A gateway routing both captured targets to `backend`. `server_keys` go into `[server]`,
/// `tables` after `[routing.static]`.
async fn gateway(backend: &Backend, server_keys: &str, tables: &str) -> TestGateway {
    let routes = static_routes(&[(PODINFO, backend.addr), (PODINFO_H1, backend.addr)]);
    start(&format!("{server_keys}\n{routes}{tables}")).await
}

#[tokio::test]
async fn h2_hint_absolute_form_reaches_backend_as_http2_on_one_connection() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    for i in 0..3 {
        let case = format!("h2-hint-{i}");
        let a = send_h2(
            &mut h2,
            get(
                &format!("{H2_URI}/case/h2-hint"),
                &[
                    ("x-case", &case),
                    ("user-agent", "curl/7.88.1"),
                    ("accept", "*/*"),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.text(), "ok");
        assert!(a.header("l5d-proxy-error").is_none(), "{a:?}");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.version, Version::HTTP_2, "{s:?}");
        assert_eq!(s.uri.to_string(), format!("{H2_URI}/case/h2-hint"));
        assert_eq!(s.all("x-case"), [format!("h2-hint-{i}")]);
        assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
        assert_eq!(s.all("forwarded"), [forwarded(FRONTEND, PODINFO)]);
        assert!(
            s.all("host").is_empty(),
            "HTTP/2 upstream got a host: {s:?}"
        );
        assert!(s.all("l5d-orig-proto").is_empty(), "{s:?}");
    }
    // The three requests came on one client connection and went upstream on one pooled one.
    let m = gw.metrics().await;
    let line = format!(
        "inbound_tcp_transport_header_connections_total{{session_protocol=\"http/2\",target_port=\"9898\",target_name=\"podinfo.test.svc.cluster.local\",client_id=\"{FRONTEND}\"}} 1"
    );
    assert!(m.lines().any(|l| l == line), "missing {line}\n{m}");
    let open = format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\"}} 1"
    );
    assert!(m.lines().any(|l| l == open), "missing {open}\n{m}");
    assert_eq!(backend.connections(), 1, "upstream connection not reused");
    gw.shutdown().await;
}

#[tokio::test]
async fn orig_proto_goes_upstream_as_http1_with_host_and_is_echoed() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(
        &mut h2,
        get(
            &format!("{H2_URI}/case/h1-upgraded"),
            &[("l5d-orig-proto", "HTTP/1.1"), ("x-case", "h1-upgraded")],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("l5d-orig-proto"), Some("HTTP/1.1"), "{a:?}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_11, "{s:?}");
    assert_eq!(s.uri.to_string(), "/case/h1-upgraded");
    assert_eq!(s.all("host"), [PODINFO]);
    assert!(s.all("l5d-orig-proto").is_empty(), "{s:?}");
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    assert_eq!(s.all("forwarded"), [forwarded(FRONTEND, PODINFO)]);
    assert_eq!(s.all("x-case"), ["h1-upgraded"]);
    // A plain HTTP/2 request on the same connection still goes upstream as HTTP/2.
    let a = send_h2(&mut h2, get(&format!("{H2_URI}/again"), &[])).await;
    assert_eq!(a.status, 200);
    assert!(a.header("l5d-orig-proto").is_none(), "{a:?}");
    assert_eq!(backend.last().version, Version::HTTP_2);
    gw.shutdown().await;
}

#[tokio::test]
async fn orig_proto_http10_goes_upstream_as_http10() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(
        &mut h2,
        get(
            &format!("{H2_URI}/case/h10"),
            &[("l5d-orig-proto", "HTTP/1.0")],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("l5d-orig-proto"), Some("HTTP/1.0"), "{a:?}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_10, "{s:?}");
    assert_eq!(s.all("host"), [PODINFO]);
    assert!(s.all("l5d-orig-proto").is_empty(), "{s:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn plain_mode_without_alpn_is_sniffed() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    // HTTP/2 prior knowledge.
    let a = plain_h2(
        gw.addr,
        gw.client(FRONTEND, &[]),
        get(&format!("{H2_URI}/sniffed-h2"), &[]),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(backend.last().version, Version::HTTP_2);
    // HTTP/1.1.
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, &[]), None).await;
    let mut h1 = h1_client(tls).await;
    let a = send_h1(&mut h1, get("/sniffed-h1", &[("host", PODINFO)])).await;
    assert_eq!(a.status, 200, "{a:?}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.uri.path(), "/sniffed-h1");
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    gw.shutdown().await;
}

#[tokio::test]
async fn h1_nohint_without_host_gets_host_from_the_header() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let mut tls = connect_tls(
        gw.addr,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&vector("h1-nohint.hex")),
    )
    .await;
    // Exactly the shape linkerd2-proxy sent: no Host header.
    tls.write_all(
        b"GET /case/h1-nohint HTTP/1.1\r\nx-case: h1-nohint\r\nuser-agent: curl/7.88.1\r\naccept: */*\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(read_body(&mut tls, &head).await, b"ok");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.uri.to_string(), "/case/h1-nohint");
    assert_eq!(s.all("host"), [PODINFO_H1]);
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    assert_eq!(s.all("forwarded"), [forwarded(FRONTEND, PODINFO_H1)]);
    assert_eq!(s.all("x-case"), ["h1-nohint"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn forged_client_id_is_replaced_by_the_real_identity() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    // Transport header, HTTP/2, two forged values.
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(
        &mut h2,
        get(
            &format!("{H2_URI}/forged"),
            &[("l5d-client-id", "evil"), ("l5d-client-id", "evil2")],
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(backend.last().all("l5d-client-id"), [FRONTEND]);
    // Plain HTTP mode, HTTP/1.1.
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H1), None).await;
    let mut h1 = h1_client(tls).await;
    let a = send_h1(
        &mut h1,
        get(
            "/forged-h1",
            &[("host", PODINFO), ("l5d-client-id", "evil")],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let s = backend.last();
    assert_eq!(s.uri.path(), "/forged-h1");
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    gw.shutdown().await;
}

/// curl's PEM files for FRONTEND under `gw`'s anchor, in a new temporary directory.
fn curl_files(gw: &TestGateway) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let leaf = gw.pki.leaf(FRONTEND).unwrap();
    std::fs::write(dir.path().join("ca.crt"), gw.pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &leaf.key_pem).unwrap();
    dir
}

/// Runs curl against the gateway (as its identity, resolved to 127.0.0.1); its stdout.
async fn curl(gw: &TestGateway, dir: &tempfile::TempDir, args: &[&str]) -> String {
    let port = gw.addr.port();
    let out = within(
        20,
        "curl",
        tokio::process::Command::new("/usr/bin/curl")
            .current_dir(dir.path())
            .args(["-sS", "--max-time", "10"])
            .args(["--cert", "client.crt", "--key", "client.key"])
            .args(["--cacert", "ca.crt"])
            .args(["--resolve", &format!("{GATEWAY}:{port}:127.0.0.1")])
            .args(["-D", "-"])
            .args(args)
            .arg(format!("https://{GATEWAY}:{port}/x"))
            .output(),
    )
    .await
    .expect("running /usr/bin/curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn curl_plain_mode_with_dst_canonical_in_http1_and_http2() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let dir = curl_files(&gw);
    let canonical = format!("l5d-dst-canonical: {PODINFO}");

    let out = curl(&gw, &dir, &["--http1.1", "-H", &canonical]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok"), "{out}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.uri.path(), "/x");
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    assert_eq!(s.all("host"), [PODINFO]);
    assert_eq!(s.all("forwarded"), [forwarded(FRONTEND, PODINFO)]);

    let out = curl(&gw, &dir, &["--http2", "-H", &canonical]).await;
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.ends_with("ok"), "{out}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_2);
    assert_eq!(s.uri.path(), "/x");
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    assert_eq!(s.all("forwarded"), [forwarded(FRONTEND, PODINFO)]);
    assert_eq!(backend.count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn curl_plain_mode_target_from_host() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let dir = curl_files(&gw);
    let out = curl(&gw, &dir, &["--http1.1", "-H", &format!("Host: {PODINFO}")]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_11);
    assert_eq!(s.all("host"), [PODINFO]);
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    assert_eq!(backend.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn per_request_metrics_and_classification() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "", "").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let labels = request_labels(FRONTEND, PODINFO);
    const N: usize = 5;
    for _ in 0..N {
        let a = send_h2(&mut h2, get(&format!("{H2_URI}/"), &[])).await;
        assert_eq!(a.status, 200);
    }
    gw.wait_metric(&format!("request_total{{{labels}}} {N}"))
        .await;
    let ok = format!("{labels},status_code=\"200\",classification=\"success\"");
    gw.wait_metric(&format!("response_total{{{ok}}} {N}")).await;
    let m = gw.metrics().await;
    for line in [
        format!("response_latency_ms_count{{{ok}}} {N}"),
        format!("response_latency_ms_bucket{{le=\"+Inf\",{ok}}} {N}"),
        format!("response_latency_ms_bucket{{le=\"50000.0\",{ok}}} {N}"),
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line}\n{m}");
    }
    // Linkerd's buckets, all of them.
    let buckets: Vec<&str> = lines_with(&m, "response_latency_ms_bucket{le=")
        .into_iter()
        .filter(|l| l.contains(&ok))
        .collect();
    assert_eq!(buckets.len(), 26, "{buckets:#?}");

    // A 5xx from the backend is a failure.
    let a = send_h2(&mut h2, get(&format!("{H2_URI}/fail"), &[])).await;
    assert_eq!(a.status, 500);
    assert!(a.header("l5d-proxy-error").is_none(), "{a:?}");
    gw.wait_metric(&format!(
        "response_total{{{labels},status_code=\"500\",classification=\"failure\"}} 1"
    ))
    .await;

    // gRPC: the status is in the trailers.
    let grpc = |path: &str| {
        request(
            Method::POST,
            &format!("{H2_URI}{path}"),
            &[("content-type", "application/grpc"), ("te", "trailers")],
            full(&b"\0\0\0\0\0"[..]),
        )
    };
    let a = send_h2(&mut h2, grpc("/grpc-error")).await;
    assert_eq!(a.status, 200);
    let trailers = a.trailers.clone().expect("gRPC trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "2");
    gw.wait_metric(&format!(
        "response_total{{{labels},status_code=\"200\",classification=\"failure\"}} 1"
    ))
    .await;
    let a = send_h2(&mut h2, grpc("/trailers")).await;
    assert_eq!(
        a.trailers
            .expect("gRPC trailers")
            .get("grpc-status")
            .unwrap(),
        "0"
    );
    gw.wait_metric(&format!("response_total{{{ok}}} {}", N + 1))
        .await;
    gw.wait_metric(&format!("request_total{{{labels}}} {}", N + 3))
        .await;
    // The failure stayed one.
    let m = gw.metrics().await;
    let failure =
        format!("response_total{{{labels},status_code=\"200\",classification=\"failure\"}} 1");
    assert!(m.lines().any(|l| l == failure), "{m}");
    gw.shutdown().await;
}
