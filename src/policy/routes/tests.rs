//! linkerd2-proxy's route matching tests (`linkerd/http/route/src/http/tests.rs`,
//! `http/match/{host,path,query_param}.rs`), row by row.

use super::*;
use crate::policy::Meta;

fn policy(name: &str) -> RoutePolicy {
    RoutePolicy {
        meta: Meta::default_named(name),
        authorizations: Arc::from(Vec::new()),
    }
}

fn route(hosts: Vec<HostMatch>, rules: Vec<(Vec<RequestMatch>, &str)>) -> HttpRoute {
    Route {
        hosts,
        rules: rules
            .into_iter()
            .map(|(matches, name)| Rule {
                matches,
                policy: policy(name),
            })
            .collect(),
    }
}

fn path(p: PathMatch) -> RequestMatch {
    RequestMatch {
        path: Some(p),
        ..RequestMatch::default()
    }
}

fn found(routes: &[HttpRoute], req: &Request<()>) -> Option<String> {
    find_http(routes, req).map(|p| p.meta.name.to_string())
}

fn get(uri: &str) -> Request<()> {
    Request::builder().uri(uri).body(()).unwrap()
}

fn suffix(s: &str) -> HostMatch {
    HostMatch::Suffix(s.split('.').rev().map(String::from).collect())
}

#[test]
fn hostname_precedence() {
    let foo = || vec![path(PathMatch::Exact("/foo".into()))];
    let routes = [
        route(vec![suffix("example.com")], vec![(foo(), "unexpected")]),
        route(
            vec![HostMatch::Exact("foo.example.com".into())],
            vec![(foo(), "expected")],
        ),
    ];
    let req = get("http://foo.example.com/foo");
    assert_eq!(found(&routes, &req).as_deref(), Some("expected"));
}

#[test]
fn path_length_precedence() {
    let routes = [
        route(
            vec![],
            vec![(vec![path(PathMatch::Prefix("/foo".into()))], "unexpected")],
        ),
        route(
            vec![],
            vec![(vec![path(PathMatch::Exact("/foo/bar".into()))], "expected")],
        ),
    ];
    let req = get("http://foo.example.com/foo/bar");
    assert_eq!(found(&routes, &req).as_deref(), Some("expected"));
}

#[test]
fn header_count_precedence() {
    let h = |n: &'static str, v: &'static str| HeaderMatch {
        name: HeaderName::from_static(n),
        value: HeaderValue::from_static(v),
    };
    let two = RequestMatch {
        headers: vec![h("x-foo", "bar"), h("x-baz", "qux")],
        ..RequestMatch::default()
    };
    let three = RequestMatch {
        headers: vec![h("x-foo", "bar"), h("x-baz", "qux"), h("x-biz", "qyx")],
        ..RequestMatch::default()
    };
    let routes = [
        route(vec![], vec![(vec![two], "unexpected")]),
        route(vec![], vec![(vec![three], "expected")]),
    ];
    let req = Request::builder()
        .uri("http://www.example.com")
        .header("x-foo", "bar")
        .header("x-baz", "qux")
        .header("x-biz", "qyx")
        .body(())
        .unwrap();
    assert_eq!(found(&routes, &req).as_deref(), Some("expected"));
}

#[test]
fn first_identical_wins() {
    let routes = [
        route(vec![], vec![(vec![], "expected"), (vec![], "redundant")]),
        route(vec![], vec![(vec![], "redundant")]),
    ];
    assert_eq!(found(&routes, &get("/")).as_deref(), Some("expected"));
}

#[test]
fn hosts_without_a_match_skip_the_route() {
    let routes = [route(
        vec![HostMatch::Exact("a.example.com".into())],
        vec![(vec![], "a")],
    )];
    assert_eq!(found(&routes, &get("http://b.example.com/")), None);
    // No authority: a route with hosts cannot match.
    assert_eq!(found(&routes, &get("/")), None);
}

#[test]
fn host_rows() {
    let rank = |m: &HostMatch, uri: &str| m.rank(&uri.parse().unwrap());
    let exact = HostMatch::Exact("example.com".into());
    assert_eq!(
        rank(&exact, "https://example.com/foo/bar"),
        Some(HostRank::Exact(11))
    );
    assert_eq!(
        rank(&exact, "https://example.com./foo/bar"),
        Some(HostRank::Exact(11))
    );
    assert_eq!(
        rank(&exact, "https://EXAMPLE.com/foo"),
        Some(HostRank::Exact(11))
    );
    assert_eq!(rank(&exact, "https://foo.example.com/foo/bar"), None);
    let dotted = HostMatch::Exact("example.com.".into());
    assert_eq!(rank(&dotted, "https://example.com/foo/bar"), None);
    assert_eq!(
        rank(&dotted, "https://example.com./foo/bar"),
        Some(HostRank::Exact(12))
    );
    let s = suffix("example.com");
    assert_eq!(rank(&s, "https://example.com/foo/bar"), None);
    assert_eq!(
        rank(&s, "https://foo.example.com/foo/bar"),
        Some(HostRank::Suffix(12))
    );
    assert_eq!(
        rank(&s, "https://foo.example.com./foo/bar"),
        Some(HostRank::Suffix(12))
    );
    assert_eq!(
        rank(&s, "https://bar.foo.example.com/x"),
        Some(HostRank::Suffix(12))
    );
    assert_eq!(
        rank(&s, "https://FOO.ExAmPlE.CoM/foo/bar"),
        Some(HostRank::Suffix(12))
    );
    let s_dot = HostMatch::Suffix(vec!["".into(), "com".into(), "example".into()]);
    assert_eq!(rank(&s_dot, "https://bar.foo.example.com/foo/bar"), None);
    assert_eq!(
        rank(&s_dot, "https://bar.foo.example.com./foo/bar"),
        Some(HostRank::Suffix(13))
    );
    assert!(HostRank::Exact(11) > HostRank::Suffix(12));
    assert!(HostRank::Exact(15) > HostRank::Exact(11));
}

#[test]
fn path_rows() {
    let exact = PathMatch::Exact("/foo/bar".into());
    assert_eq!(exact.len("/foo/bar"), Some(8));
    for no in ["/foo", "/foo/bah", "/foo/bar/qux"] {
        assert_eq!(exact.len(no), None, "{no}");
    }
    for (prefix, len) in [("/", 1), ("/foo", 4), ("/foo/", 4)] {
        let m = PathMatch::Prefix(prefix.into());
        for p in ["/foo", "/foo/", "/foo/bar", "/foo/bar/qux"] {
            assert_eq!(m.len(p), Some(len), "{prefix} must match {p}");
        }
        let want = (len == 1).then_some(1);
        assert_eq!(m.len("/foobar"), want, "{prefix} and /foobar");
    }
}

#[test]
fn query_rows() {
    let has = |q: &str, n: &str, v: &str| query_has(q, n, v);
    assert!(has("foo=bar", "foo", "bar"));
    assert!(has("foo=bar&fah=bah", "foo", "bar"));
    assert!(has("fah=bah&foo=bar", "foo", "bar"));
    assert!(!has("foo=bah", "foo", "bar"));
    assert!(has("foo", "foo", ""));
    assert!(!has("foo=bah", "foo", ""));
    assert!(!has("bar=foo", "foo", ""));
    assert!(has("foo=bar%2Fhi", "foo", "bar/hi"));
    assert!(has("foo=a+b", "foo", "a b"));
    assert!(has("foo=100%", "foo", "100%"));
    let m = RequestMatch {
        query: vec![QueryMatch {
            name: "foo".into(),
            value: "bar".into(),
        }],
        ..RequestMatch::default()
    };
    assert_eq!(m.rank(&get("/x?foo=bar")), Some(HttpRank(1, 0, 1, false)));
    assert_eq!(m.rank(&get("/x")), None);
}
