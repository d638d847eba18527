//! Bounds on what one peer can make the gateway hold: an oversized HTTP/1 request head is
//! answered 431 without reaching the backend.

mod support;
use std::sync::atomic::Ordering;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn oversized_http1_head_is_refused() {
    let (backend, accepted) = echo_backend().await;
    let gw = start(&static_route("web.test.svc.cluster.local:80", backend)).await;
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, &[b"http/1.1"]), GATEWAY)
        .await
        .unwrap();
    let big = "x".repeat(70 * 1024);
    let req = format!("GET / HTTP/1.1\r\nhost: web.test.svc.cluster.local\r\nx-big: {big}\r\n\r\n");
    // The gateway may answer and close before it has read everything: ignore write errors.
    let _ = tls.write_all(req.as_bytes()).await;
    let answer = String::from_utf8_lossy(&read_all(&mut tls).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    // A head under the limit passes routing (the echo backend does not speak HTTP, so the
    // answer is an upstream error, but it was reached).
    let mut tls = crossgate::tls::connect(gw.addr, gw.client(FRONTEND, &[b"http/1.1"]), GATEWAY)
        .await
        .unwrap();
    let ok = "x".repeat(30 * 1024);
    let req = format!(
        "GET / HTTP/1.1\r\nhost: web.test.svc.cluster.local\r\nx-big: {ok}\r\nconnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let _ = read_all(&mut tls).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}
