//! Meshed upstreams, as Linkerd's gateway reaches them: endpoints and their identities from a
//! Destination controller of our own (tests/support/destination.rs), each dialled over mTLS
//! with the gateway's identity to a backend that requires a client certificate and checks SNI
//! (tests/support/meshed.rs). The backend sees the gateway's identity; SNI is the server name
//! even where it differs from the id; a leaf without the expected SAN is refused before any
//! request byte (the endpoint stays pending: fail-fast); an HTTP/1 request rides HTTP/2 with `l5d-orig-proto`; the proxy's inbound port
//! gets a transport header; the controller can be reached over mTLS; `dst_*` labels land.

mod http_support;
mod support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_support::{connect_tls, get, h1_client, h2_client, send_h1, send_h2, within};
use support::destination::{Addr, DestinationStub, Step};
use support::meshed::{MeshedBackend, Mode};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web.test.svc.cluster.local";
const WEB_ID: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";
const DST_ID: &str = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";

/// `[discovery]` pointing at `stub` (plaintext on loopback).
fn discovery(stub: &DestinationStub) -> String {
    format!(
        "[discovery]\ndestination_addr = \"{}\"\nstream_initial_timeout = \"2s\"\n\
         failfast_timeout = \"300ms\"\n",
        stub.addr
    )
}

fn header(port: u16, protocol: Option<SessionProtocol>) -> Vec<u8> {
    TransportHeader {
        port,
        name: Some(WEB.into()),
        protocol,
    }
    .encode()
}

/// A gateway whose PKI the meshed backends share, with `stub` as its controller.
async fn gateway(pki: crossgate::certs::Pki, extra: &str) -> TestGateway {
    let leaf = pki.leaf(GATEWAY).unwrap();
    support::start_with(pki, leaf, extra).await
}

async fn h2_through(
    gw: &TestGateway,
    port: u16,
) -> hyper::client::conn::http2::SendRequest<http_support::ReqBody> {
    let cfg = gw.client(FRONTEND, ALPN_TRANSPORT);
    let hdr = header(port, Some(SessionProtocol::Http2));
    h2_client(connect_tls(gw.addr, cfg, Some(&hdr)).await).await
}

#[tokio::test]
async fn the_pod_sees_the_gateways_identity_over_http2() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let pod = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let stub = DestinationStub::plaintext().await;
    let mut addr = Addr::meshed(pod.addr, WEB_ID);
    addr.labels = vec![("pod".into(), "web-0".into())];
    stub.script(
        &format!("{WEB}:9898"),
        vec![Step::Add(vec![addr]), Step::Pause],
    );
    let gw = gateway(pki, &discovery(&stub)).await;

    let mut h2 = h2_through(&gw, 9898).await;
    let url = format!("http://{WEB}:9898/hello");
    for _ in 0..3 {
        let answer = send_h2(&mut h2, get(&url, &[])).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let conns = pod.connections();
    assert_eq!(
        conns.len(),
        1,
        "one HTTP/2 connection carries every request"
    );
    assert_eq!(conns[0].client_id.as_deref(), Some(GATEWAY));
    assert_eq!(conns[0].sni.as_deref(), Some(WEB_ID));
    assert_eq!(conns[0].alpn, None, "no ALPN without a transport header");
    let reqs = pod.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].version, http::Version::HTTP_2);
    assert_eq!(reqs[0].header("l5d-client-id"), Some(FRONTEND));
    assert_eq!(reqs[0].orig_proto, None);
    // The leg to the pod is labelled as mTLS, with its identity and the controller's labels.
    let leg = format!(
        "tcp_open_total{{direction=\"outbound\",peer=\"dst\",tls=\"true\",server_id=\"{WEB_ID}\",\
         authority=\"{WEB}:9898\",target_addr=\"{}\",dst_pod=\"web-0\"}} 1",
        pod.addr
    );
    gw.wait_metric(&leg).await;
    gw.wait_metric("discovery_updates_total{op=\"add\"} 1")
        .await;
}

#[tokio::test]
async fn http1_rides_the_pods_http2_connection_with_l5d_orig_proto() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let pod = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let stub = DestinationStub::plaintext().await;
    stub.script(
        &format!("{WEB}:9898"),
        vec![Step::Add(vec![Addr::meshed(pod.addr, WEB_ID)]), Step::Pause],
    );
    let gw = gateway(pki, &discovery(&stub)).await;

    let hdr = header(9898, Some(SessionProtocol::Http1));
    let tls = connect_tls(gw.addr, gw.client(FRONTEND, ALPN_TRANSPORT), Some(&hdr)).await;
    let mut h1 = h1_client(tls).await;
    let answer = send_h1(&mut h1, get("/one", &[])).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("l5d-orig-proto"),
        None,
        "undone on the way back"
    );
    assert_eq!(send_h1(&mut h1, get("/two", &[])).await.status, 200);
    let reqs = pod.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].version, http::Version::HTTP_2);
    assert_eq!(reqs[0].orig_proto.as_deref(), Some("HTTP/1.1"));
    assert_eq!(reqs[0].header("transfer-encoding"), None);
    assert_eq!(reqs[0].uri, format!("http://{WEB}:9898/one"));
    assert_eq!(pod.connections().len(), 1);
}

#[tokio::test]
async fn sni_is_the_server_name_and_the_leaf_must_name_the_server_id() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let name = "web-sni.test.serviceaccount.identity.linkerd.cluster.local";
    // The leaf names WEB_ID; the pod answers only to SNI `name`.
    let pod = MeshedBackend::start(&pki, WEB_ID, name, Mode::App).await;
    // An impostor: answers to SNI WEB_ID but its leaf names another identity.
    let other = "db.test.serviceaccount.identity.linkerd.cluster.local";
    let impostor = MeshedBackend::start(&pki, other, WEB_ID, Mode::App).await;
    let stub = DestinationStub::plaintext().await;
    let mut good = Addr::meshed(pod.addr, WEB_ID);
    good.server_name = Some(name.into());
    stub.script(
        &format!("{WEB}:9898"),
        vec![Step::Add(vec![good]), Step::Pause],
    );
    let bad = Addr::meshed(impostor.addr, WEB_ID);
    stub.script(
        &format!("{WEB}:9999"),
        vec![Step::Add(vec![bad]), Step::Pause],
    );
    let gw = gateway(pki, &discovery(&stub)).await;

    let mut h2 = h2_through(&gw, 9898).await;
    let ok = send_h2(&mut h2, get(&format!("http://{WEB}:9898/"), &[])).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(pod.connections()[0].sni.as_deref(), Some(name));

    // The impostor never becomes a ready endpoint: the request fails fast.
    let mut h2 = h2_through(&gw, 9999).await;
    let refused = send_h2(&mut h2, get(&format!("http://{WEB}:9999/"), &[])).await;
    assert_eq!(refused.status, 504, "{}", refused.text());
    let why = refused.header("l5d-proxy-error").unwrap_or_default();
    assert_eq!(why, "service in fail-fast");
    // Never reached, so not yet a label of its own.
    gw.wait_metric(
        "outbound_http_balancer_endpoints{authority=\"other\",endpoint_state=\"pending\"} 1",
    )
    .await;
    gw.wait_metric(&format!(
        "outbound_http_balancer_endpoints{{authority=\"{WEB}:9898\",endpoint_state=\"ready\"}} 1"
    ))
    .await;
    assert!(
        impostor.requests().is_empty(),
        "nothing reached the impostor"
    );
    assert!(
        impostor
            .connections()
            .iter()
            .all(|c| c.client_id.is_none() || c.sni.is_some())
    );
}

/// A pod's inbound proxy (its application port 9898 opaque, reached through the proxy's
/// port), the controller naming it, the gateway, and a client's opaque stream to it.
async fn opaque_to_the_pods_inbound_port() -> (
    MeshedBackend,
    DestinationStub,
    TestGateway,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let pki = crossgate::certs::Pki::new().unwrap();
    let inbound = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::Inbound).await;
    let stub = DestinationStub::plaintext().await;
    // The application port 9898 of the pod at the inbound proxy's address; opaque.
    let app: std::net::SocketAddr = format!("{}:9898", inbound.addr.ip()).parse().unwrap();
    let mut opaque = Addr::plain(app);
    opaque.identity = Some(WEB_ID.into());
    opaque.opaque_transport = Some(u32::from(inbound.addr.port()));
    stub.script(
        &format!("{WEB}:9898"),
        vec![Step::Add(vec![opaque]), Step::Pause],
    );
    let gw = gateway(pki, &discovery(&stub)).await;

    let cfg = gw.client(FRONTEND, ALPN_TRANSPORT);
    let tls = connect_tls(gw.addr, cfg, Some(&header(9898, None))).await;
    (inbound, stub, gw, tls)
}

#[tokio::test]
async fn the_inbound_port_gets_a_transport_header_first() {
    let (inbound, _stub, _gw, mut tls) = opaque_to_the_pods_inbound_port().await;
    tls.write_all(b"opaque bytes").await.unwrap();
    let mut back = [0u8; 12];
    within(5, "echo", tls.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"opaque bytes");
    let seen = inbound.headers_seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].port, seen[0].name.as_deref(), seen[0].protocol),
        (9898, None, None)
    );
    let conn = &inbound.connections()[0];
    assert_eq!(conn.alpn.as_deref(), Some("transport.l5d.io/v1"));
    assert_eq!(conn.client_id.as_deref(), Some(GATEWAY));
}

/// Opaque bytes in bulk through an mTLS upstream: both TLS legs read ahead beneath rustls
/// (`crossgate::wire`), and 4 MiB each way, written in odd-sized pieces while the echo is read
/// back, arrive whole and in order.
#[tokio::test]
async fn a_bulk_opaque_stream_through_the_pods_proxy_arrives_whole() {
    let (_inbound, _stub, _gw, tls) = opaque_to_the_pods_inbound_port().await;
    let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut rx, mut tx) = tokio::io::split(tls);
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for piece in sent.chunks(12_345) {
                tx.write_all(piece).await.unwrap();
            }
            tx
        })
    };
    let mut back = vec![0u8; sent.len()];
    within(30, "bulk echo", rx.read_exact(&mut back))
        .await
        .unwrap();
    let _tx = writer.await.unwrap();
    assert!(back == sent, "the echo differs from what was sent");
}

#[tokio::test]
async fn the_controller_is_reached_over_mtls_as_the_gateway() {
    let pki = crossgate::certs::Pki::new().unwrap();
    let pod = MeshedBackend::start(&pki, WEB_ID, WEB_ID, Mode::App).await;
    let stub = DestinationStub::mtls(&pki, DST_ID).await;
    stub.script(
        &format!("{WEB}:9898"),
        vec![Step::Add(vec![Addr::meshed(pod.addr, WEB_ID)]), Step::Pause],
    );
    // 127.0.0.1 would allow plaintext; a name makes the gateway speak TLS, checked against it.
    let extra = format!(
        "[discovery]\ndestination_addr = \"localhost:{}\"\ndestination_name = \"{DST_ID}\"\n\
         context_token = \"{{\\\"ns\\\":\\\"linkerd-multicluster\\\"}}\"\n",
        stub.addr.port()
    );
    let gw = gateway(pki, &extra).await;
    let mut h2 = h2_through(&gw, 9898).await;
    let answer = send_h2(&mut h2, get(&format!("http://{WEB}:9898/"), &[])).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(stub.client_ids(), vec![GATEWAY.to_string()]);
    assert_eq!(
        stub.context_tokens(),
        vec!["{\"ns\":\"linkerd-multicluster\"}".to_string()]
    );
}
