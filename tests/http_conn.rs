//! The life of an HTTP connection on the gateway port: `[server] http_idle_timeout` closes idle
//! connections (and only idle ones), `header_timeout` does not cut idle keep-alive HTTP/1.1
//! connections, `h2_max_concurrent_streams` is what HTTP/2 clients are told, and the idle watch
//! costs no CPU while a request waits.

mod http_support;
mod support;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_support::*;
use hyper::body::Incoming;
use std::time::{Duration, Instant};
use support::{ALPN_TRANSPORT, FRONTEND, TestGateway, start, vector};

const H2_URI: &str = "http://podinfo.test.svc.cluster.local:9898";

async fn gateway(backend: &Backend, server_keys: &str) -> TestGateway {
    let routes = static_routes(&[(PODINFO, backend.addr)]);
    start(&format!("{server_keys}\n{routes}")).await
}

/// No connection on `gw` has been counted as a TCP error.
async fn assert_no_tcp_errors(gw: &TestGateway) {
    let m = gw.metrics().await;
    assert!(
        lines_with(&m, "inbound_tcp_errors_total{").is_empty(),
        "{m}"
    );
}

fn inbound(client: &str) -> String {
    format!(
        "direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{client}\",route=\"header\""
    )
}

/// One request on a new HTTP/2 connection, then waits (bounded polling, 5 s) until the
/// gateway closes it; how long it stayed open after the response.
async fn idle_close_after_one_request(gw: &TestGateway) -> Duration {
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(&mut h2, get(&format!("{H2_URI}/"), &[])).await;
    assert_eq!(a.status, 200);
    let idle_since = Instant::now();
    let deadline = idle_since + Duration::from_secs(5);
    while !h2.is_closed() {
        assert!(
            Instant::now() < deadline,
            "idle connection still open after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idle_since.elapsed()
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_http_idle_timeout() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "http_idle_timeout = \"300ms\"").await;
    let idle = idle_close_after_one_request(&gw).await;
    assert!(
        idle >= Duration::from_millis(250),
        "closed after {idle:?}, before the idle timeout"
    );
    gw.wait_metric(&format!("tcp_open_connections{{{}}} 0", inbound(FRONTEND)))
        .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_close_is_counted_as_a_clean_close() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "http_idle_timeout = \"300ms\"").await;
    idle_close_after_one_request(&gw).await;
    // A deliberate idle close is a clean close, not an error.
    gw.wait_metric(&format!(
        "tcp_close_total{{{},classification=\"success\"}} 1",
        inbound(FRONTEND)
    ))
    .await;
    assert_no_tcp_errors(&gw).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_with_a_request_in_flight_is_not_idle() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "http_idle_timeout = \"200ms\"").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    // Each request waits in the backend longer than the idle timeout, without a byte either
    // way; each next one follows at once. The connection must carry them all.
    for i in 0..6 {
        assert!(
            !h2.is_closed(),
            "the gateway closed a busy connection (after {i} requests)"
        );
        let a = send_h2(&mut h2, get(&format!("{H2_URI}/sleep?ms=500"), &[])).await;
        assert_eq!(a.status, 200, "request {i}: {a:?}");
    }
    assert_eq!(backend.count(), 6);
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_http1_keepalive_outlives_header_timeout() {
    let backend = Backend::start().await;
    let gw = gateway(
        &backend,
        "header_timeout = \"300ms\"\nhttp_idle_timeout = \"60s\"",
    )
    .await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H1), None).await;
    let mut h1 = h1_client(tls).await;
    let a = send_h1(&mut h1, get("/first", &[("host", PODINFO)])).await;
    assert_eq!(a.status, 200, "{a:?}");
    // Idle between requests for longer than header_timeout, well within http_idle_timeout.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !h1.is_closed(),
        "the gateway closed an idle keep-alive connection after header_timeout, not http_idle_timeout"
    );
    let a = send_h1(&mut h1, get("/second", &[("host", PODINFO)])).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_no_tcp_errors(&gw).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_closed_after_http_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let gw = gateway(&backend, "http_idle_timeout = \"300ms\"").await;
    // Plain HTTPS and HTTP/1 behind a transport header: half a head, then nothing.
    let header = crossgate::transport_header::TransportHeader {
        port: 80,
        name: Some(PODINFO.split(':').next().unwrap().into()),
        protocol: Some(crossgate::transport_header::SessionProtocol::Http1),
    }
    .encode();
    for (alpn, preface) in [(ALPN_H1, Vec::new()), (ALPN_TRANSPORT, header)] {
        let mut tls = connect_tls(gw.addr, gw.client(FRONTEND, alpn), Some(&preface)).await;
        tls.write_all(b"GET /slow-head HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let closed = support::read_until_closed(&mut tls, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a half-sent head held the connection open for 5 s"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed after {:?}, before http_idle_timeout",
            started.elapsed()
        );
    }
    assert_eq!(backend.count(), 0, "half a head reached the backend");
    // Counted, as hyper's own head timeout was before.
    gw.wait_metric(&support::tcp_error_line("i/o", 2)).await;
    gw.shutdown().await;
}

/// A full-duplex `/echo` whose pieces come 200 ms apart for 2.4 s: far past the idle timeout
/// and the grace after it, yet never idle, as its response body is still streaming.
async fn long_echo<S>(send: &mut S, uri: &str)
where
    S: FnMut(
        Request<ReqBody>,
    )
        -> std::pin::Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>,
{
    use http_body_util::BodyExt;
    let (tx, body) = Channel::new();
    let req = request(Method::POST, uri, &[("host", PODINFO)], body.boxed());
    tx.send(Bytes::from_static(b"piece")).await.unwrap();
    let resp = within(5, "echo response head", send(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    for i in 0..12 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(Bytes::from_static(b"piece")).await.unwrap();
        }
        let mut got = 0;
        while got < 5 {
            let frame = within(5, "echoed piece", body.frame())
                .await
                .unwrap_or_else(|| panic!("body ended after {i} pieces"))
                .unwrap_or_else(|e| panic!("body failed after {i} pieces: {e}"));
            got += frame.data_ref().map_or(0, |d| d.len());
        }
    }
    drop(tx);
    within(5, "end of the echo", body.collect()).await.unwrap();
}

#[tokio::test]
async fn a_body_streaming_past_http_idle_timeout_is_not_cut() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "http_idle_timeout = \"300ms\"").await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    long_echo(
        &mut |req| Box::pin(h2.send_request(req)),
        &format!("{H2_URI}/echo"),
    )
    .await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H1), None).await;
    let mut h1 = h1_client(tls).await;
    long_echo(&mut |req| Box::pin(h1.send_request(req)), "/echo").await;
    assert_no_tcp_errors(&gw).await;
    gw.shutdown().await;
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` a gateway sends, read with the h2 crate.
async fn advertised_streams(gw: &TestGateway) -> Option<usize> {
    let tls = connect_tls(
        gw.addr,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&vector("h2-hint.hex")),
    )
    .await;
    let (mut client, mut conn) = within(5, "h2 handshake", h2::client::handshake(tls))
        .await
        .unwrap();
    let req = http::Request::get(format!("{H2_URI}/")).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    // The server's SETTINGS come before any response.
    let resp = within(5, "h2 response", async {
        tokio::select! {
            r = resp => r.unwrap(),
            r = &mut conn => panic!("connection ended: {r:?}"),
        }
    })
    .await;
    assert_eq!(resp.status(), 200);
    Some(conn.max_concurrent_send_streams())
}

#[tokio::test]
async fn h2_max_concurrent_streams_is_advertised() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, "").await;
    assert_eq!(advertised_streams(&gw).await, Some(1000), "the default");
    gw.shutdown().await;
    let gw = gateway(&backend, "h2_max_concurrent_streams = 7").await;
    assert_eq!(advertised_streams(&gw).await, Some(7));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_request_costs_no_cpu_in_the_idle_watch() {
    let backend = Backend::start().await;
    let gw = BinaryGateway::start(
        "http_idle_timeout = \"100ms\"",
        &static_routes(&[(PODINFO, backend.addr)]),
    )
    .await;
    let mut h2 = h2_hint(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(&mut h2, get(&format!("{H2_URI}/warm"), &[])).await;
    assert_eq!(a.status, 200);
    let before = gw.cpu_ticks();
    // 2 s in the backend, 1.9 s of it past the idle timeout.
    let a = send_h2(&mut h2, get(&format!("{H2_URI}/slow"), &[])).await;
    assert_eq!(a.status, 200, "{a:?}");
    let used = gw.cpu_ticks() - before;
    println!("gateway CPU while one request waited 2 s: {used} ticks (1/100 s)");
    assert!(
        used < 50,
        "the gateway used {used}/100 s of CPU while a single request waited 2 s"
    );
    drop(h2);
    gw.terminate().await;
}
