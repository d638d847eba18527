//! The prober's log at the default level, on the real binary (`crossgate probe`): the links
//! at start, a link that never comes alive logged dead once with its reason, alive once when
//! its gateway answers, and a shutdown line at SIGTERM.

mod probe_support;
mod support;

use probe_support::link;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits (10 s at most) until the log at `path` has `n` lines containing `text`.
async fn wait_lines(path: &std::path::Path, text: &str, n: usize) -> String {
    for _ in 0..500 {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().filter(|l| l.contains(text)).count() >= n {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "never {n} lines with {text:?}:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// A plaintext admin port that answers `/ready` 200, as a gateway's does.
async fn ready_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nready\n",
                )
                .await;
        });
    }
}

#[tokio::test]
async fn transitions_are_logged_once_at_info() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here yet: connect refused.
    let gateway = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("probe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nadmin = \"127.0.0.1:0\"\n{}",
            link("east", "127.0.0.1", gateway.port(), None, "50ms", 2)
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(["probe", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let text = wait_lines(&log, "gateway dead", 1).await;
    assert!(text.contains("probing link"), "{text}");
    let dead = text.lines().find(|l| l.contains("gateway dead")).unwrap();
    assert!(
        dead.contains("link=east") && dead.contains("reason=\"connect\""),
        "{dead}"
    );
    // Many more failures: still one line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("gateway dead").count(), 1, "{text}");

    let listener = tokio::net::TcpListener::bind(gateway).await.unwrap();
    let server = tokio::spawn(ready_server(listener));
    wait_lines(&log, "gateway alive again", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the prober did not exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    server.abort();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("gateway alive again").count(), 1, "{text}");
    assert!(text.contains("prober shutting down"), "{text}");
    assert!(text.contains("prober stopped"), "{text}");
}
