//! The client against an in-process controller on 127.0.0.1:0 (tonic's server, plaintext as
//! the configuration allows on loopback): an Add then a Remove reach `resolve`, `NotFound` is
//! no such service, and once the controller is gone the last set keeps serving while a new
//! target is unavailable after `stream_initial_timeout`. Also the table's bounds.
use super::stream::{BACKOFF_MAX, BACKOFF_MIN, Backoff, describe};
use super::*;
use crate::config::Fallback;
use api::destination_server::{Destination as DestinationApi, DestinationServer};
use api::tls_identity::{DnsLikeIdentity, Strategy};
use linkerd2_proxy_api::destination as api;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

type Updates = ReceiverStream<Result<api::Update, tonic::Status>>;

const POD_ID: &str = "podinfo.test.serviceaccount.identity.linkerd.cluster.local";

/// Streams what the test sends for `podinfo`, answers `NotFound` to anything else, and keeps
/// every request.
#[derive(Default)]
struct Controller {
    podinfo: Mutex<Option<mpsc::Receiver<Result<api::Update, tonic::Status>>>>,
    requests: Mutex<Vec<api::GetDestination>>,
}

#[tonic::async_trait]
impl DestinationApi for Controller {
    type GetStream = Updates;
    type GetProfileStream = ReceiverStream<Result<api::DestinationProfile, tonic::Status>>;

    async fn get(
        &self,
        request: tonic::Request<api::GetDestination>,
    ) -> Result<tonic::Response<Updates>, tonic::Status> {
        let get = request.into_inner();
        self.requests.lock().unwrap().push(get.clone());
        if get.path != "podinfo.test.svc.cluster.local:9898" {
            return Err(tonic::Status::not_found("no such service"));
        }
        match self.podinfo.lock().unwrap().take() {
            Some(rx) => Ok(tonic::Response::new(ReceiverStream::new(rx))),
            None => Err(tonic::Status::unavailable("one stream only")),
        }
    }

    async fn get_profile(
        &self,
        _: tonic::Request<api::GetDestination>,
    ) -> Result<tonic::Response<Self::GetProfileStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("profiles"))
    }
}

fn target(name: &str, port: u16) -> Target {
    Target {
        name: name.into(),
        port,
    }
}

fn config(addr: SocketAddr, timeout: Duration) -> Discovery {
    Discovery {
        destination_addr: addr.to_string(),
        destination_name: None,
        context_token: r#"{"ns":"linkerd-multicluster","nodeName":"n","pod":"gw"}"#.into(),
        fallback: Fallback::Dns,
        stream_initial_timeout: timeout,
    }
}

/// A client TLS that plaintext streams never use.
fn client_tls() -> Arc<ClientTls> {
    let pki = crate::certs::Pki::new().unwrap();
    let leaf = pki
        .leaf("gw.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.crt"),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    std::fs::write(&ca, pki.anchor_pem()).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let provider = crate::tls::provider();
    let roots = crate::identity::load_anchors(&ca).unwrap();
    let creds = crate::identity::Credentials::load(&cert, &key, None, &roots, &provider).unwrap();
    let store = Arc::new(crate::identity::CredentialStore::new(creds));
    Arc::new(ClientTls::new(store, roots, provider))
}

fn add(addr: &str) -> api::Update {
    let mut w = api::WeightedAddr {
        addr: Some(addr.parse::<SocketAddr>().unwrap().into()),
        weight: 10_000,
        ..Default::default()
    };
    w.tls_identity = Some(api::TlsIdentity {
        strategy: Some(Strategy::DnsLikeIdentity(DnsLikeIdentity {
            name: POD_ID.into(),
        })),
        server_name: None,
    });
    api::Update {
        update: Some(api::update::Update::Add(api::WeightedAddrSet {
            addrs: vec![w],
            metric_labels: [("namespace".to_string(), "test".to_string())].into(),
        })),
    }
}

fn remove(addr: &str) -> api::Update {
    api::Update {
        update: Some(api::update::Update::Remove(api::AddrSet {
            addrs: vec![addr.parse::<SocketAddr>().unwrap().into()],
        })),
    }
}

fn addrs(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Endpoints(eps) => eps.iter().map(|e| e.addr.to_string()).collect(),
        other => panic!("expected endpoints, got {other:?}"),
    }
}

/// Resolves until `done` holds, for at most five seconds.
async fn resolve_until(d: &Destination, t: &Target, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = d.resolve(t).await;
        if done(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn add_remove_not_found_then_controller_gone() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let controller = Arc::new(Controller::default());
    let (tx, rx) = mpsc::channel(8);
    *controller.podinfo.lock().unwrap() = Some(rx);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationServer::from_arc(controller.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    let timeout = Duration::from_millis(500);
    let metrics = DestinationMetrics::default();
    let d = Destination::new(&config(addr, timeout), client_tls(), metrics.clone());
    let podinfo = target("podinfo.test.svc.cluster.local", 9898);

    tx.send(Ok(add("10.0.0.1:9898"))).await.unwrap();
    tx.send(Ok(add("[fd00::2]:9898"))).await.unwrap();
    let answer = resolve_until(
        &d,
        &podinfo,
        |a| matches!(a, Answer::Endpoints(e) if e.len() == 2),
    )
    .await;
    assert_eq!(addrs(&answer), ["10.0.0.1:9898", "[fd00::2]:9898"]);
    let Answer::Endpoints(eps) = &answer else {
        unreachable!()
    };
    assert_eq!(eps[0].identity.as_ref().map(|i| &*i.id), Some(POD_ID));
    assert_eq!(&*eps[0].labels[0].0, "namespace");

    tx.send(Ok(remove("10.0.0.1:9898"))).await.unwrap();
    let answer = resolve_until(&d, &podinfo, |a| addrs(a).len() == 1).await;
    assert_eq!(addrs(&answer), ["[fd00::2]:9898"]);

    let gone = target("gone.test.svc.cluster.local", 80);
    assert_eq!(d.resolve(&gone).await, Answer::NoSuchService);
    {
        let requests = controller.requests.lock().unwrap();
        let first = &requests[0];
        assert_eq!(first.scheme, "k8s");
        assert_eq!(first.path, "podinfo.test.svc.cluster.local:9898");
        assert!(
            first
                .context_token
                .contains("\"ns\":\"linkerd-multicluster\"")
        );
        assert!(
            requests
                .iter()
                .any(|r| r.path == "gone.test.svc.cluster.local:80")
        );
    }
    assert_eq!((metrics.add.get(), metrics.remove.get()), (2, 1));
    assert_eq!(d.watched(), 2);

    // The controller goes away: the stream ends, reconnects are refused.
    drop(tx);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    // The last set keeps serving...
    assert_eq!(addrs(&d.resolve(&podinfo).await), ["[fd00::2]:9898"]);
    // ...and a target never answered is unavailable once the initial timeout passed.
    let start = Instant::now();
    let other = target("other.test.svc.cluster.local", 80);
    let answer = d.resolve(&other).await;
    assert!(matches!(answer, Answer::Unavailable(_)), "{answer:?}");
    assert!(start.elapsed() >= timeout, "{:?}", start.elapsed());
    // Asked again: at once, the deadline is the watch's.
    let start = Instant::now();
    assert!(matches!(d.resolve(&other).await, Answer::Unavailable(_)));
    assert!(start.elapsed() < timeout);
}

/// An address nobody listens on.
async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn full_table_refuses_new_targets() {
    let cfg = config(closed_port().await, Duration::from_millis(20));
    let mut d = Destination::new(&cfg, client_tls(), DestinationMetrics::default());
    Arc::get_mut(&mut d.shared).unwrap().max_targets = 2;
    for name in ["a.ns.svc.cluster.local", "b.ns.svc.cluster.local"] {
        let answer = d.resolve(&target(name, 80)).await;
        assert!(
            matches!(answer, Answer::Unavailable(ref e) if e.contains("Destination API")),
            "{answer:?}"
        );
    }
    let answer = d.resolve(&target("c.ns.svc.cluster.local", 80)).await;
    assert_eq!(
        answer,
        Answer::Unavailable("2 targets watched already".into())
    );
    // A watched target still answers (from its watch).
    assert!(
        matches!(d.resolve(&target("a.ns.svc.cluster.local", 80)).await, Answer::Unavailable(ref e) if e.contains("Destination API"))
    );
    assert_eq!(d.watched(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_watches_end() {
    let cfg = config(closed_port().await, Duration::from_millis(20));
    let metrics = DestinationMetrics::default();
    let d = Destination::new(&cfg, client_tls(), metrics.clone());
    let t = target("a.ns.svc.cluster.local", 80);
    assert!(matches!(d.resolve(&t).await, Answer::Unavailable(_)));
    assert_eq!(d.watched(), 1);
    tokio::time::sleep(IDLE / 2).await;
    d.resolve(&t).await;
    tokio::time::sleep(IDLE / 2 + Duration::from_secs(1)).await;
    assert_eq!(d.watched(), 1, "resolved half an idle period ago");
    tokio::time::sleep(IDLE).await;
    assert_eq!(d.watched(), 0);
    assert_eq!(metrics.active.get() + metrics.reconnecting.get(), 0);
}

#[test]
fn backoff_doubles_to_ten_seconds_with_jitter() {
    let mut b = Backoff::default();
    let waits: Vec<Duration> = (0..10).map(|_| b.next()).collect();
    for (i, w) in waits.iter().enumerate() {
        let step = (BACKOFF_MIN * 2u32.pow(i as u32)).min(BACKOFF_MAX);
        assert!(*w >= step / 2 && *w <= step, "{i}: {w:?} for {step:?}");
    }
    b.reset();
    assert!(b.next() <= BACKOFF_MIN);
}

#[test]
fn status_described_without_debug_text() {
    let s = tonic::Status::not_found("no such service");
    assert_eq!(
        describe(&s),
        "5 (Some requested entity was not found): no such service"
    );
}
