//! `[policy]`: each caller held to the target pod's own inbound policy, as the pod's proxy
//! would have held it had the caller come to it directly. A meshed pod (mTLS, as Linkerd's
//! gateway reaches it) named by a Destination controller of our own with its `pod` and
//! `namespace` labels, and a policy controller of our own (tests/support/policy.rs) serving
//! the pod's `Server`. Callers are admitted by exact identity, by suffix, by the empty suffix,
//! per route, without authentication from a network; the others get 403 and the pod sees
//! nothing of them; a policy changed mid-traffic decides the next request; a broken watch
//! keeps the last policy.

mod http_support;
mod support;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use http::Method;
use http_support::{Answer, ReqBody, connect_tls, empty, get, h2_client, request, send_h2};
use hyper::client::conn::http2::SendRequest;
use support::policy::{Opts, WEB, WORKLOAD, World, detect, http_route, mesh_tls, unauthenticated};
use support::{ALPN_TRANSPORT, FRONTEND};

const OTHER: &str = "billing.east.serviceaccount.identity.linkerd.cluster.local";
const ALL: &[&str] = &["0.0.0.0/0", "::/0"];
const WEST: &str = "west.serviceaccount.identity.linkerd.cluster.local";

/// An HTTP/2 connection through the gateway to `web:9898` as `identity`, as a Linkerd
/// source proxy opens one.
async fn h2_as(w: &World, identity: &str) -> SendRequest<ReqBody> {
    let header = TransportHeader {
        port: 9898,
        name: Some(WEB.into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    let cfg = w.gw.client(identity, ALPN_TRANSPORT);
    h2_client(connect_tls(w.gw.addr, cfg, Some(&header)).await).await
}

async fn get_path(h2: &mut SendRequest<ReqBody>, path: &str) -> Answer {
    send_h2(h2, get(&format!("http://{WEB}:9898{path}"), &[])).await
}

fn assert_denied(a: &Answer) {
    assert_eq!(a.status, 403, "{}", a.text());
    let why = a.header("l5d-proxy-error");
    assert_eq!(why, Some("unauthorized request on route"));
}

/// The paths the pod received, in order.
fn seen(w: &World) -> Vec<String> {
    let prefix = format!("http://{WEB}:9898");
    w.pod
        .requests()
        .iter()
        .map(|r| r.uri.strip_prefix(&prefix).unwrap_or(&r.uri).to_string())
        .collect()
}

#[tokio::test]
async fn callers_admitted_by_identity_suffix_or_empty_suffix_and_no_one_else() {
    let exact = detect(
        "web",
        vec![mesh_tls("callers", &[FRONTEND], &[], ALL)],
        vec![],
        None,
    );
    let w = World::start(Opts {
        server: Some(exact),
        ..Opts::default()
    })
    .await;
    let (mut front, mut other) = (h2_as(&w, FRONTEND).await, h2_as(&w, OTHER).await);

    assert_eq!(get_path(&mut front, "/exact").await.status, 200);
    assert_denied(&get_path(&mut other, "/exact-denied").await);
    // gRPC callers get PERMISSION_DENIED.
    let grpc = [("content-type", "application/grpc")];
    let url = format!("http://{WEB}:9898/pkg.Svc/Call");
    let a = send_h2(&mut other, request(Method::POST, &url, &grpc, empty())).await;
    assert_eq!(
        (a.status.as_u16(), a.header("grpc-status")),
        (200, Some("7"))
    );
    assert_eq!(
        seen(&w),
        ["/exact"],
        "nothing of the denied caller reached the pod"
    );
    let deny = format!(
        "inbound_http_authz_deny_total{{{},route_group=\"\",route_kind=\"default\",\
         route_name=\"default\"}} 2",
        w.server_labels(OTHER, "web")
    );
    w.gw.wait_metric(&deny).await;

    // By suffix, on the same connections: the next request is decided by the new policy.
    w.policy.set(
        WORKLOAD,
        w.port,
        detect(
            "web",
            vec![mesh_tls("callers", &[], &[WEST], ALL)],
            vec![],
            None,
        ),
    );
    w.gw.wait_metric("policy_updates_total{result=\"ok\"} 2")
        .await;
    assert_eq!(get_path(&mut front, "/suffix").await.status, 200);
    assert_denied(&get_path(&mut other, "/suffix-denied").await);

    // The empty suffix admits every identity.
    w.policy.set(
        WORKLOAD,
        w.port,
        detect(
            "web",
            vec![mesh_tls("anyone", &[], &[""], ALL)],
            vec![],
            None,
        ),
    );
    w.gw.wait_metric("policy_updates_total{result=\"ok\"} 3")
        .await;
    assert_eq!(get_path(&mut other, "/empty-suffix").await.status, 200);
    assert_eq!(seen(&w), ["/exact", "/suffix", "/empty-suffix"]);
    let allow = format!(
        "inbound_http_authz_allow_total{{{},route_group=\"\",route_kind=\"default\",\
         route_name=\"default\",authz_group=\"policy.linkerd.io\",\
         authz_kind=\"authorizationpolicy\",authz_name=\"anyone\"}} 1",
        w.server_labels(OTHER, "web")
    );
    w.gw.wait_metric(&allow).await;
    let deny = deny.replace("} 2", "} 3");
    w.gw.wait_metric(&deny).await;
    // One watch for the pod's port, shared by both connections.
    assert_eq!(w.policy.watches(WORKLOAD, w.port), 1);
    w.gw.wait_metric("policy_watches{state=\"active\"} 1").await;

    // The controller goes away: the last policy stays in force while the watch reconnects.
    w.policy.stop();
    w.gw.wait_metric("policy_watches{state=\"reconnecting\"} 1")
        .await;
    assert_eq!(get_path(&mut other, "/controller-down").await.status, 200);
    assert_eq!(seen(&w).len(), 4);
}

#[tokio::test]
async fn a_route_admits_one_identity_on_one_path() {
    let admin = http_route(
        "admin",
        "/admin",
        vec![mesh_tls("admins", &[FRONTEND], &[], ALL)],
    );
    let api = http_route("api", "/api", vec![mesh_tls("anyone", &[], &[""], ALL)]);
    let w = World::start(Opts {
        server: Some(detect("web", vec![], vec![admin, api], None)),
        ..Opts::default()
    })
    .await;
    let mut front = h2_as(&w, FRONTEND).await;
    assert_eq!(get_path(&mut front, "/admin/panel").await.status, 200);
    let mut other = h2_as(&w, OTHER).await;
    assert_eq!(get_path(&mut other, "/api/items").await.status, 200);
    assert_denied(&get_path(&mut other, "/admin").await);
    let none = get_path(&mut other, "/elsewhere").await;
    assert_eq!(none.status, 404, "{}", none.text());
    assert_eq!(
        none.header("l5d-proxy-error"),
        Some("no route found for request")
    );
    assert_eq!(seen(&w), ["/admin/panel", "/api/items"]);

    let route = |name: &str| {
        format!("route_group=\"policy.linkerd.io\",route_kind=\"httproute\",route_name=\"{name}\"")
    };
    let deny = format!(
        "inbound_http_authz_deny_total{{{},{}}} 1",
        w.server_labels(OTHER, "web"),
        route("admin")
    );
    let allow = format!(
        "inbound_http_authz_allow_total{{{},{},authz_group=\"policy.linkerd.io\",\
         authz_kind=\"authorizationpolicy\",authz_name=\"anyone\"}} 1",
        w.server_labels(OTHER, "web"),
        route("api")
    );
    let missing = format!(
        "inbound_http_route_not_found_total{{{}}} 1",
        w.server_labels(OTHER, "web")
    );
    for line in [deny, allow, missing] {
        w.gw.wait_metric(&line).await;
    }
}

#[tokio::test]
async fn unauthenticated_callers_by_network() {
    let from =
        |name: &str, net: &str| detect("web", vec![unauthenticated(name, &[net])], vec![], None);
    let w = World::start(Opts {
        server: Some(from("from-pods", "10.0.0.0/8")),
        ..Opts::default()
    })
    .await;
    // The gateway sees the caller at 127.0.0.1: outside 10.0.0.0/8.
    let mut front = h2_as(&w, FRONTEND).await;
    assert_denied(&get_path(&mut front, "/from-10").await);
    w.policy
        .set(WORKLOAD, w.port, from("from-loopback", "127.0.0.0/8"));
    w.gw.wait_metric("policy_updates_total{result=\"ok\"} 2")
        .await;
    assert_eq!(get_path(&mut front, "/from-127").await.status, 200);
    w.policy.set(
        WORKLOAD,
        w.port,
        from("not-me", "127.0.0.0/8 except 127.0.0.1/32"),
    );
    w.gw.wait_metric("policy_updates_total{result=\"ok\"} 3")
        .await;
    assert_denied(&get_path(&mut front, "/excepted").await);
    assert_eq!(seen(&w), ["/from-127"]);
}
