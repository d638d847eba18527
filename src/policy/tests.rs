//! linkerd2-proxy's inbound policy tests, row by row, against the pure decision:
//! `app/inbound/src/policy.rs` (`is_tls_authorized`), `policy/tcp/tests.rs`
//! (`check_authorized`); its HTTP ones are in `http_tests.rs`. Where the proxy's case cannot
//! arise at the gateway (a client without TLS), it says so.

use super::http_tests::{http_routes, rule};
use super::*;

const CLIENT_ID: &str = "testsa.testns.serviceaccount.identity.linkerd.cluster.local";

pub(super) fn caller(id: &str, ip: [u8; 4]) -> Caller<'_> {
    Caller {
        id,
        addr: IpAddr::from(ip),
    }
}

/// The tcp tests' client: 192.0.2.3.
pub(super) fn client(id: &str) -> Caller<'_> {
    caller(id, [192, 0, 2, 3])
}

pub(super) fn net(s: &str) -> Network {
    Network {
        net: s.parse().unwrap(),
        except: vec![],
    }
}

pub(super) fn authz(
    authentication: Authentication,
    networks: &[&str],
    name: &str,
) -> Authorization {
    Authorization {
        networks: networks.iter().map(|n| net(n)).collect(),
        authentication,
        meta: Meta::resource("policy.linkerd.io", "serverauthorization", name),
    }
}

pub(super) fn ids(identities: &[&str], suffixes: &[&str]) -> Authentication {
    Authentication::TlsAuthenticated {
        identities: identities.iter().map(|i| Arc::from(*i)).collect(),
        suffixes: suffixes.iter().map(|s| Suffix(Arc::from(*s))).collect(),
    }
}

pub(super) fn server(protocol: Protocol) -> ServerPolicy {
    ServerPolicy {
        meta: Meta::resource("policy.linkerd.io", "server", "test"),
        protocol,
        rate_limit: LocalRateLimit::none(),
    }
}

pub(super) fn labels(server: &str, port: u16, authz: Option<Arc<Meta>>) -> Labels {
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
