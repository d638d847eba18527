//! The test fixtures of `tests/support` (the Destination stub, the meshed backend) exercised
//! directly with real clients, no gateway involved, so that tests built on them can trust them.

mod support;

use bytes::Bytes;
use crossgate::certs::Pki;
use crossgate::transport_header::SessionProtocol::{Http1, Http2};
use crossgate::transport_header::TransportHeader;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::{self as pb, GetDestination, protocol_hint, tls_identity};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use support::destination::{Addr, DestinationStub, Step, update};
use support::meshed::{MeshedBackend, Mode};
use support::{FRONTEND, client_config, no_client_auth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

const DST_ID: &str = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";
const POD_ID: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";
const PATH: &str = "web.test.svc.cluster.local:8080";

fn get(path: &str, token: &str) -> GetDestination {
    GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: token.into(),
    }
}

/// A `Get` stream for `path`; panics when the `Get` fails.
async fn watch(c: &mut DestinationClient<Channel>, path: &str) -> tonic::Streaming<pb::Update> {
    c.get(get(path, "")).await.unwrap().into_inner()
}

/// The update `NoEndpoints { exists }` as the stub builds it.
fn no_endpoints(exists: bool) -> Option<pb::update::Update> {
    update(&Step::NoEndpoints { exists }).unwrap().update
}

/// The next update within 5 s; panics on a timeout.
async fn next(s: &mut tonic::Streaming<pb::Update>) -> Result<Option<pb::Update>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("an update within 5 s")
}

/// Whether nothing arrives within 200 ms (the stream is open and quiet).
async fn quiet(s: &mut tonic::Streaming<pb::Update>) -> bool {
    tokio::time::timeout(Duration::from_millis(200), s.message())
        .await
        .is_err()
}

/// A client config for `FRONTEND` under `pki`.
fn frontend(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config(pki, &pki.leaf(FRONTEND).unwrap(), alpn)
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

fn addrs_of(u: &pb::Update) -> Vec<SocketAddr> {
    match u.update.as_ref() {
        Some(pb::update::Update::Add(set)) => set
            .addrs
            .iter()
            .map(|a| a.addr.unwrap().try_into().unwrap())
            .collect(),
        Some(pb::update::Update::Remove(set)) => {
            set.addrs.iter().map(|a| (*a).try_into().unwrap()).collect()
        }
        other => panic!("not an Add or Remove: {other:?}"),
    }
}

#[tokio::test]
async fn destination_plaintext_scripts_add_then_remove() {
    let stub = DestinationStub::plaintext().await;
    let a: SocketAddr = "10.1.2.3:8080".parse().unwrap();
    let b: SocketAddr = "[fd00::7]:8080".parse().unwrap();
    let gw = Addr {
        authority_override: Some("web.test.svc.cluster.local:8080".into()),
        labels: vec![("pod".into(), "web-0".into())],
        ..Addr::meshed(b, POD_ID)
    };
    let add = Step::Add(vec![Addr::meshed(a, POD_ID), gw]);
    stub.script(PATH, vec![add, Step::Remove(vec![a])]);
    let mut client = DestinationClient::connect(format!("http://{}", stub.addr))
        .await
        .unwrap();
    let mut s = client
        .get(get(PATH, "{\"ns\":\"test\"}"))
        .await
        .unwrap()
        .into_inner();
    let add = next(&mut s).await.unwrap().unwrap();
    assert_eq!(addrs_of(&add), vec![a, b]);
    let Some(pb::update::Update::Add(set)) = add.update else {
        unreachable!()
    };
    let w = &set.addrs[0];
    let dns = tls_identity::DnsLikeIdentity {
        name: POD_ID.into(),
    };
    assert_eq!(
        w.tls_identity,
        Some(pb::TlsIdentity {
            strategy: Some(tls_identity::Strategy::DnsLikeIdentity(dns.clone())),
            server_name: Some(dns),
        })
    );
    let h2 = Some(protocol_hint::Protocol::H2(protocol_hint::H2 {}));
    assert_eq!(w.protocol_hint.unwrap().protocol, h2);
    assert_eq!((w.weight, w.authority_override.as_ref()), (10_000, None));
    let o = set.addrs[1].authority_override.as_ref().unwrap();
    assert_eq!(o.authority_override, "web.test.svc.cluster.local:8080");
    assert_eq!(set.addrs[1].metric_labels["pod"], "web-0");
    assert_eq!(addrs_of(&next(&mut s).await.unwrap().unwrap()), vec![a]);
    assert!(
        quiet(&mut s).await,
        "the stream stays open after the script"
    );
    assert_eq!(stub.gets(PATH), 1);
    assert_eq!(stub.context_tokens(), vec!["{\"ns\":\"test\"}".to_string()]);
    // More updates on the open stream, then a clean end.
    stub.push(PATH, Step::NoEndpoints { exists: true });
    let u = next(&mut s).await.unwrap().unwrap();
    assert_eq!(u.update, no_endpoints(true));
    stub.push(PATH, Step::Close);
    assert!(
        next(&mut s).await.unwrap().is_none(),
        "Close ends the stream cleanly"
    );
    // stop() ends the open streams and the listener.
    let mut s = watch(&mut client, PATH).await;
    next(&mut s).await.unwrap().unwrap();
    next(&mut s).await.unwrap().unwrap();
    assert_eq!((stub.gets(PATH), stub.open_streams(PATH)), (2, 1));
    stub.stop();
    let cut = next(&mut s).await;
    assert!(cut.is_err(), "stop() cuts the stream: {cut:?}");
    assert!(TcpStream::connect(stub.addr).await.is_err());
}

#[tokio::test]
async fn destination_unscripted_scripted_errors_and_profiles() {
    let stub = DestinationStub::plaintext().await;
    let mut client = DestinationClient::connect(format!("http://{}", stub.addr))
        .await
        .unwrap();
    let path = "nope.test.svc.cluster.local:80";
    let mut s = watch(&mut client, path).await;
    let u = next(&mut s).await.unwrap().unwrap();
    assert_eq!(u.update, no_endpoints(false));
    assert!(quiet(&mut s).await, "the stream stays open");
    stub.not_found_as_status(true);
    let err = client.get(get(path, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(stub.gets(path), 2);
    // Error first: the Get fails; Error later: the stream ends with it. Pause: open, quiet.
    stub.script(
        "a.t.svc.cluster.local:1",
        vec![Step::Error(Code::Unavailable)],
    );
    let err = client
        .get(get("a.t.svc.cluster.local:1", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let add = Step::Add(vec![Addr::plain("127.0.0.1:9".parse().unwrap())]);
    stub.script(
        "b.t.svc.cluster.local:1",
        vec![add.clone(), Step::Error(Code::Internal)],
    );
    let mut s = watch(&mut client, "b.t.svc.cluster.local:1").await;
    next(&mut s).await.unwrap().unwrap();
    assert_eq!(next(&mut s).await.unwrap_err().code(), Code::Internal);
    stub.script("c.t.svc.cluster.local:1", vec![Step::Pause, add]);
    let mut s = watch(&mut client, "c.t.svc.cluster.local:1").await;
    assert!(quiet(&mut s).await);
    let err = client.get_profile(get(PATH, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

/// A connector for tonic: mTLS to one address, whatever the URI.
#[derive(Clone)]
struct TlsConnect(SocketAddr, Arc<rustls::ClientConfig>);

type Conn = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Conn>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Uri) -> Self::Future {
        let TlsConnect(addr, config) = self.clone();
        let conn = crossgate::tls::connect(addr, config, DST_ID);
        Box::pin(async move { conn.await.map(TokioIo::new) })
    }
}

async fn tls_client(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<DestinationClient<Channel>> {
    let ch = tonic::transport::Endpoint::from_static("http://dst.test")
        .connect_with_connector(TlsConnect(addr, config))
        .await
        .ok()?;
    Some(DestinationClient::new(ch))
}

#[tokio::test]
async fn destination_mtls_records_client_and_refuses_no_cert() {
    let pki = Pki::new().unwrap();
    let stub = DestinationStub::mtls(&pki, DST_ID).await;
    let a: SocketAddr = "10.1.2.3:8080".parse().unwrap();
    stub.script(PATH, vec![Step::Add(vec![Addr::plain(a)])]);
    let config = frontend(&pki, &[b"h2"]);
    let mut client = tls_client(stub.addr, config).await.unwrap();
    let mut s = watch(&mut client, PATH).await;
    assert_eq!(addrs_of(&next(&mut s).await.unwrap().unwrap()), vec![a]);
    assert_eq!(stub.client_ids(), vec![FRONTEND.to_string()]);
    // No client certificate: the handshake fails (TLS 1.3: the client may learn it late).
    let bare = no_client_auth(&pki.anchor_pem(), &[b"h2"]);
    if let Some(mut c) = tls_client(stub.addr, bare).await {
        assert!(c.get(get(PATH, "")).await.is_err());
    }
    eventually("the stub counts the refusal", || stub.refused() == 1).await;
    assert_eq!((stub.client_ids().len(), stub.gets(PATH)), (1, 1));
}

/// An HTTP/2 GET over `io`; (status, body, `x-backend`).
async fn h2_get<I>(io: I, uri: &str, orig_proto: Option<&str>) -> (u16, String, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(uri).header("x-test", "one");
    if let Some(p) = orig_proto {
        req = req.header("l5d-orig-proto", p);
    }
    let resp = send
        .send_request(req.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let backend = resp.headers()["x-backend"].to_str().unwrap().to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), backend)
}

#[tokio::test]
async fn meshed_app_serves_h2_and_records() {
    let pki = Pki::new().unwrap();
    let be = MeshedBackend::start(&pki, POD_ID, POD_ID, Mode::App).await;
    let config = frontend(&pki, &[b"h2"]);
    let tls = crossgate::tls::connect(be.addr, config, POD_ID)
        .await
        .unwrap();
    let uri = "http://web.test.svc.cluster.local:8080/x?y=1";
    let (status, body, backend) = h2_get(tls, uri, Some("HTTP/1.1")).await;
    assert_eq!((status, backend), (200, be.addr.to_string()));
    assert!(body.starts_with(&format!("GET {uri} HTTP/2.0\n")), "{body}");
    assert!(
        body.contains("\nx-test: one\n") && body.contains("l5d-orig-proto: HTTP/1.1"),
        "{body}"
    );
    let c = &be.connections()[0];
    assert_eq!(c.sni.as_deref(), Some(POD_ID));
    assert_eq!(c.alpn.as_deref(), Some("h2"));
    assert_eq!(c.client_id.as_deref(), Some(FRONTEND));
    let r = &be.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.version),
        ("GET", uri, http::Version::HTTP_2)
    );
    assert_eq!(
        (r.conn, r.orig_proto.as_deref(), r.header("X-Test")),
        (0, Some("HTTP/1.1"), Some("one"))
    );
    assert_eq!(be.refused(), 0);
}

#[tokio::test]
async fn meshed_refuses_wrong_sni_and_missing_client_cert() {
    let pki = Pki::new().unwrap();
    let be = MeshedBackend::start(&pki, POD_ID, POD_ID, Mode::App).await;
    let config = frontend(&pki, &[b"h2"]);
    let other = "other.test.serviceaccount.identity.linkerd.cluster.local";
    let refused = crossgate::tls::connect(be.addr, config, other).await;
    assert!(refused.is_err());
    eventually("wrong SNI refused", || be.refused() == 1).await;
    let bare = no_client_auth(&pki.anchor_pem(), &[b"h2"]);
    // TLS 1.3: the client's handshake may complete before the server checks its certificate.
    if let Ok(mut tls) = crossgate::tls::connect(be.addr, bare, POD_ID).await {
        let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    }
    eventually("missing client cert refused", || be.refused() == 2).await;
    assert!(be.connections().is_empty() && be.requests().is_empty());
}

async fn inbound(
    be: &MeshedBackend,
    pki: &Pki,
    header: &TransportHeader,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = frontend(pki, support::ALPN_TRANSPORT);
    let mut tls = crossgate::tls::connect(be.addr, config, POD_ID)
        .await
        .unwrap();
    tls.write_all(&header.encode()).await.unwrap();
    tls
}

#[tokio::test]
async fn meshed_inbound_decodes_header_then_echoes_or_serves_http() {
    let pki = Pki::new().unwrap();
    let be = MeshedBackend::start(&pki, POD_ID, POD_ID, Mode::Inbound).await;
    let header = |port, protocol| TransportHeader {
        port,
        name: Some("web.test.svc.cluster.local".into()),
        protocol,
    };
    // Opaque: echo until EOF.
    let mut tls = inbound(&be, &pki, &header(9899, None)).await;
    tls.write_all(b"opaque \x00\xff bytes").await.unwrap();
    tls.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tls.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"opaque \x00\xff bytes");
    // HTTP/2 after the header.
    let tls = inbound(&be, &pki, &header(8080, Some(Http2))).await;
    let (status, body, _) = h2_get(tls, "http://web.test.svc.cluster.local:8080/h2", None).await;
    assert!(
        status == 200
            && body.starts_with("GET http://web.test.svc.cluster.local:8080/h2 HTTP/2.0\n"),
        "{body}"
    );
    // HTTP/1.1 after the header.
    let mut tls = inbound(&be, &pki, &header(8081, Some(Http1))).await;
    tls.write_all(b"GET /h1 HTTP/1.1\r\nhost: web:8081\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tls.read_to_string(&mut raw).await.unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.contains("GET /h1 HTTP/1.1\nhost: web:8081\n"),
        "{raw}"
    );
    assert_eq!(
        be.headers_seen(),
        vec![
            header(9899, None),
            header(8080, Some(Http2)),
            header(8081, Some(Http1))
        ]
    );
    let versions: Vec<_> = be.requests().iter().map(|r| (r.conn, r.version)).collect();
    assert_eq!(
        versions,
        [(1, http::Version::HTTP_2), (2, http::Version::HTTP_11)]
    );
    let alpn = be.connections().into_iter().map(|c| c.alpn.unwrap());
    assert!(alpn.eq(["transport.l5d.io/v1"; 3]));
    // Without the transport ALPN the handshake fails (no common protocol).
    let config = frontend(&pki, &[b"h2"]);
    let refused = crossgate::tls::connect(be.addr, config, POD_ID).await;
    assert!(refused.is_err());
    eventually("no common ALPN refused", || be.refused() == 1).await;
}
