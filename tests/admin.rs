//! The admin port: `/live`, `/ready`, `/metrics` in plaintext and over mTLS, each in HTTP/1.1
//! and HTTP/2; an mTLS client from another root refused; `/ready` failing while draining;
//! curl as a client that is not ours.

mod support;
use bytes::Bytes;
use crossgate::certs::Pki;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const TCPECHO: &str = "tcpecho.test.svc.cluster.local:9899";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Answer = (StatusCode, HeaderMap, Bytes);

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(3), body.collect())
        .await
        .expect("body within 3 s")
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// GETs each of `uris` on one HTTP/1.1 connection over `io`.
async fn get_h1<I>(io: I, uris: &[&str]) -> Vec<Answer>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for uri in uris {
        let req = Request::get(*uri)
            .header("host", "gateway")
            .body(Empty::new())
            .unwrap();
        out.push(collect(send.send_request(req).await.unwrap()).await);
    }
    out
}

/// GETs each of `uris` on one HTTP/2 connection over `io`.
async fn get_h2<I>(io: I, uris: &[&str]) -> Vec<Answer>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for uri in uris {
        let req = Request::get(*uri).body(Empty::new()).unwrap();
        out.push(collect(send.send_request(req).await.unwrap()).await);
    }
    out
}

/// Checks the answers to `/live`, `/ready`, `/metrics` in that order.
fn check_answers(how: &str, answers: &[Answer]) {
    let [live, ready, metrics] = answers else {
        panic!("{how}: {} answers", answers.len())
    };
    assert_eq!(live.0, StatusCode::OK, "{how} /live");
    assert_eq!(live.2, "live\n", "{how} /live");
    assert_eq!(ready.0, StatusCode::OK, "{how} /ready");
    assert_eq!(ready.2, "ready\n", "{how} /ready");
    assert_eq!(metrics.0, StatusCode::OK, "{how} /metrics");
    assert_eq!(
        metrics.1.get("content-type").map(|v| v.to_str().unwrap()),
        Some(OPENMETRICS),
        "{how} /metrics"
    );
    let text = String::from_utf8_lossy(&metrics.2);
    assert!(
        text.contains("identity_cert_expiration_timestamp_seconds"),
        "{how} /metrics:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{how} /metrics:\n{text}");
}

fn uris(scheme_authority: &str) -> [String; 3] {
    ["/live", "/ready", "/metrics"].map(|p| format!("{scheme_authority}{p}"))
}

#[tokio::test]
async fn plaintext_http1() {
    let gw = start("").await;
    let (status, _, body) = parse_response(&gw.admin_get("/live").await);
    assert_eq!((status, body.as_str()), (200, "live\n"));
    let (status, _, body) = parse_response(&gw.admin_get("/ready").await);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, head, body) = parse_response(&gw.admin_get("/metrics").await);
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("content-type: {OPENMETRICS}")),
        "{head}"
    );
    assert!(body.contains("identity_cert_expiration_timestamp_seconds"));
    // The gauge holds the gateway leaf's expiry: about 24 h from now.
    let expiry = gw
        .metric_value("identity_cert_expiration_timestamp_seconds")
        .await
        .expect("gauge present");
    let now = crossgate::identity::unix_now() as f64;
    assert!(
        (now + 23.0 * 3600.0..now + 25.0 * 3600.0).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    // Keep-alive HTTP/1.1 with hyper too.
    let tcp = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let u = uris("");
    let u: Vec<&str> = u.iter().map(String::as_str).collect();
    check_answers("plaintext h1", &get_h1(tcp, &u).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn plaintext_http2_prior_knowledge() {
    let gw = start("").await;
    let tcp = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let u = uris(&format!("http://{}", gw.admin));
    let u: Vec<&str> = u.iter().map(String::as_str).collect();
    check_answers("plaintext h2", &get_h2(tcp, &u).await);
    gw.shutdown().await;
}

/// A gateway whose authorization rules allow nobody on the gateway port: they must not apply
/// to the admin port.
async fn gateway_denying_everyone() -> TestGateway {
    start("[[authorization]]\nidentities = [\"nobody.example.org\"]\n").await
}

#[tokio::test]
async fn mtls_http1_with_sni_gateway_identity() {
    let gw = gateway_denying_everyone().await;
    let tls = crossgate::tls::connect(gw.admin, gw.client(FRONTEND, &[b"http/1.1"]), GATEWAY)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let u = uris("");
    let u: Vec<&str> = u.iter().map(String::as_str).collect();
    check_answers("mTLS h1", &get_h1(tls, &u).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_http2() {
    let gw = gateway_denying_everyone().await;
    let tls = crossgate::tls::connect(gw.admin, gw.client(FRONTEND, &[b"h2"]), GATEWAY)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let u = uris(&format!("https://{GATEWAY}"));
    let u: Vec<&str> = u.iter().map(String::as_str).collect();
    check_answers("mTLS h2", &get_h2(tls, &u).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_client_from_another_root_is_refused() {
    let gw = start("handshake_timeout = \"300ms\"\n").await;
    let intruder = Pki::new().unwrap().leaf(FRONTEND).unwrap();
    let config = gw.client_with_leaf(&intruder, &[b"http/1.1"]);
    // TLS 1.3: the client side may complete before the server refuses the certificate.
    if let Ok(mut tls) = crossgate::tls::connect(gw.admin, config, GATEWAY).await {
        let _ = tls
            .write_all(b"GET /ready HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n")
            .await;
        let _ = tls.flush().await;
        assert_closed_without_bytes(&mut tls).await;
    }
    // And without any client certificate.
    let config = no_client_auth(&gw.pki.anchor_pem(), &[b"http/1.1"]);
    if let Ok(mut tls) = crossgate::tls::connect(gw.admin, config, GATEWAY).await {
        let _ = tls
            .write_all(b"GET /ready HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n")
            .await;
        let _ = tls.flush().await;
        assert_closed_without_bytes(&mut tls).await;
    }
    // The port still serves a client of ours.
    let tls = crossgate::tls::connect(gw.admin, gw.client(FRONTEND, &[b"http/1.1"]), GATEWAY)
        .await
        .unwrap();
    let answers = get_h1(tls, &["/ready"]).await;
    assert_eq!(answers[0].0, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn ready_answers_503_while_draining() {
    let (echo, accepted) = echo_backend().await;
    let mut gw = start(&format!(
        "drain_timeout = \"5s\"\n{}",
        static_route(TCPECHO, echo)
    ))
    .await;
    // A long-lived opaque stream keeps the gateway draining.
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&vector("opaque.hex")).await.unwrap();
    tls.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(3), tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"before");

    gw.begin_shutdown();
    let deadline = Instant::now() + Duration::from_secs(3);
    let answer = loop {
        match try_http_get(gw.admin, "/ready").await {
            Ok(r) if parse_response(&r).0 == 200 => {
                assert!(Instant::now() < deadline, "still ready 3 s after shutdown");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(r) => break r,
            Err(e) => panic!("admin port does not answer /ready while draining: {e}"),
        }
    };
    let (status, _, body) = parse_response(&answer);
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    // Still live, and still answering more than once while the stream is open.
    let (status, _, body) = parse_response(&try_http_get(gw.admin, "/live").await.unwrap());
    assert_eq!((status, body.as_str()), (200, "live\n"));
    let (status, _, _) = parse_response(&try_http_get(gw.admin, "/ready").await.unwrap());
    assert_eq!(status, 503);

    // The open stream keeps working during the drain.
    tls.write_all(b"during").await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"during");
    // Once it closes the drain completes, long before drain_timeout.
    tls.shutdown().await.unwrap();
    assert_eq!(
        read_until_closed(&mut tls, Duration::from_secs(3)).await,
        Some(vec![])
    );
    assert!(
        gw.wait_stopped(Duration::from_secs(3)).await,
        "gateway still draining after its last connection closed"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gateway_port_stops_accepting_while_draining() {
    let (echo, _) = echo_backend().await;
    let mut gw = start(&format!(
        "drain_timeout = \"5s\"\nhandshake_timeout = \"300ms\"\n{}",
        static_route(TCPECHO, echo)
    ))
    .await;
    let mut held = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    held.write_all(&vector("opaque.hex")).await.unwrap();
    held.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    held.read_exact(&mut one).await.unwrap();
    gw.begin_shutdown();
    // New connections are not served once the drain began (poll: the stop is asynchronous).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY),
        )
        .await;
        match attempt {
            Ok(Ok(_)) => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting 3 s after shutdown"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    held.shutdown().await.unwrap();
    assert!(gw.wait_stopped(Duration::from_secs(3)).await);
}

/// Runs curl with `args`; (exit success, stdout).
async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finished")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn curl_plaintext_and_mtls() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed: skipped");
        return;
    }
    let gw = start("").await;
    let ready = format!("http://{}/ready", gw.admin);
    assert_eq!(
        curl(&[&ready]).await,
        (true, "ready\n".to_string()),
        "curl {ready}"
    );
    let (ok, out) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "%{http_code} %{http_version}",
        &format!("http://{}/live", gw.admin),
    ])
    .await;
    assert!(ok);
    assert_eq!(out, "live\n200 2");
    // mTLS as the service-mirror's proxy does it: SNI and verified name = gateway identity.
    let files = gw.write_client_files("probe", &gw.pki.leaf(FRONTEND).unwrap());
    let resolve = format!("{GATEWAY}:{}:127.0.0.1", gw.admin.port());
    let (ca, cert, key) = (
        files.ca.display().to_string(),
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let url = format!("https://{GATEWAY}:{}/ready", gw.admin.port());
    for version in ["--http1.1", "--http2"] {
        let (ok, out) = curl(&[
            "--tlsv1.3",
            version,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--resolve",
            &resolve,
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ])
        .await;
        assert!(ok, "curl {version} failed: {out}");
        let want = if version == "--http2" { "2" } else { "1.1" };
        assert_eq!(out, format!("ready\n200 {want}"), "curl {version}");
    }
    // Without a client certificate the handshake is refused.
    let (ok, out) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]).await;
    assert!(!ok, "served without a client certificate: {out}");
    gw.shutdown().await;
}

/// The value of the sample line `name value` in `metrics`.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_carry_the_process_family() {
    let gw = start("").await;
    let m = gw.metrics().await;
    let now = crossgate::identity::unix_now() as f64;
    let cpu = sample(&m, "process_cpu_seconds_total");
    assert!((0.0..100_000.0).contains(&cpu), "{cpu}");
    let rss = sample(&m, "process_resident_memory_bytes");
    assert!(rss > 1024.0 * 1024.0, "{rss}");
    let open = sample(&m, "process_open_fds");
    let max = sample(&m, "process_max_fds");
    assert!(open >= 3.0 && open <= max, "{open} of {max}");
    let start_time = sample(&m, "process_start_time_seconds");
    assert!(
        start_time <= now + 1.0 && start_time > now - 86_400.0,
        "{start_time} vs {now}"
    );
    assert!(m.contains("# TYPE process_cpu_seconds counter"), "{m}");
    gw.shutdown().await;
}
