//! Reading the controller's messages: what linkerd2-proxy requires is required, routes get
//! the server's authorizations after their own, a protocol without routes gets the default
//! route, and a regular expression makes the policy unreadable rather than guessed.

use super::*;
use crate::policy::LimitKind;
use linkerd2_proxy_api::inbound::{authn, proxy_protocol};
use linkerd2_proxy_api::net::IpNetwork;

fn anyone(name: &str) -> api::Authz {
    api::Authz {
        networks: vec![api::Network {
            net: Some(IpNetwork::from(ipnet::IpNet::default())),
            except: vec![],
        }],
        authentication: Some(api::Authn {
            permit: Some(authn::Permit::Unauthenticated(
                authn::PermitUnauthenticated {},
            )),
        }),
        labels: Default::default(),
        metadata: Some(meta_api::Metadata {
            kind: Some(meta_api::metadata::Kind::Resource(meta_api::Resource {
                group: "policy.linkerd.io".into(),
                kind: "authorizationpolicy".into(),
                name: name.into(),
                ..Default::default()
            })),
        }),
    }
}

fn detect(http_routes: Vec<api::HttpRoute>, limit: Option<api::HttpLocalRateLimit>) -> api::Server {
    api::Server {
        protocol: Some(api::ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Detect(proxy_protocol::Detect {
                timeout: Some(std::time::Duration::from_secs(10).try_into().unwrap()),
                http_routes,
                http_local_rate_limit: limit,
            })),
        }),
        server_ips: vec![],
        authorizations: vec![anyone("server-wide")],
        labels: [("name".to_string(), "web".to_string())].into(),
    }
}

fn names(authzs: &[Authorization]) -> Vec<String> {
    authzs.iter().map(|a| a.meta.name.to_string()).collect()
}

#[test]
fn a_server_without_routes_gets_the_default_route() {
    let p = server_policy(detect(vec![], None), Instant::now()).unwrap();
    assert_eq!(p.meta, Meta::resource("policy.linkerd.io", "server", "web"));
    let Protocol::Detect { http, tcp } = &p.protocol else {
        panic!("{:?}", p.protocol)
    };
    assert_eq!(names(tcp), ["server-wide"]);
    assert_eq!(http[0].rules[0].policy.meta, Meta::default_named("default"));
    assert_eq!(
        names(&http[0].rules[0].policy.authorizations),
        ["server-wide"]
    );
    assert!(!p.rate_limit.is_limited());
}

#[test]
fn a_route_holds_its_own_authorizations_then_the_servers() {
    let route = api::HttpRoute {
        metadata: Some(meta_api::Metadata {
            kind: Some(meta_api::metadata::Kind::Default("admin".into())),
        }),
        hosts: vec![],
        authorizations: vec![anyone("route-only")],
        rules: vec![api::http_route::Rule {
            matches: vec![http_api::HttpRouteMatch {
                path: Some(http_api::PathMatch {
                    kind: Some(http_api::path_match::Kind::Prefix("/admin".into())),
                }),
                ..Default::default()
            }],
            filters: vec![],
        }],
    };
    let p = server_policy(detect(vec![route.clone()], None), Instant::now()).unwrap();
    let Protocol::Detect { http, .. } = &p.protocol else {
        panic!()
    };
    let rule = &http[0].rules[0];
    assert_eq!(
        names(&rule.policy.authorizations),
        ["route-only", "server-wide"]
    );
    assert_eq!(
        rule.matches[0].path,
        Some(PathMatch::Prefix("/admin".into()))
    );

    let mut regex = route;
    regex.rules[0].matches[0].path = Some(http_api::PathMatch {
        kind: Some(http_api::path_match::Kind::Regex("/a.*".into())),
    });
    let err = server_policy(detect(vec![regex], None), Instant::now()).unwrap_err();
    assert_eq!(
        err,
        "path match: regular expressions are not evaluated by crossgate"
    );
}

// local_rate_limit/tests.rs `from_proto`.
#[test]
fn rate_limit_from_proto() {
    use api::http_local_rate_limit::{Limit, Override, r#override::ClientIdentities};
    let clients = |ids: &[&str]| {
        Some(ClientIdentities {
            identities: ids
                .iter()
                .map(|n| api::Identity {
                    name: n.to_string(),
                })
                .collect(),
        })
    };
    let limit = api::HttpLocalRateLimit {
        metadata: Some(meta_api::Metadata {
            kind: Some(meta_api::metadata::Kind::Default("ratelimit-1".into())),
        }),
        total: Some(Limit {
            requests_per_second: 100,
        }),
        identity: Some(Limit {
            requests_per_second: 20,
        }),
        overrides: vec![
            Override {
                limit: Some(Limit {
                    requests_per_second: 50,
                }),
                clients: clients(&["client-1", "client-2"]),
            },
            Override {
                limit: Some(Limit {
                    requests_per_second: 75,
                }),
                clients: clients(&["client-3", "Client-4."]),
            },
        ],
    };
    let epoch = Instant::now();
    // Each bucket's size is its rate: take one empty (a fresh policy each) and read the refusal.
    let drain = |id: &str| {
        let p = server_policy(detect(vec![], Some(limit.clone())), epoch).unwrap();
        assert_eq!(
            p.rate_limit.meta(),
            Some(Meta::default_named("ratelimit-1"))
        );
        loop {
            if let Err((kind, rps, _)) = p.rate_limit.check(id, epoch) {
                return (kind, rps);
            }
        }
    };
    assert_eq!(drain("client-1"), (LimitKind::Override, 50));
    assert_eq!(drain("client-2"), (LimitKind::Override, 50));
    assert_eq!(drain("client-3"), (LimitKind::Override, 75));
    assert_eq!(drain("client-4"), (LimitKind::Override, 75));
    assert_eq!(drain("someone"), (LimitKind::PerIdentity, 20));
}

#[test]
fn what_the_proxy_requires_is_required() {
    let mut no_protocol = detect(vec![], None);
    no_protocol.protocol = None;
    let mut no_name = detect(vec![], None);
    no_name.labels.clear();
    let mut no_networks = detect(vec![], None);
    no_networks.authorizations[0].networks.clear();
    let mut no_authn = detect(vec![], None);
    no_authn.authorizations[0].authentication = None;
    let rows = [
        (no_protocol, "missing proxy protocol"),
        (no_name, "labels: missing 'name'"),
        (no_networks, "authorization: missing networks"),
        (no_authn, "authorization: missing authentication"),
    ];
    for (pb, want) in rows {
        assert_eq!(server_policy(pb, Instant::now()).unwrap_err(), want);
    }
}

#[test]
fn identities_are_compared_in_normal_form() {
    let mut pb = detect(vec![], None);
    pb.authorizations[0].authentication = Some(api::Authn {
        permit: Some(authn::Permit::MeshTls(authn::PermitMeshTls {
            clients: Some(authn::permit_mesh_tls::Clients::Identities(
                authn::permit_mesh_tls::PermitClientIdentities {
                    identities: vec![api::Identity {
                        name: "Web.NS.serviceaccount.identity.linkerd.cluster.local.".into(),
                    }],
                    suffixes: vec![api::IdentitySuffix {
                        parts: vec!["West".into(), "Example".into()],
                    }],
                },
            )),
        })),
    });
    let p = server_policy(pb, Instant::now()).unwrap();
    let Protocol::Detect { tcp, .. } = &p.protocol else {
        panic!()
    };
    let caller = |id| crate::policy::Caller {
        id,
        addr: [10, 0, 0, 1].into(),
    };
    assert!(crate::policy::is_authorized(
        &tcp[0],
        &caller("web.ns.serviceaccount.identity.linkerd.cluster.local")
    ));
    assert!(crate::policy::is_authorized(
        &tcp[0],
        &caller("a.west.example")
    ));
    assert!(!crate::policy::is_authorized(
        &tcp[0],
        &caller("west.example")
    ));
}

#[test]
fn old_style_labels() {
    let rows = [
        (vec![("name", "default:deny")], Meta::default_named("deny")),
        (
            vec![("name", "all"), ("kind", "default"), ("group", "")],
            Meta::default_named("all"),
        ),
        (vec![("name", "web")], Meta::resource("g", "k", "web")),
        (
            vec![("name", "server:web")],
            Meta::resource("g", "server", "web"),
        ),
    ];
    for (labels, want) in rows {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(meta_from_labels(labels, "g", "k").unwrap(), want);
    }
}
