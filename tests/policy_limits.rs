//! `[policy]`, continued: the pod's local rate limit keyed by the caller's identity (one
//! caller limited, 429 with `Retry-After`, another not); the controller unreachable with
//! `unknown = "deny"` and `"allow"`; a pod the controller gives no `pod` label is not checked;
//! an opaque connection the pod's policy refuses is closed before any byte reaches the pod,
//! and an open one is cut when the policy changes and no longer admits it.

mod http_support;
mod support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http::Method;
use http_support::{Answer, ReqBody, closed_port, connect_tls, empty, get, h2_client, request};
use http_support::{send_h2, within};
use hyper::client::conn::http2::SendRequest;
use support::meshed::Mode;
use support::policy::{Opts, WEB, WORKLOAD, World, detect, mesh_tls, opaque, rate_limit};
use support::{ALPN_TRANSPORT, FRONTEND};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OTHER: &str = "billing.east.serviceaccount.identity.linkerd.cluster.local";
const ALL: &[&str] = &["0.0.0.0/0", "::/0"];

fn header(protocol: Option<SessionProtocol>) -> Vec<u8> {
    TransportHeader {
        port: 9898,
        name: Some(WEB.into()),
        protocol,
    }
    .encode()
}

async fn h2_as(w: &World, identity: &str) -> SendRequest<ReqBody> {
    let cfg = w.gw.client(identity, ALPN_TRANSPORT);
    let hdr = header(Some(SessionProtocol::Http2));
    h2_client(connect_tls(w.gw.addr, cfg, Some(&hdr)).await).await
}

async fn get_path(h2: &mut SendRequest<ReqBody>, path: &str) -> Answer {
    send_h2(h2, get(&format!("http://{WEB}:9898{path}"), &[])).await
}

#[tokio::test]
async fn a_per_identity_rate_limit_limits_each_caller_on_its_own() {
    let anyone = vec![mesh_tls("anyone", &[], &[""], ALL)];
    let w = World::start(Opts {
        server: Some(detect("web", anyone, vec![], Some(rate_limit(0, 2, &[])))),
        ..Opts::default()
    })
    .await;
    let mut other = h2_as(&w, OTHER).await;
    // Two requests a second per identity: the burst is two, then 429 until a cell is free.
    assert_eq!(get_path(&mut other, "/1").await.status, 200);
    assert_eq!(get_path(&mut other, "/2").await.status, 200);
    let mut limited = None;
    let mut passed = 2;
    for i in 3..=12 {
        let a = get_path(&mut other, &format!("/{i}")).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        passed += 1;
    }
    let limited = limited.expect("a 429 within ten requests at 2 per second");
    assert_eq!(
        limited.header("l5d-proxy-error"),
        Some("per-identity rate limit exceeded: 2rps")
    );
    assert_eq!(limited.header("retry-after"), Some("1"));
    // gRPC: RESOURCE_EXHAUSTED.
    let grpc = [("content-type", "application/grpc")];
    let url = format!("http://{WEB}:9898/pkg.Svc/Call");
    let a = send_h2(&mut other, request(Method::POST, &url, &grpc, empty())).await;
    let limited_grpc = a.header("grpc-status") == Some("8");
    passed += usize::from(!limited_grpc);
    // Another caller has a bucket of its own: not limited by the first one's requests.
    let mut front = h2_as(&w, FRONTEND).await;
    assert_eq!(get_path(&mut front, "/front-1").await.status, 200);
    assert_eq!(get_path(&mut front, "/front-2").await.status, 200);
    assert_eq!(
        w.pod.requests().len(),
        passed + 2,
        "no limited request reached the pod"
    );
    let line = format!(
        "inbound_http_local_ratelimit_total{{{},ratelimit_group=\"policy.linkerd.io\",\
         ratelimit_kind=\"httplocalratelimitpolicy\",ratelimit_name=\"web-limit\",\
         ratelimit_scope=\"identity\"}} {}",
        w.server_labels(OTHER, "web"),
        1 + usize::from(limited_grpc)
    );
    w.gw.wait_metric(&line).await;
    assert!(!w.gw.metrics().await.contains(&format!(
        "inbound_http_local_ratelimit_total{{client_id=\"{FRONTEND}\""
    )));
}

#[tokio::test]
async fn controller_down_unknown_deny_then_allow() {
    for (keys, status, decision) in [
        ("initial_timeout = \"300ms\"\n", 403, "deny"),
        (
            "initial_timeout = \"300ms\"\nunknown = \"allow\"\n",
            200,
            "allow",
        ),
    ] {
        let w = World::start(Opts {
            policy_addr: Some(closed_port()),
            keys,
            ..Opts::default()
        })
        .await;
        let mut front = h2_as(&w, FRONTEND).await;
        let a = get_path(&mut front, "/x").await;
        assert_eq!(a.status, status, "{decision}: {}", a.text());
        assert_eq!(
            w.pod.requests().len(),
            usize::from(status == 200),
            "{decision}"
        );
        w.gw.wait_metric(&format!(
            "policy_unknown_total{{decision=\"{decision}\"}} 1"
        ))
        .await;
        w.gw.wait_metric("policy_watches{state=\"reconnecting\"} 1")
            .await;
        if status == 403 {
            // Refused as the pod's proxy refuses under its `default:deny` policy; the target
            // was not yet known to be real when routed: `other`.
            let line = format!(
                "inbound_http_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"other\",\
                 srv_group=\"\",srv_kind=\"default\",srv_name=\"deny\",srv_port=\"{}\"}} 1",
                w.port
            );
            w.gw.wait_metric(&line).await;
        }
    }
}

#[tokio::test]
async fn a_pod_without_labels_is_not_checked() {
    let nobody = detect(
        "web",
        vec![mesh_tls("nobody", &["x.y.z"], &[], ALL)],
        vec![],
        None,
    );
    let w = World::start(Opts {
        labelled: false,
        server: Some(nobody),
        ..Opts::default()
    })
    .await;
    let mut other = h2_as(&w, OTHER).await;
    assert_eq!(get_path(&mut other, "/unchecked").await.status, 200);
    assert_eq!(w.pod.requests().len(), 1);
    assert_eq!(w.policy.all_watches(), 0, "no policy asked for");
}

#[tokio::test]
async fn an_opaque_connection_the_pods_policy_refuses_is_closed_or_cut() {
    let server = opaque("web-tcp", vec![mesh_tls("callers", &[FRONTEND], &[], ALL)]);
    let w = World::start(Opts {
        mode: Mode::Inbound,
        server: Some(server),
        ..Opts::default()
    })
    .await;
    let hdr = header(None);
    let mut ok = connect_tls(w.gw.addr, w.gw.client(FRONTEND, ALPN_TRANSPORT), Some(&hdr)).await;
    ok.write_all(b"opaque bytes").await.unwrap();
    let mut back = [0u8; 12];
    within(5, "echo", ok.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"opaque bytes");
    let mut denied = connect_tls(w.gw.addr, w.gw.client(OTHER, ALPN_TRANSPORT), Some(&hdr)).await;
    let _ = denied.write_all(b"never").await;
    support::assert_closed_without_bytes(&mut denied).await;
    assert_eq!(
        w.pod.connections().len(),
        1,
        "the refused caller reached nothing"
    );
    assert_eq!(w.pod.headers_seen().len(), 1);
    let deny = format!(
        "inbound_tcp_authz_deny_total{{{}}} 1",
        w.server_labels(OTHER, "web-tcp")
    );
    w.gw.wait_metric(&deny).await;
    let allow = format!(
        "inbound_tcp_authz_allow_total{{{},authz_group=\"policy.linkerd.io\",\
         authz_kind=\"authorizationpolicy\",authz_name=\"callers\"}} 1",
        w.server_labels(FRONTEND, "web-tcp")
    );
    w.gw.wait_metric(&allow).await;
    assert_eq!(w.policy.watches(WORKLOAD, 9898), 1);

    // The policy changes: the open stream it no longer admits is cut, as the pod's proxy cuts
    // it; the newly admitted caller gets through.
    let now = opaque("web-tcp", vec![mesh_tls("callers", &[OTHER], &[], ALL)]);
    w.policy.set(WORKLOAD, 9898, now);
    support::assert_closed_without_bytes(&mut ok).await;
    let terminated = format!(
        "inbound_tcp_authz_terminate_total{{{}}} 1",
        w.server_labels(FRONTEND, "web-tcp")
    );
    w.gw.wait_metric(&terminated).await;
    let mut other = connect_tls(w.gw.addr, w.gw.client(OTHER, ALPN_TRANSPORT), Some(&hdr)).await;
    other.write_all(b"now admitted").await.unwrap();
    let mut back = [0u8; 12];
    within(5, "echo", other.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"now admitted");
}
