//! Shutdown as a load balancer sees it (the binary, SIGTERM): `/ready` turns 503 at once
//! while new connections are still accepted and served for `drain_delay`; then the gateway
//! stops accepting, drains, exits 0, and its last log line names the outcome.

mod http_support;
mod support;

use http_support::*;
use std::time::{Duration, Instant};
use support::FRONTEND;

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
