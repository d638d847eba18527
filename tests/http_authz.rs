//! Authorization of HTTP sessions named by the transport header: the rules are applied once
//! per connection, and a denied client gets a 403 (or gRPC PERMISSION_DENIED) on every
//! request, never reaching the backend.

mod support;
use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering;
use support::*;

const TARGET: &str = "web.test.svc.cluster.local";

async fn gateway() -> (TestGateway, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (backend, accepted) = echo_backend().await;
    let gw = start(&format!(
        "{}[[authorization]]\nidentities = [\"*.east.serviceaccount.identity.linkerd.cluster.local\"]\n",
        static_route(&format!("{TARGET}:8080"), backend)
    ))
    .await;
    (gw, accepted)
}

fn header(protocol: SessionProtocol) -> TransportHeader {
    TransportHeader {
        port: 8080,
        name: Some(TARGET.into()),
        protocol: Some(protocol),
    }
}

#[tokio::test]
async fn denied_http2_session_answers_403_per_request() {
    let (gw, accepted) = gateway().await;
    let tls = open(
        &gw,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        &header(SessionProtocol::Http2),
    )
    .await
    .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for grpc in [false, false, true] {
        let mut req = http::Request::post(format!("http://{TARGET}:8080/x"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        if grpc {
            req.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
        }
        let resp = send.send_request(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let _ = resp.into_body().collect().await;
        assert_eq!(headers["l5d-proxy-error"], "unauthorized");
        if grpc {
            assert_eq!(status, 200);
            assert_eq!(headers["grpc-status"], "7");
        } else {
            assert_eq!(status, 403);
        }
    }
    gw.wait_metric(&format!(
        "inbound_http_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"{TARGET}:8080\"}} 3"
    ))
    .await;
    assert!(
        !gw.metrics()
            .await
            .contains("inbound_tcp_authz_allow_total{"),
        "a denied session was counted as allowed"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn denied_http1_session_answers_403_and_allowed_identity_passes_authz() {
    let (gw, accepted) = gateway().await;
    let mut tls = open(
        &gw,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        &header(SessionProtocol::Http1),
    )
    .await
    .unwrap();
    use tokio::io::AsyncWriteExt;
    tls.write_all(b"GET /x HTTP/1.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_all(&mut tls).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("l5d-proxy-error: unauthorized"), "{answer}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    // An identity the rule allows is counted as allowed at the connection.
    let east = "api.east.serviceaccount.identity.linkerd.cluster.local";
    let tls = open(
        &gw,
        gw.client(east, ALPN_TRANSPORT),
        &header(SessionProtocol::Http1),
    )
    .await
    .unwrap();
    drop(tls);
    gw.wait_metric(&format!(
        "inbound_tcp_authz_allow_total{{client_id=\"{east}\",authority=\"{TARGET}:8080\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}
