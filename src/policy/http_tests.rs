//! linkerd2-proxy's `policy/http/tests.rs`, row by row: HTTP routes and their
//! authorizations before and after a policy change, filters, rate limits, gRPC routes; and
//! requests to invalid and opaque servers.

use super::routes::{GrpcMatch, RequestMatch, Route, RoutePolicy, Rule};
use super::tests::{authz, caller, ids, server};
use super::*;
use std::time::Instant;

fn route_meta() -> Arc<Meta> {
    Meta::resource("gateway.networking.k8s.io", "httproute", "testrt")
}

pub(super) fn rule<M>(matches: Vec<M>, authzs: Vec<Authorization>) -> Rule<M> {
    Rule {
        matches,
        policy: RoutePolicy {
            meta: route_meta(),
            authorizations: authzs.into(),
        },
    }
}

pub(super) fn http_routes(rules: Vec<Rule<RequestMatch>>) -> Arc<[HttpRoute]> {
    Arc::from(vec![Route {
        hosts: vec![],
        rules,
    }])
}

fn method(m: http::Method) -> RequestMatch {
    RequestMatch {
        method: Some(m),
        ..RequestMatch::default()
    }
}

fn request(m: http::Method, uri: &str) -> http::Request<()> {
    http::Request::builder()
        .method(m)
        .uri(uri)
        .body(())
        .unwrap()
}

/// The http tests' connection: client 192.168.3.3 with identity `foo.bar.bah`, port 8080.
fn check(policy: &ServerPolicy, req: &http::Request<()>) -> Result<Labels, Denied> {
    let c = caller("foo.bar.bah", [192, 168, 3, 3]);
    check_request(policy, 8080, &c, req, Instant::now())
}

fn unauth_from(ip: &str, name: &str) -> Authorization {
    Authorization {
        meta: Meta::resource("policy.linkerd.io", "AuthorizationPolicy", name),
        ..authz(Authentication::Unauthenticated, &[ip], name)
    }
}

// http/tests.rs `http_route`, before and after the policy changes.
#[test]
fn http_route_rows() {
    use http::Method;
    let srv = |rules| ServerPolicy {
        meta: Meta::resource("policy.linkerd.io", "Server", "testsrv"),
        ..server(Protocol::Http(http_routes(rules)))
    };
    let before = srv(vec![
        rule(
            vec![method(Method::GET)],
            vec![unauth_from("192.168.3.3/32", "test")],
        ),
        rule(vec![method(Method::POST)], vec![]),
    ]);
    let after = srv(vec![
        rule(
            vec![method(Method::GET)],
            vec![unauth_from("172.2.2.2/32", "other")],
        ),
        rule(
            vec![method(Method::DELETE)],
            vec![unauth_from("192.168.3.3/32", "test")],
        ),
    ]);
    let denied = |route: bool| Labels {
        server: Meta::resource("policy.linkerd.io", "Server", "testsrv"),
        port: 8080,
        route: route.then(route_meta),
        authz: None,
    };
    let allowed = || Labels {
        authz: Some(Meta::resource(
            "policy.linkerd.io",
            "AuthorizationPolicy",
            "test",
        )),
        ..denied(true)
    };
    let rows = [
        (&before, Method::GET, Ok(allowed())),
        (
            &before,
            Method::POST,
            Err(Denied::Unauthorized(denied(true))),
        ),
        (
            &before,
            Method::DELETE,
            Err(Denied::RouteNotFound(denied(false))),
        ),
        (&after, Method::GET, Err(Denied::Unauthorized(denied(true)))),
        (
            &after,
            Method::POST,
            Err(Denied::RouteNotFound(denied(false))),
        ),
        (&after, Method::DELETE, Ok(allowed())),
    ];
    for (policy, m, want) in rows {
        assert_eq!(check(policy, &request(m.clone(), "/")), want, "{m}");
    }
}

// http/tests.rs `http_filter_header`, `http_filter_inject_failure`, and the gRPC ones: the
// gateway decides only who may pass; the route's filters are the pod's proxy's to apply when
// the request reaches it. The permit names the route.
#[test]
fn filters_are_left_to_the_pod() {
    let policy = server(Protocol::Http(http_routes(vec![rule(
        vec![method(http::Method::GET)],
        vec![unauth_from("192.168.3.3/32", "test")],
    )])));
    let permit = check(&policy, &request(http::Method::GET, "/")).unwrap();
    assert_eq!(permit.route, Some(route_meta()));
}

fn limited(total: u32, per_identity: u32) -> ServerPolicy {
    let all = authz(
        Authentication::Unauthenticated,
        &["0.0.0.0/0", "::/0"],
        "all",
    );
    let rate_limit = LocalRateLimit::new(
        None,
        Instant::now(),
        Some(total),
        Some(per_identity),
        vec![],
    );
    ServerPolicy {
        rate_limit,
        ..server(Protocol::Http(http_routes(vec![rule(vec![], vec![all])])))
    }
}

// http/tests.rs `rate_limit_allow` and `rate_limit_deny`.
#[test]
fn rate_limit_rows() {
    let get = request(http::Method::GET, "/");
    let room = limited(10, 5);
    assert!(check(&room, &get).is_ok());
    assert!(check(&room, &get).is_ok());
    let one = limited(10, 1);
    assert!(check(&one, &get).is_ok());
    match check(&one, &get) {
        Err(Denied::RateLimited(r)) => {
            assert_eq!((r.kind, r.rps), (LimitKind::PerIdentity, 1));
            assert_eq!(r.message(), "per-identity rate limit exceeded: 1rps");
            assert_eq!(r.retry_after_secs(), 1);
            assert_eq!(r.kind.scope(), "identity");
        }
        other => panic!("{other:?}"),
    }
    // Another caller has a bucket of its own.
    let other = caller("other.bar.bah", [192, 168, 3, 3]);
    assert!(check_request(&one, 8080, &other, &get, Instant::now()).is_ok());
}

// http/tests.rs `grpc_route`.
#[test]
fn grpc_route_rows() {
    let rpc = |method: &str| GrpcMatch {
        service: Some("foo.bar.bah".into()),
        method: Some(method.into()),
        headers: vec![],
    };
    let routes: Arc<[GrpcRoute]> = Arc::from(vec![Route {
        hosts: vec![],
        rules: vec![
            rule(
                vec![rpc("baz")],
                vec![unauth_from("192.168.3.3/32", "test")],
            ),
            rule(vec![rpc("qux")], vec![]),
        ],
    }]);
    let policy = server(Protocol::Grpc(routes));
    let post = |path| request(http::Method::POST, path);
    let ok = check(&policy, &post("/foo.bar.bah/baz")).unwrap();
    assert_eq!(ok.route, Some(route_meta()));
    assert!(matches!(
        check(&policy, &post("/foo.bar.bah/qux")),
        Err(Denied::Unauthorized(_))
    ));
    assert!(matches!(
        check(&policy, &post("/boo.bar.bah/bah")),
        Err(Denied::RouteNotFound(_))
    ));
    // gRPC routes match POST only.
    assert!(matches!(
        check(&policy, &request(http::Method::GET, "/foo.bar.bah/baz")),
        Err(Denied::RouteNotFound(_))
    ));
}

// An invalid policy refuses every request with its reason; an opaque server holds each
// request to its connection authorizations.
#[test]
fn invalid_and_opaque_servers() {
    let get = request(http::Method::GET, "/");
    match check(&ServerPolicy::invalid("path match: regex"), &get) {
        Err(Denied::Invalid(l, why)) => {
            assert_eq!((&*l.server.name, &*why), ("invalid", "path match: regex"));
        }
        other => panic!("{other:?}"),
    }
    let only = authz(ids(&["foo.bar.bah"], &[]), &["0.0.0.0/0"], "only");
    let policy = server(Protocol::Opaque(vec![only].into()));
    let permit = check(&policy, &get).unwrap();
    assert_eq!(
        (permit.route, permit.authz.map(|a| a.name.clone())),
        (None, Some("only".into()))
    );
    let other = caller("x.bar.bah", [192, 168, 3, 3]);
    assert!(check_request(&policy, 8080, &other, &get, Instant::now()).is_err());
}
