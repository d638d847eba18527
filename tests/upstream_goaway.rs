//! An endpoint's HTTP/2 connection that goes away gracefully (GOAWAY while a stream is still in
//! flight, as a restarting Linkerd proxy or server does): the stream in flight finishes on it,
//! and a new request goes on a new connection at once rather than failing while the old one
//! drains.

mod http_support;
mod support;

use bytes::Bytes;
use http_body_util::Full;
use http_support::{ALPN_H2, connect_tls, get, h2_client, send_h2, static_routes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::FRONTEND;
use tokio::net::TcpListener;
use tokio::sync::Notify;

const WEB: &str = "web.demo.svc.cluster.local:8080";

/// An h2c backend whose first connection sends GOAWAY once a `/hold` request has arrived on
/// it; `/hold` answers when `release` is notified, anything else at once.
struct Backend {
    addr: SocketAddr,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
    connections: Arc<AtomicUsize>,
}

impl Backend {
    async fn start() -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Backend {
            addr: l.local_addr().unwrap(),
            arrived: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let (arrived, release, connections) =
            (b.arrived.clone(), b.release.clone(), b.connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
                let (arrived, release) = (arrived.clone(), release.clone());
                let went = Arc::new(Notify::new());
                let on_hold = went.clone();
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (release, on_hold) = (release.clone(), on_hold.clone());
                    async move {
                        if req.uri().path() == "/hold" {
                            on_hold.notify_one();
                            release.notified().await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service);
                tokio::spawn(async move {
                    let mut conn = std::pin::pin!(conn);
                    if first {
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            () = went.notified() => {}
                        }
                        conn.as_mut().graceful_shutdown();
                        arrived.notify_one();
                    }
                    let _ = conn.await;
                });
            }
        });
        b
    }
}

#[tokio::test]
async fn a_request_after_goaway_takes_a_new_connection_while_the_old_one_drains() {
    let backend = Backend::start().await;
    let gw = support::start(&static_routes(&[(WEB, backend.addr)])).await;
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_H2), None).await;
    let h2 = h2_client(tls).await;

    let mut held = h2.clone();
    let hold =
        tokio::spawn(
            async move { send_h2(&mut held, get(&format!("http://{WEB}/hold"), &[])).await },
        );
    // The backend has the held request, and its connection has sent GOAWAY.
    tokio::time::timeout(Duration::from_secs(5), backend.arrived.notified())
        .await
        .expect("the held request reaches the backend");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut next = h2.clone();
    let a = send_h2(&mut next, get(&format!("http://{WEB}/next"), &[])).await;
    assert_eq!(a.status, 200, "a request after GOAWAY failed: {a:?}");
    assert_eq!(a.text(), "ok");
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        2,
        "not on a new connection"
    );

    // The stream in flight finishes on the old connection.
    backend.release.notify_one();
    let held = tokio::time::timeout(Duration::from_secs(5), hold)
        .await
        .expect("the held request ends")
        .unwrap();
    assert_eq!(held.status, 200, "{held:?}");
    gw.shutdown().await;
}
