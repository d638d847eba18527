//! The demo's backends on loopback: a TCP echo server and an HTTP/1.1 + HTTP/2 server that
//! answers with what it saw (version, URI, host, `l5d-client-id`).

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A TCP echo server; its address.
pub(super) async fn spawn_echo() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// An HTTP server that answers with what it saw; its address.
pub(super) async fn spawn_http_backend() -> anyhow::Result<SocketAddr> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            // Without it, Nagle on the backend holds its second small write for the gateway's
            // delayed ACK: 40 ms on the first HTTP/2 exchange.
            let _ = s.set_nodelay(true);
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let body = format!(
                        "backend saw {:?} {} host={} l5d-client-id={}",
                        req.version(),
                        req.uri(),
                        req.uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| h("host")),
                        h("l5d-client-id"),
                    );
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(body)),
                    ))
                },
            );
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
