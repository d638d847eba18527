//! linkerd2-proxy's inbound policy tests, row by row, against the pure decision:
//! `app/inbound/src/policy.rs` (`is_tls_authorized`), `policy/tcp/tests.rs`
//! (`check_authorized`), `policy/http/tests.rs` (routes, gRPC routes, rate limits). Where
//! the proxy's case cannot arise at the gateway (a client without TLS), it says so.

use super::routes::{GrpcMatch, RequestMatch, Route, RoutePolicy, Rule};
use super::*;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "testsa.testns.serviceaccount.identity.linkerd.cluster.local";

fn caller(id: &str, ip: [u8; 4]) -> Caller<'_> {
    Caller {
        id,
        addr: IpAddr::from(ip),
    }
}

/// The tcp tests' client: 192.0.2.3.
fn client(id: &str) -> Caller<'_> {
    caller(id, [192, 0, 2, 3])
}

fn net(s: &str) -> Network {
    Network {
        net: s.parse().unwrap(),
        except: vec![],
    }
}

fn authz(authentication: Authentication, networks: &[&str], name: &str) -> Authorization {
    Authorization {
        networks: networks.iter().map(|n| net(n)).collect(),
        authentication,
        meta: Meta::resource("policy.linkerd.io", "serverauthorization", name),
    }
}

fn ids(identities: &[&str], suffixes: &[&str]) -> Authentication {
    Authentication::TlsAuthenticated {
        identities: identities.iter().map(|i| Arc::from(*i)).collect(),
        suffixes: suffixes.iter().map(|s| Suffix(Arc::from(*s))).collect(),
    }
}

fn server(protocol: Protocol) -> ServerPolicy {
    ServerPolicy {
        meta: Meta::resource("policy.linkerd.io", "server", "test"),
        protocol,
        rate_limit: LocalRateLimit::none(),
    }
}

fn labels(server: &str, port: u16, authz: Option<Arc<Meta>>) -> Labels {
    Labels {
        server: Meta::resource("policy.linkerd.io", "server", server),
        port,
        route: None,
        authz,
    }
}

// `is_tls_authorized` (policy.rs): one authorization, networks that admit the client.
#[test]
fn tls_authorization_rows() {
    let rows: [(&str, &[&str], &[&str], bool); 9] = [
        // client, identities, suffixes, authorized
        (
            "spiffe://some-root/some-workload",
            &["spiffe://some-root/some-workload"],
            &[],
            true,
        ),
        (
            "spiffe://some-root/some-workload-1",
            &["spiffe://some-root/some-workload-2"],
            &[],
            false,
        ),
        ("some.id.local", &["some.id.local"], &[], true),
        ("some.id.local.one", &["some.id.local.two"], &[], false),
        ("some.id.local", &[], &["id.local"], true),
        ("some.id.local", &[], &["another-id.local"], false),
        // A suffix never matches a URI identity.
        (
            "spiffe://some-root/some-workload-1",
            &[],
            &["some-workload-1"],
            false,
        ),
        (
            "spiffe://some-root/some-workload-1",
            &[
                "spiffe://some-root/some-workload-1",
                "some.workload.one",
                "some.workload.two",
            ],
            &[],
            true,
        ),
        (
            "some.workload.one",
            &[
                "spiffe://some-root/some-workload-1",
                "some.workload.one",
                "some.workload.two",
            ],
            &[],
            true,
        ),
    ];
    for (id, identities, suffixes, want) in rows {
        let a = authz(ids(identities, suffixes), &["0.0.0.0/0"], "name");
        assert_eq!(is_authorized(&a, &client(id)), want, "{id}");
    }
}

// tcp/tests.rs `unauthenticated_allowed`.
#[test]
fn tcp_unauthenticated_allowed() {
    let a = authz(Authentication::Unauthenticated, &["192.0.2.0/24"], "unauth");
    let policy = server(Protocol::Opaque(vec![a].into()));
    let permitted = check_connection(&policy, 1000, &client(CLIENT_ID));
    let unauth = Meta::resource("policy.linkerd.io", "serverauthorization", "unauth");
    assert_eq!(permitted, Ok(labels("test", 1000, Some(unauth))));
}

// tcp/tests.rs `authenticated_identity`.
#[test]
fn tcp_authenticated_identity() {
    let a = authz(ids(&[CLIENT_ID], &[]), &["192.0.2.0/24"], "tls-auth");
    let policy = server(Protocol::Opaque(vec![a].into()));
    let tls_auth = Meta::resource("policy.linkerd.io", "serverauthorization", "tls-auth");
    assert_eq!(
        check_connection(&policy, 1000, &client(CLIENT_ID)),
        Ok(labels("test", 1000, Some(tls_auth)))
    );
    let other = "othersa.testns.serviceaccount.identity.linkerd.cluster.local";
    assert_eq!(
        check_connection(&policy, 1000, &client(other)),
        Err(Denied::Unauthorized(labels("test", 1000, None)))
    );
}

// tcp/tests.rs `authenticated_suffix`.
#[test]
fn tcp_authenticated_suffix() {
    let suffix = Suffix::from_parts(&["cluster".into(), "local".into()]);
    assert_eq!(suffix, Suffix(".cluster.local".into()));
    let a = Authorization {
        authentication: Authentication::TlsAuthenticated {
            identities: vec![],
            suffixes: vec![suffix],
        },
        ..authz(
            Authentication::Unauthenticated,
            &["192.0.2.0/24"],
            "tls-auth",
        )
    };
    let policy = server(Protocol::Opaque(vec![a].into()));
    assert!(check_connection(&policy, 1000, &client(CLIENT_ID)).is_ok());
    let other = "testsa.testns.serviceaccount.identity.linkerd.cluster.example.com";
    assert!(check_connection(&policy, 1000, &client(other)).is_err());
}

// tcp/tests.rs `tls_unauthenticated`: a TLS client without identity is admitted. (Its second
// half, a TLS passthrough client, cannot reach the gateway: it terminates every caller's TLS.)
#[test]
fn tcp_tls_unauthenticated() {
    let a = authz(
        Authentication::TlsUnauthenticated,
        &["192.0.2.0/24"],
        "tls-unauth",
    );
    let policy = server(Protocol::Opaque(vec![a].into()));
    assert!(check_connection(&policy, 1000, &client(CLIENT_ID)).is_ok());
}

// The networks decide before the identity; an exception inside a network excludes.
#[test]
fn networks_and_exceptions() {
    let mut a = authz(ids(&[CLIENT_ID], &[]), &["192.0.2.0/24"], "net");
    a.networks[0].except = vec!["192.0.2.3/32".parse().unwrap()];
    assert!(!is_authorized(&a, &client(CLIENT_ID)));
    assert!(is_authorized(&a, &caller(CLIENT_ID, [192, 0, 2, 4])));
    assert!(!is_authorized(&a, &caller(CLIENT_ID, [10, 0, 0, 1])));
    // An IPv4-mapped IPv6 peer (a dual-stack listener) is its IPv4 address.
    let mapped = Caller {
        id: CLIENT_ID,
        addr: "::ffff:192.0.2.4".parse().unwrap(),
    };
    assert!(is_authorized(&a, &mapped));
}

// HTTP-only servers admit no connection; an invalid policy neither.
#[test]
fn connections_to_http_servers_are_denied() {
    let all = authz(Authentication::Unauthenticated, &["0.0.0.0/0"], "all");
    let routes = http_routes(vec![rule(vec![], vec![all])]);
    for policy in [server(Protocol::Http(routes)), ServerPolicy::invalid("bad")] {
        assert!(matches!(
            check_connection(&policy, 8080, &client(CLIENT_ID)),
            Err(Denied::Unauthorized(_))
        ));
    }
}

fn route_meta() -> Arc<Meta> {
    Meta::resource("gateway.networking.k8s.io", "httproute", "testrt")
}

fn rule<M>(matches: Vec<M>, authzs: Vec<Authorization>) -> Rule<M> {
    Rule {
        matches,
        policy: RoutePolicy {
            meta: route_meta(),
            authorizations: authzs.into(),
        },
    }
}

fn http_routes(rules: Vec<Rule<RequestMatch>>) -> Arc<[HttpRoute]> {
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

// local_rate_limit/tests.rs `check_rate_limits`: total 35, per identity 5, overrides
// client-3: 10, client-4: 15; five rounds one second apart.
#[test]
fn rate_limit_buckets() {
    let epoch = Instant::now();
    let rl = LocalRateLimit::new(
        None,
        epoch,
        Some(35),
        Some(5),
        vec![(10, vec!["client-3".into()]), (15, vec!["client-4".into()])],
    );
    let refused = |kind, rps| Err::<(), _>((kind, rps));
    for round in 0..5u64 {
        let now = epoch + Duration::from_secs(round);
        let check = |id| rl.check(id, now).map_err(|(k, r, _)| (k, r));
        for _ in 1..=5 {
            assert!(check("client-1").is_ok());
            assert!(check("client-3").is_ok());
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-1"), refused(LimitKind::PerIdentity, 5));
        for _ in 1..=5 {
            assert!(check("client-3").is_ok());
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-3"), refused(LimitKind::Override, 10));
        for _ in 1..=5 {
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-4"), refused(LimitKind::Override, 15));
        for _ in 1..=2 {
            assert!(check("client-2").is_ok());
        }
        assert_eq!(check("client-2"), refused(LimitKind::Total, 35));
    }
}

// A refused request says when the bucket takes one again: at 4 rps, a cell every 250 ms.
#[test]
fn retry_after_is_when_a_cell_is_free() {
    let epoch = Instant::now();
    let rl = LocalRateLimit::new(None, epoch, None, Some(4), vec![]);
    for _ in 0..4 {
        assert!(rl.check("a", epoch).is_ok());
    }
    let (_, _, wait) = rl.check("a", epoch).unwrap_err();
    assert_eq!(wait, Duration::from_millis(250));
    assert!(rl.check("a", epoch + Duration::from_millis(250)).is_ok());
}
