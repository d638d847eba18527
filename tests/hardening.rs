//! What a hostile or broken client can do to the gateway, by class: a malformed request body
//! is the client's error (400, counted as `client`), never the backend's; a client refused at
//! the handshake reads its alert instead of a reset, however much it sent after its Finished.

mod http_support;
mod support;

use crossgate::certs::LeafSpec;
use http_support::{
    ALPN_H1, ALPN_H2, Backend, connect_tls, full, h2_client, request, send_h2, static_routes,
};
use std::sync::Arc;
use std::time::Duration;
use support::{FRONTEND, GATEWAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web.demo.svc.cluster.local:8080";

#[tokio::test]
async fn malformed_bodies_are_the_clients_error_not_the_backends() {
    let backend = Backend::start().await;
    let gw = support::start(&static_routes(&[(WEB, backend.addr)])).await;
    // Each a class of broken framing: a chunk size that is not hex, a chunk longer than
    // announced, a chunk size that overflows.
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n",
        "2\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nx\r\n",
    ];
    for body in bodies {
        let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, ALPN_H1), GATEWAY)
            .await
            .unwrap();
        let req = format!(
            "POST /upload HTTP/1.1\r\nhost: {WEB}\r\ntransfer-encoding: chunked\r\n\r\n{body}"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let answer = String::from_utf8_lossy(&support::read_all(&mut tls).await).to_string();
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
        assert!(answer.contains("l5d-proxy-error: client: "), "{answer}");
    }
    gw.wait_metric("inbound_http_errors_total{error=\"client\"} 3")
        .await;
    assert_backend_not_blamed(&gw.metrics().await);
    gw.shutdown().await;
}

/// The same over HTTP/2, whose upstream is an HTTP/2 connection the gateway drives itself: a
/// body shorter than its `content-length` resets the client's stream (the request is
/// abandoned, not answered), the backend is not blamed, and both the client's connection and
/// the upstream one go on serving.
#[tokio::test]
async fn a_malformed_http2_body_is_not_the_backends_error() {
    let backend = Backend::start().await;
    let gw = support::start(&static_routes(&[(WEB, backend.addr)])).await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H2), None).await;
    let mut h2 = h2_client(tls).await;
    let uri = format!("http://{WEB}/echo");
    let short = request(
        http::Method::POST,
        &uri,
        &[("content-length", "10")],
        full("hello"),
    );
    let answered = tokio::time::timeout(Duration::from_secs(10), h2.send_request(short))
        .await
        .expect("the stream ends within 10 s");
    assert!(answered.is_err(), "a short body was answered: {answered:?}");
    // The connection still serves, through the same upstream connection.
    let whole = request(
        http::Method::POST,
        &uri,
        &[("content-length", "5")],
        full("hello"),
    );
    let a = send_h2(&mut h2, whole).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.text(), "hello");
    assert_eq!(
        backend.connections(),
        1,
        "the cut stream cost the upstream connection"
    );
    assert_backend_not_blamed(&gw.metrics().await);
    gw.shutdown().await;
}

/// Neither as the backend's i/o error nor against its success rate: a client's error.
fn assert_backend_not_blamed(metrics: &str) {
    assert!(
        !metrics.contains("inbound_http_errors_total{error=\"i/o\"}"),
        "a client's error was counted as the backend's:\n{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("response_total{") && l.contains("classification=\"failure\"")),
        "a client's error counted against the backend's success rate:\n{metrics}"
    );
}

/// The alert a refused client reads: `Some(description)` when it got one, `None` for a reset
/// or a bare close.
async fn alert_after_request(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<String> {
    // TLS 1.3: the client finishes its side before the server judges its certificate.
    let mut tls = match crossgate::tls::connect(addr, config, GATEWAY).await {
        Ok(tls) => tls,
        Err(e) => return alert_of(&e),
    };
    // A request in the same flight as the Finished, as curl sends it.
    let _ = tls
        .write_all(b"GET / HTTP/1.1\r\nhost: web.demo.svc.cluster.local\r\n\r\n")
        .await;
    let _ = tls.flush().await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Err(e)) => alert_of(&e),
        _ => None,
    }
}

fn alert_of(e: &std::io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::AlertReceived(a) => Some(format!("{a:?}")),
        _ => None,
    }
}

#[tokio::test]
async fn refused_clients_read_their_alert() {
    let gw = support::start("").await;
    let now = time::OffsetDateTime::now_utc();
    let mut spec = LeafSpec::identity(FRONTEND);
    spec.not_before = now - time::Duration::hours(25);
    spec.not_after = now - time::Duration::hours(1);
    let expired = support::leaf_with(&gw.pki, spec);
    let intruder = crossgate::certs::Pki::new()
        .unwrap()
        .leaf(FRONTEND)
        .unwrap();
    let cases = [
        (gw.client_with_leaf(&expired, ALPN_H1), "CertificateExpired"),
        (
            support::client_config(&gw.pki, &intruder, ALPN_H1),
            // Same issuer name as the gateway's own issuer, another key: a bad signature.
            "DecryptError",
        ),
        (
            support::no_client_auth(&gw.pki.anchor_pem(), ALPN_H1),
            "CertificateRequired",
        ),
    ];
    for (config, want) in cases {
        for i in 0..20 {
            let got = alert_after_request(gw.addr, config.clone()).await;
            assert_eq!(got.as_deref(), Some(want), "try {i}: {got:?}");
        }
    }
    gw.shutdown().await;
}

/// curl (OpenSSL) with an expired leaf, as the operator met it: it sends its HTTP/2 preface,
/// SETTINGS and a request with a body right behind its Finished, and must still print the
/// alert, every time. Closing at once (unread bytes: a reset) gave the alert in 3 of 20 tries.
#[tokio::test]
async fn curl_with_an_expired_leaf_reads_the_alert() {
    let gw = support::start("").await;
    let now = time::OffsetDateTime::now_utc();
    let mut spec = LeafSpec::identity(FRONTEND);
    spec.not_before = now - time::Duration::hours(25);
    spec.not_after = now - time::Duration::hours(1);
    let expired = support::leaf_with(&gw.pki, spec);
    let files = gw.write_client_files("expired", &expired);
    let resolve = format!("{GATEWAY}:{}:127.0.0.1", gw.addr.port());
    let url = format!("https://{GATEWAY}:{}/", gw.addr.port());
    let mut alerts = 0;
    let mut other = Vec::new();
    for _ in 0..20 {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "-d",
                "@/etc/services",
                "--max-time",
                "5",
                "--resolve",
                &resolve,
            ])
            .arg("--cacert")
            .arg(&files.ca)
            .arg("--cert")
            .arg(&files.cert)
            .arg("--key")
            .arg(&files.key)
            .args([
                "-H",
                "l5d-dst-canonical: web.demo.svc.cluster.local:80",
                &url,
            ])
            .output()
            .await
            .expect("curl runs (.ci/run installs it)");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if err.contains("alert certificate expired") {
            alerts += 1;
        } else {
            other.push(err);
        }
    }
    assert_eq!(alerts, 20, "curl did not read the alert: {other:?}");
    gw.shutdown().await;
}

/// A port anyone can hold, as an outsider reaching the LoadBalancer's 4191 would: connections
/// that send the HTTP/2 preface and SETTINGS, or half a request head, and then nothing. Each
/// is closed after `admin_idle_timeout`; past `admin_max_connections` the rest are accepted
/// on probation and closed when no head is complete within 1 s; the data plane serves
/// throughout.
#[tokio::test]
async fn idle_admin_connections_are_closed_and_capped() {
    let backend = Backend::start().await;
    let gw = support::start(&format!(
        "admin_idle_timeout = \"300ms\"\nadmin_max_connections = 20\n{}",
        static_routes(&[(WEB, backend.addr)])
    ))
    .await;
    let mut held = Vec::new();
    for i in 0..60 {
        let mut tcp = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
        if i % 2 == 0 {
            // HTTP/2 preface and an empty SETTINGS frame.
            tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .unwrap();
        } else {
            tcp.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
        }
        held.push(tcp);
    }
    // The data plane is not starved while the admin port is flooded.
    let tls = http_support::connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H1), None).await;
    let mut send = http_support::h1_client(tls).await;
    let answer = http_support::send_h1(&mut send, http_support::get("/", &[("host", WEB)])).await;
    assert_eq!(answer.status, 200);
    // Every held connection is closed by the gateway: the first 20 after the idle timeout,
    // the rest at the end of their probation.
    let start = std::time::Instant::now();
    for (i, tcp) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // SETTINGS, GOAWAY, a 408: then the close
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "admin connection {i} still open after 10 s");
    }
    let took = start.elapsed();
    // 300 ms idle (plus a 1 s grace for half-sent heads), or 1 s of probation.
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    assert!(gw.admin_get("/ready").await.starts_with("HTTP/1.1 200"));
    gw.shutdown().await;
}
