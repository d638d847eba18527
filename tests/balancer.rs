//! The balancer over a target's endpoints (three static endpoints here; Destination and DNS
//! endpoints go through the same one): a slow endpoint gets little of the traffic, an endpoint
//! that refuses connections or dies between requests costs no client a failure, and when no
//! endpoint is left requests fail fast after `failfast_timeout`, then succeed again as soon as
//! one comes back.

mod http_support;
mod support;

use bytes::Bytes;
use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::{connect_tls, get, h2_client, send_h2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ALPN_TRANSPORT, FRONTEND, TestGateway};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

const WEB: &str = "web.test.svc.cluster.local";

type H2 = hyper::client::conn::http2::SendRequest<http_support::ReqBody>;

/// An HTTP/1.1 + h2c backend answering 200 after `delay`, counting requests; `stop` closes
/// its listener and every connection.
struct Pod {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Pod {
    async fn start(delay: Duration) -> Pod {
        Pod::start_at("127.0.0.1:0".parse().unwrap(), delay).await
    }

    async fn start_at(addr: SocketAddr, delay: Duration) -> Pod {
        let l = TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (count, list) = (served.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                let count = count.clone();
                let service = hyper::service::service_fn(move |_req| {
                    let count = count.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let conn = tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), service)
                        .await;
                });
                list.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Pod {
            addr,
            served,
            tasks,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn gateway(endpoints: &[SocketAddr], failfast: &str) -> TestGateway {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    support::start(&format!(
        "[routing.static]\n\"{WEB}:80\" = [{}]\n[discovery]\nfailfast_timeout = \"{failfast}\"\n",
        list.join(", ")
    ))
    .await
}

async fn client(gw: &TestGateway) -> H2 {
    let hdr = TransportHeader {
        port: 80,
        name: Some(WEB.into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    let cfg = gw.client(FRONTEND, ALPN_TRANSPORT);
    h2_client(connect_tls(gw.addr, cfg, Some(&hdr)).await).await
}

/// `n` requests from `concurrency` streams at once; the statuses that were not 200.
async fn load(h2: &H2, n: usize, concurrency: usize) -> Vec<(u16, String)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut c = h2.clone();
        set.spawn(async move {
            let mut bad = Vec::new();
            for _ in 0..n / concurrency {
                let a = send_h2(&mut c, get(&format!("http://{WEB}/"), &[])).await;
                if a.status != 200 {
                    let why = a.header("l5d-proxy-error").unwrap_or_default().to_string();
                    bad.push((a.status.as_u16(), why));
                }
            }
            bad
        });
    }
    let mut bad = Vec::new();
    while let Some(r) = set.join_next().await {
        bad.extend(r.unwrap());
    }
    bad
}

#[tokio::test]
async fn a_slow_endpoint_gets_little_of_the_traffic() {
    let fast = [
        Pod::start(Duration::ZERO).await,
        Pod::start(Duration::ZERO).await,
    ];
    let slow = Pod::start(Duration::from_millis(50)).await;
    let gw = gateway(&[fast[0].addr, fast[1].addr, slow.addr], "3s").await;
    let h2 = client(&gw).await;
    assert_eq!(load(&h2, 2000, 10).await, vec![]);
    let share = slow.served() as f64 / 2000.0;
    assert!(
        share < 0.05,
        "the slow endpoint served {} of 2000 ({:.1} %); the fast ones {} and {}",
        slow.served(),
        share * 100.0,
        fast[0].served(),
        fast[1].served()
    );
    assert_eq!(fast[0].served() + fast[1].served() + slow.served(), 2000);
    // The split is in the metrics, per endpoint.
    gw.wait_metric(&format!(
        "outbound_http_balancer_requests_total{{authority=\"{WEB}:80\",target_addr=\"{}\"}} {}",
        slow.addr,
        slow.served()
    ))
    .await;
    gw.wait_metric(&format!(
        "outbound_http_balancer_endpoints{{authority=\"{WEB}:80\",endpoint_state=\"ready\"}} 3"
    ))
    .await;
}

#[tokio::test]
async fn an_endpoint_refusing_connections_costs_no_request() {
    let pods = [
        Pod::start(Duration::ZERO).await,
        Pod::start(Duration::ZERO).await,
    ];
    let refusing = http_support::closed_port();
    let gw = gateway(&[pods[0].addr, refusing, pods[1].addr], "3s").await;
    let h2 = client(&gw).await;
    assert_eq!(load(&h2, 300, 6).await, vec![]);
    assert_eq!(pods[0].served() + pods[1].served(), 300);
    gw.wait_metric(&format!(
        "outbound_http_balancer_endpoints{{authority=\"{WEB}:80\",endpoint_state=\"pending\"}} 1"
    ))
    .await;
}

#[tokio::test]
async fn an_endpoint_that_dies_between_requests_costs_no_request() {
    let (a, b) = (
        Pod::start(Duration::ZERO).await,
        Pod::start(Duration::ZERO).await,
    );
    let gw = gateway(&[a.addr, b.addr], "3s").await;
    let h2 = client(&gw).await;
    assert_eq!(load(&h2, 100, 4).await, vec![]);
    a.stop();
    let before = a.served();
    assert_eq!(load(&h2, 200, 4).await, vec![], "no request lost");
    assert_eq!(a.served(), before);
    assert_eq!(b.served() + a.served(), 300);
}

#[tokio::test]
async fn with_no_endpoint_left_requests_fail_fast_then_recover() {
    let pod = Pod::start(Duration::ZERO).await;
    let addr = pod.addr;
    let gw = gateway(&[addr], "500ms").await;
    let mut h2 = client(&gw).await;
    let url = format!("http://{WEB}/");
    assert_eq!(send_h2(&mut h2, get(&url, &[])).await.status, 200);
    pod.stop();

    // The first request waits failfast_timeout for a ready endpoint, then fails fast.
    let started = Instant::now();
    let a = send_h2(&mut h2, get(&url, &[])).await;
    let waited = started.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert_eq!(a.header("l5d-proxy-error"), Some("service in fail-fast"));
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // While none is ready, the next ones fail at once.
    let started = Instant::now();
    assert_eq!(send_h2(&mut h2, get(&url, &[])).await.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    gw.wait_metric("inbound_http_errors_total{error=\"failfast\"} 2")
        .await;

    // Back on the same address: served again as soon as the gateway has reconnected.
    let back = Pod::start_at(addr, Duration::ZERO).await;
    let started = Instant::now();
    loop {
        let a = send_h2(&mut h2, get(&url, &[])).await;
        if a.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not served again: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(back.served(), 1);
}
