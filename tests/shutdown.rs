//! Shutdown as a load balancer sees it (the binary, SIGTERM): `/ready` turns 503 at once
//! while new connections are still accepted and served for `drain_delay`; then the gateway
//! stops accepting, drains, exits 0, and its last log line names the outcome. A second
//! SIGTERM cuts `drain_delay` short. A stream still open at `drain_timeout` keeps working while
//! the gateway drains and is cut at the deadline, as its client measures.

mod http_support;
mod support;

use http_support::*;
use std::time::{Duration, Instant};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, echo_backend};
use tokio::io::AsyncWriteExt;

/// The status line of `GET /ready` on the plaintext admin port, or `None` if nothing answers.
async fn ready_status(gw: &BinaryGateway) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.admin).await.ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.lines().next().map(str::to_string)
}

#[tokio::test]
async fn sigterm_keeps_serving_for_drain_delay_with_ready_503_then_drains() {
    let backend = Backend::start().await;
    let routes = static_routes(&[(PODINFO, backend.addr)]);
    // 2 s rather than 1 s: the checks below must fit inside the delay on a busy machine.
    let mut gw = BinaryGateway::start_logged("drain_delay = \"2s\"", &routes, "info", false).await;
    let term = Instant::now();
    gw.signal("TERM").await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = ready_status(&gw).await;
        if status.as_deref() == Some("HTTP/1.1 503 Service Unavailable") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still {status:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new mTLS connection, accepted and served while /ready says 503.
    let a = plain_h2(
        gw.listen,
        gw.client(FRONTEND, ALPN_H2),
        get(&format!("http://{PODINFO}/during-delay"), &[]),
    )
    .await;
    assert!(
        term.elapsed() < Duration::from_secs(2),
        "the checks outlasted the delay"
    );
    assert_eq!(a.status, 200, "{a:?}\n{}", gw.stderr());
    assert_eq!(backend.count(), 1);

    let status = gw.wait_exit(15).await;
    assert!(
        term.elapsed() >= Duration::from_secs(2),
        "exited before drain_delay"
    );
    let stderr = gw.stderr();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.contains("drained: all connections closed"),
        "last line: {last}\n{stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in a file: {stderr:?}"
    );
}

#[tokio::test]
async fn a_second_sigterm_cuts_drain_delay_short() {
    let mut gw = BinaryGateway::start_logged("drain_delay = \"60s\"", "", "info", false).await;
    gw.signal("TERM").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready_status(&gw).await.as_deref() != Some("HTTP/1.1 503 Service Unavailable") {
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = Instant::now();
    gw.signal("TERM").await;
    let status = gw.wait_exit(15).await;
    let stderr = gw.stderr();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "waited out drain_delay after a second SIGTERM"
    );
    assert!(
        stderr.contains("second stop signal: drain_delay cut short"),
        "{stderr}"
    );
}

#[tokio::test]
async fn drain_deadline_cuts_an_open_stream_and_says_so_last() {
    let (echo, accepted) = echo_backend().await;
    let name = "echo.test.svc.cluster.local";
    let routes = static_routes(&[(&format!("{name}:{}", echo.port()), echo)]);
    let mut gw =
        BinaryGateway::start_logged("drain_timeout = \"500ms\"", &routes, "info", false).await;
    let header = crossgate::transport_header::TransportHeader {
        port: echo.port(),
        name: Some(name.into()),
        protocol: None,
    };
    // An opaque stream that stays open through the drain.
    let mut tls = crossgate::tls::connect(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&header.encode()).await.unwrap();
    tls.write_all(b"still here").await.unwrap();
    let mut echoed = [0u8; 10];
    within(
        5,
        "the echo",
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut echoed),
    )
    .await
    .unwrap();
    assert_eq!(&echoed, b"still here");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    let term = Instant::now();
    gw.signal("TERM").await;
    // Draining: the stream still carries bytes both ways...
    tls.write_all(b"draining").await.unwrap();
    let mut echoed = [0u8; 8];
    within(
        5,
        "the echo while draining",
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut echoed),
    )
    .await
    .unwrap();
    assert_eq!(&echoed, b"draining");
    // ...until the deadline cuts it: the client reads its end then, not before, not much later.
    let rest = support::read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let cut = term.elapsed();
    eprintln!(
        "drain deadline: the client read its EOF {cut:?} after SIGTERM (drain_timeout 500ms)"
    );
    assert_eq!(rest.as_deref(), Some(&[][..]), "the stream was never cut");
    assert!(
        cut >= Duration::from_millis(500),
        "cut {cut:?} after SIGTERM, before drain_timeout (500ms)"
    );
    assert!(
        cut < Duration::from_millis(2500),
        "cut {cut:?} after SIGTERM: drain_timeout is 500ms"
    );
    let status = gw.wait_exit(15).await;
    let stderr = gw.stderr();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.contains("drain deadline passed: 1 connections cut"),
        "last line: {last}\n{stderr}"
    );
}
