//! DESIGN.md's serving table ("How a connection on the gateway port is served") and the
//! connection- and request-level rows of its refusal table, one assertion per row.

use super::*;
use crate::authz::{Pattern, Policy, Rule};
use crate::route::Routes;
use std::collections::HashMap;

pub(super) const GW: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
pub(super) const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";
pub(super) const EAST: &str = "api.east.serviceaccount.identity.linkerd.cluster.local";
pub(super) const PODINFO: &str = "podinfo.test.svc.cluster.local";

pub(super) fn rules(authorization: Vec<Rule>) -> Rules {
    let mut statics = HashMap::new();
    statics.insert(
        ("legacy.example.com".to_string(), 443),
        vec!["127.0.0.1:18443".parse().unwrap()],
    );
    Rules {
        routes: Routes::new("cluster.local", statics),
        policy: Policy {
            own_identity: GW.into(),
            rules: authorization,
        },
        allow_sources: None,
        generation: 0,
    }
}

/// Only `*.east` identities may reach `*.test` services.
pub(super) fn east_only() -> Rules {
    rules(vec![Rule {
        identities: vec![
            "*.east.serviceaccount.identity.linkerd.cluster.local"
                .parse::<Pattern>()
                .unwrap(),
        ],
        services: vec!["*.test.svc.cluster.local".parse().unwrap()],
    }])
}

pub(super) fn client(id: &str, alpn: Alpn) -> ClientInfo {
    ClientInfo {
        id: id.into(),
        addr: "10.0.0.7:40000".parse().unwrap(),
        alpn,
        sni: Some(GW.into()),
    }
}

pub(super) fn header(name: &str, port: u16, protocol: Option<SessionProtocol>) -> TransportHeader {
    TransportHeader {
        port,
        name: Some(name.into()),
        protocol,
    }
}

pub(super) fn target(name: &str, port: u16) -> Target {
    Target {
        name: name.into(),
        port,
    }
}

#[test]
fn alpn_names() {
    assert_eq!(
        Alpn::from_negotiated(Some(b"transport.l5d.io/v1")),
        Alpn::Transport
    );
    assert_eq!(Alpn::from_negotiated(Some(b"h2")), Alpn::H2);
    assert_eq!(Alpn::from_negotiated(Some(b"http/1.1")), Alpn::Http1);
    assert_eq!(Alpn::from_negotiated(None), Alpn::None);
    assert_eq!(Alpn::from_negotiated(Some(b"smtp")), Alpn::Other);
}

/// Row 1: transport ALPN and a header: its session protocol decides, its name the target.
#[test]
fn transport_header_rows() {
    let r = rules(vec![]);
    let c = client(FRONTEND, Alpn::Transport);
    let h = header(PODINFO, 9899, None);
    assert_eq!(
        plan(&c, Some(&h), &r),
        Ok(Plan::Opaque(target(PODINFO, 9899)))
    );
    for (protocol, mode) in [
        (SessionProtocol::Http1, HttpMode::Http1),
        (SessionProtocol::Http2, HttpMode::Http2),
    ] {
        let h = header("PodInfo.Test.svc.cluster.local.", 9898, Some(protocol));
        assert_eq!(
            plan(&c, Some(&h), &r),
            Ok(Plan::Http {
                mode,
                target: HttpTarget::Fixed {
                    target: target(PODINFO, 9898),
                    authorized: true
                }
            })
        );
    }
    // A static name is a target on its own port only.
    let h = header("legacy.example.com", 443, None);
    assert_eq!(
        plan(&c, Some(&h), &r),
        Ok(Plan::Opaque(target("legacy.example.com", 443)))
    );
}

/// Row 2: `h2`, `http/1.1` or no ALPN: plain HTTP mode, target per request.
#[test]
fn plain_http_rows() {
    let r = rules(vec![]);
    for (alpn, mode) in [
        (Alpn::H2, HttpMode::Http2),
        (Alpn::Http1, HttpMode::Http1),
        (Alpn::None, HttpMode::Sniff),
    ] {
        assert_eq!(
            plan(&client(FRONTEND, alpn), None, &r),
            Ok(Plan::Http {
                mode,
                target: HttpTarget::PerRequest
            })
        );
    }
}

/// Row 3: anything else is refused.
#[test]
fn other_protocols_refused() {
    let r = rules(vec![]);
    assert_eq!(
        plan(&client(FRONTEND, Alpn::Other), None, &r),
        Err(Refusal::UnknownProtocol)
    );
    assert_eq!(
        plan(&client(FRONTEND, Alpn::Transport), None, &r),
        Err(Refusal::UnknownProtocol)
    );
}

/// Refusal rows known when the connection opens: bad gateway domain, loop, unauthorized.
#[test]
fn connection_refusals() {
    let r = east_only();
    let c = client(EAST, Alpn::Transport);
    for (name, port) in [
        ("podinfo.example.com", 80),
        ("10.0.0.1", 80),
        ("test.svc.cluster.local", 80),
        ("legacy.example.com", 444),
    ] {
        assert_eq!(
            plan(&c, Some(&header(name, port, None)), &r),
            Err(Refusal::BadGatewayDomain),
            "{name}:{port}"
        );
    }
    let nameless = TransportHeader {
        port: 80,
        name: None,
        protocol: None,
    };
    assert_eq!(
        plan(&c, Some(&nameless), &r),
        Err(Refusal::BadGatewayDomain)
    );
    // The gateway's own identity is a loop, opaque or HTTP.
    for protocol in [None, Some(SessionProtocol::Http2)] {
        assert_eq!(
            plan(
                &client(GW, Alpn::Transport),
                Some(&header(PODINFO, 80, protocol)),
                &r
            ),
            Err(Refusal::GatewayLoop)
        );
    }
    // Denied opaque: refused. Denied HTTP: served, every request answered 403.
    let west = client(FRONTEND, Alpn::Transport);
    assert_eq!(
        plan(&west, Some(&header(PODINFO, 9899, None)), &r),
        Err(Refusal::Unauthorized)
    );
    assert_eq!(
        plan(
            &west,
            Some(&header(PODINFO, 9898, Some(SessionProtocol::Http1))),
            &r
        ),
        Ok(Plan::Http {
            mode: HttpMode::Http1,
            target: HttpTarget::Fixed {
                target: target(PODINFO, 9898),
                authorized: false
            }
        })
    );
}

#[test]
fn plain_mode_target_choice() {
    let dst = Some(&b"podinfo.test.svc.cluster.local:9898"[..]);
    let host = Some(&b"host.test.svc.cluster.local"[..]);
    assert_eq!(
        request_authority(dst, Some("uri.test.svc.cluster.local"), host),
        Ok("podinfo.test.svc.cluster.local:9898")
    );
    assert_eq!(
        request_authority(None, Some("uri.test.svc.cluster.local"), host),
        Ok("uri.test.svc.cluster.local")
    );
    assert_eq!(
        request_authority(None, None, host),
        Ok("host.test.svc.cluster.local")
    );
    // A value that is not text is as good as absent.
    assert_eq!(
        request_authority(Some(&b"\xff"[..]), None, host),
        Ok("host.test.svc.cluster.local")
    );
    assert_eq!(
        request_authority(None, None, None),
        Err(Refusal::BadGatewayDomain)
    );
    let r = rules(vec![]);
    assert_eq!(
        request_target("podinfo.test.svc.cluster.local", &r),
        Ok(target(PODINFO, 80))
    );
    assert_eq!(
        request_target("podinfo.test.svc.cluster.local:9898", &r),
        Ok(target(PODINFO, 9898))
    );
    for bad in [
        "127.0.0.1:80",
        "[::1]:80",
        "example.com",
        "podinfo.test.svc.cluster.local:x",
        "podinfo.test.svc.cluster.local:0",
    ] {
        assert_eq!(
            request_target(bad, &r),
            Err(Refusal::BadGatewayDomain),
            "{bad}"
        );
    }
}

/// Request-level rows: loop by `Forwarded` or identity (508), unauthorized (403).
#[test]
fn request_checks() {
    let r = east_only();
    let t = target(PODINFO, 9898);
    assert_eq!(check_request(EAST, &t, false, &r), Ok(()));
    assert_eq!(check_request(EAST, &t, true, &r), Err(Refusal::GatewayLoop));
    assert_eq!(check_request(GW, &t, false, &r), Err(Refusal::GatewayLoop));
    assert_eq!(
        check_request(FRONTEND, &t, false, &r),
        Err(Refusal::Unauthorized)
    );
    let other = target("secret.other.svc.cluster.local", 80);
    assert_eq!(
        check_request(EAST, &other, false, &r),
        Err(Refusal::Unauthorized)
    );
}
