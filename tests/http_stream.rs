//! Streaming through the gateway: trailers, full-duplex bodies, 1,000 concurrent streams on one
//! HTTP/2 connection, an HTTP/1.1 upgrade on the transport header's Http1 session, and a 100 MB
//! body through the real binary with its peak memory bounded.

mod http_support;
mod support;

use bytes::Bytes;
use http::{Method, Version};
use http_body_util::BodyExt;
use http_support::*;
use std::time::Duration;
use support::{ALPN_TRANSPORT, FRONTEND, TestGateway, start, vector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2_URI: &str = "http://podinfo.test.svc.cluster.local:9898";

async fn gateway(backend: &Backend) -> TestGateway {
    start(&static_routes(&[
        (PODINFO, backend.addr),
        (PODINFO_H1, backend.addr),
    ]))
    .await
}

#[tokio::test]
async fn grpc_trailers_pass_through_http2_end_to_end() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let a = send_h2(
        &mut h2,
        request(
            Method::POST,
            &format!("{H2_URI}/trailers"),
            &[("content-type", "application/grpc"), ("te", "trailers")],
            full(&b"\0\0\0\0\0"[..]),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.text(), "hello");
    let trailers = a.trailers.expect("no trailers reached the client");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("grpc-message").unwrap(), "from-backend");
    let s = backend.last();
    assert_eq!(s.version, Version::HTTP_2);
    assert_eq!(
        s.all("te"),
        ["trailers"],
        "gRPC needs te: trailers upstream"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let mut h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let (tx, body) = Channel::new();
    let req = request(Method::POST, &format!("{H2_URI}/echo"), &[], body.boxed());
    tx.send(Bytes::from_static(b"one")).await.unwrap();
    let resp = within(10, "echo response head", h2.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Each piece comes back before the next is sent: neither direction waits for the end.
    for piece in ["one", "two", "three"] {
        if piece != "one" {
            tx.send(Bytes::from(piece)).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < piece.len() {
            let frame = within(5, "echoed piece", body.frame())
                .await
                .expect("body ended early")
                .unwrap();
            if let Some(d) = frame.data_ref() {
                got.extend_from_slice(d);
            }
        }
        assert_eq!(got, piece.as_bytes());
    }
    drop(tx);
    let end = within(5, "end of the echo", body.collect()).await.unwrap();
    assert!(end.to_bytes().is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_streams_on_one_connection() {
    const STREAMS: usize = 1000;
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let h2 = h2_hint(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                let uri = format!("{H2_URI}/hold");
                let req = get(&uri, &[("x-stream", &i.to_string())]);
                let resp = h2.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            })
        })
        .collect();
    // Every stream is open at once: all of them wait in the backend together.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while backend.holding() < STREAMS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {STREAMS} streams reached the backend at once",
            backend.holding()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    backend.release();
    for t in tasks {
        let (status, body) = within(20, "a held stream", t).await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "held");
    }
    assert_eq!(backend.count(), STREAMS);
    let m = gw.metrics().await;
    let open = format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\"}} 1"
    );
    assert!(m.lines().any(|l| l == open), "missing {open}\n{m}");
    gw.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_through_the_http1_session() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let mut tls = connect_tls(
        gw.addr,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&vector("h1-nohint.hex")),
    )
    .await;
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert_eq!(head.status, 101, "{}", head.head);
    assert_eq!(head.header("upgrade").as_deref(), Some("websocket"));
    for msg in [&b"ping"[..], b"second message"] {
        tls.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        within(
            5,
            "echo on the upgraded connection",
            tls.read_exact(&mut back),
        )
        .await
        .unwrap();
        assert_eq!(back, msg);
    }
    let s = backend.last();
    assert_eq!(s.uri.path(), "/ws");
    assert_eq!(s.all("upgrade"), ["websocket"]);
    assert_eq!(s.all("host"), [PODINFO_H1]);
    assert_eq!(s.all("l5d-client-id"), [FRONTEND]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_through_the_binary_in_bounded_memory() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    const LIMIT_KIB: u64 = 64 * 1024;
    let backend = Backend::start().await;
    let gw = BinaryGateway::start("", &static_routes(&[(PODINFO, backend.addr)])).await;
    let client = gw.client(FRONTEND, ALPN_TRANSPORT);
    let tls = connect_tls(gw.listen, client, Some(&vector("h2-hint.hex"))).await;
    let mut h2 = h2_client(tls).await;
    let req = request(
        Method::POST,
        &format!("{H2_URI}/count"),
        &[],
        Generated::new(TOTAL).boxed(),
    );
    let started = std::time::Instant::now();
    let resp = within(60, "100 MB upload", async {
        let resp = h2.send_request(req).await.unwrap();
        collect(resp).await
    })
    .await;
    let took = started.elapsed();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), TOTAL.to_string());
    let peak = gw.peak_rss_kib();
    println!(
        "100 MB through the gateway in {took:?}; gateway peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        peak < LIMIT_KIB,
        "gateway peak RSS {peak} KiB over {LIMIT_KIB} KiB: the body was buffered"
    );
    drop(h2);
    gw.terminate().await;
}
