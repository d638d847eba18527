//! HTTP handling over an in-memory stream (`tokio::io::duplex`): `proxy::http::serve` built
//! from narrow handles (rules, upstream, telemetry, lifecycle), with no PKI, no TLS and no
//! listener on the client side. The backend is real (127.0.0.1), so what goes upstream is
//! what the gateway wrote. Covers a fixed target (transport-header session, the captured
//! Linkerd shape: absolute form, no Host, `l5d-orig-proto`) and plain mode (per request).

mod http_support;
mod support;

use crossgate::access::AccessLog;
use crossgate::authz::Policy;
use crossgate::lifecycle::Lifecycle;
use crossgate::metrics::Metrics;
use crossgate::plan::{Alpn, ClientInfo, HttpMode, HttpTarget};
use crossgate::proxy::http::{HttpContext, serve};
use crossgate::route::{Routes, Target};
use crossgate::rules::{Rules, RulesHandle};
use http_support::{Backend, get, h1_client, h2_client, send_h1, send_h2};
use std::collections::HashMap;
use std::sync::Arc;
use support::{FRONTEND, GATEWAY};

const WEB: &str = "web.demo.svc.cluster.local";

fn context(backend: std::net::SocketAddr) -> Arc<HttpContext> {
    support::watch_src_panics();
    let mut statics = HashMap::new();
    statics.insert((WEB.to_string(), 8080), vec![backend]);
    let rules = Arc::new(RulesHandle::new(Rules {
        routes: Routes::new("cluster.local", statics),
        policy: Policy {
            own_identity: GATEWAY.into(),
            rules: vec![],
        },
        allow_sources: None,
        generation: 0,
    }));
    let settings = crossgate::config::Server::default();
    let metrics = Arc::new(Metrics::new());
    // As Gateway::build does: configured targets are labels from the start.
    metrics.targets.reached(&Target {
        name: WEB.into(),
        port: 8080,
    });
    let discovery = Arc::new(crossgate::discovery::Discovery::new(&[]));
    Arc::new(HttpContext {
        upstream: Arc::new(crossgate::upstream::Upstream::new(
            discovery,
            None,
            metrics.clone(),
            settings.connect_timeout,
            crossgate::config::Balancer::default(),
        )),
        in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
        settings: Arc::new(settings),
        rules,
        metrics,
        lifecycle: Arc::new(Lifecycle::new(10)),
        access: AccessLog::Off,
        own_identity: GATEWAY.into(),
        routes: Default::default(),
    })
}

fn client() -> ClientInfo {
    ClientInfo {
        id: FRONTEND.into(),
        addr: "10.1.2.3:4567".parse().unwrap(),
        alpn: Alpn::Transport,
        sni: Some(GATEWAY.into()),
    }
}

/// Serves `mode`/`target` on one end of a duplex; returns the other end and the serving task,
/// which the test joins with [`served`] once its client is gone.
fn serve_on_duplex(
    ctx: &Arc<HttpContext>,
    mode: HttpMode,
    target: HttpTarget,
) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    let (client_end, gateway_end) = tokio::io::duplex(64 * 1024);
    let ctx = ctx.clone();
    let task = tokio::spawn(async move {
        let r = serve(
            &ctx,
            gateway_end,
            &client(),
            mode,
            target,
            Default::default(),
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
    });
    (client_end, task)
}

/// Joins the serving task after the client closed: it must end, within 5 s, without a panic
/// (its assertion that the connection ended cleanly included).
async fn served(task: tokio::task::JoinHandle<()>) {
    support::join_within(task, std::time::Duration::from_secs(5), "serve").await;
    support::assert_no_src_panic();
}

#[tokio::test]
async fn fixed_target_upgraded_http1_as_linkerd_sends_it() {
    let backend = Backend::start().await;
    let ctx = context(backend.addr);
    let target = HttpTarget::Fixed {
        target: Target {
            name: WEB.into(),
            port: 8080,
        },
        authorized: true,
    };
    let (io, task) = serve_on_duplex(&ctx, HttpMode::Http2, target);
    let mut send = h2_client(io).await;
    // What a Linkerd source proxy sends after the H2 hint: absolute form, no Host.
    let req = get(
        &format!("http://{WEB}:8080/x?y=1"),
        &[("l5d-orig-proto", "HTTP/1.1"), ("l5d-client-id", "forged")],
    );
    let answer = send_h2(&mut send, req).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("l5d-orig-proto"), Some("HTTP/1.1"));
    let seen = backend.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/x?y=1");
    assert_eq!(seen.header("host"), Some("web.demo.svc.cluster.local:8080"));
    assert_eq!(seen.header("l5d-client-id"), Some(FRONTEND));
    assert_eq!(
        seen.header("forwarded"),
        Some(http_support::forwarded(FRONTEND, &format!("{WEB}:8080")).as_str())
    );
    assert!(seen.header("l5d-orig-proto").is_none());
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "request_total{{direction=\"inbound\",tls=\"true\",client_id=\"{FRONTEND}\",authority=\"{WEB}:8080\"}} 1"
        )),
        "{metrics}"
    );
    drop(send);
    served(task).await;
}

#[tokio::test]
async fn plain_mode_routes_each_request_and_refuses_in_http() {
    let backend = Backend::start().await;
    let ctx = context(backend.addr);
    let (io, task) = serve_on_duplex(&ctx, HttpMode::Sniff, HttpTarget::PerRequest);
    let mut send = h1_client(io).await;
    let ok = get(
        "/a",
        &[
            ("host", "ignored.other.svc.cluster.local"),
            ("l5d-dst-canonical", "web.demo.svc.cluster.local:8080"),
        ],
    );
    assert_eq!(send_h1(&mut send, ok).await.status, 200);
    assert_eq!(backend.count(), 1);
    // Not in the cluster domain: 404 with l5d-proxy-error, nothing reaches the backend.
    let bad = get("/b", &[("host", "example.com")]);
    let answer = send_h1(&mut send, bad).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("l5d-proxy-error"), Some("bad gateway domain"));
    // A loop by Forwarded: 508.
    let looped = get(
        "/c",
        &[
            ("host", "web.demo.svc.cluster.local:8080"),
            ("forwarded", &format!("by={GATEWAY};for=x")),
        ],
    );
    assert_eq!(send_h1(&mut send, looped).await.status, 508);
    assert_eq!(backend.count(), 1);
    drop(send);
    served(task).await;
}

#[tokio::test]
async fn swapped_rules_apply_to_the_next_request_on_the_same_connection() {
    let backend = Backend::start().await;
    let ctx = context(backend.addr);
    let (io, task) = serve_on_duplex(&ctx, HttpMode::Http1, HttpTarget::PerRequest);
    let mut send = h1_client(io).await;
    let req = || get("/", &[("host", "web.demo.svc.cluster.local:8080")]);
    assert_eq!(send_h1(&mut send, req()).await.status, 200);
    let denied = Rules {
        routes: ctx.rules.load().routes.clone(),
        policy: Policy {
            own_identity: GATEWAY.into(),
            rules: vec![crossgate::authz::Rule {
                identities: vec![
                    "*.east.serviceaccount.identity.linkerd.cluster.local"
                        .parse()
                        .unwrap(),
                ],
                services: vec![crossgate::authz::Pattern::Any],
            }],
        },
        allow_sources: None,
        generation: 0,
    };
    ctx.rules.swap(denied);
    assert_eq!(ctx.rules.load().generation, 1);
    let answer = send_h1(&mut send, req()).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("l5d-proxy-error"), Some("unauthorized"));
    assert_eq!(backend.count(), 1);
    drop(send);
    served(task).await;
}
