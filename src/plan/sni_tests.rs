//! The SNI rows of DESIGN.md's serving table (a target named by SNI on the gateway port, and
//! the SNI/authority row), and the passthrough port's rows: one assertion per row.

use super::tests::{EAST, FRONTEND, GW, PODINFO, client, east_only, header, rules, target};
use super::*;

const BB: &str = "bb.mc-demo.svc.cluster.local";
const BB_ISTIO: &str = "outbound_.8080_._.bb.mc-demo.svc.cluster.local";

fn with_sni(mut r: Rules, default_port: Option<u16>, allow: &[&str]) -> Rules {
    r.routes = r.routes.with_sni(crate::sni::SniRules {
        default_port,
        passthrough_allow: allow.iter().map(|p| p.parse().unwrap()).collect(),
    });
    r
}

fn sni_client(id: &str, alpn: Alpn, sni: &str) -> ClientInfo {
    ClientInfo {
        sni: Some(sni.into()),
        ..client(id, alpn)
    }
}

/// SNI rows: a target named by SNI (not the gateway's identity) is served by ALPN: `h2` and
/// `http/1.1` as HTTP fixed to it, none or another as opaque TCP.
#[test]
fn sni_rows() {
    let r = rules(vec![]);
    let bb = target(BB, 8080);
    for (alpn, mode) in [(Alpn::H2, HttpMode::Http2), (Alpn::Http1, HttpMode::Http1)] {
        assert_eq!(
            plan(&sni_client(FRONTEND, alpn, BB_ISTIO), None, &r),
            Ok(Plan::Http {
                mode,
                target: HttpTarget::Sni {
                    target: bb.clone(),
                    authorized: true
                }
            })
        );
    }
    for alpn in [Alpn::None, Alpn::Other] {
        assert_eq!(
            plan(&sni_client(FRONTEND, alpn, BB_ISTIO), None, &r),
            Ok(Plan::Opaque(bb.clone()))
        );
    }
    // A transport header must name the SNI's target; another is misdirected.
    let c = sni_client(FRONTEND, Alpn::Transport, BB_ISTIO);
    assert_eq!(
        plan(&c, Some(&header(BB, 8080, None)), &r),
        Ok(Plan::Opaque(bb.clone()))
    );
    assert_eq!(
        plan(&c, Some(&header(PODINFO, 8080, None)), &r),
        Err(Refusal::Misdirected)
    );
    assert_eq!(plan(&c, None, &r), Err(Refusal::UnknownProtocol));
    // The gateway's own identity as SNI, or a name that is no target: today's table.
    for sni in [GW, "gateway.example.com", BB] {
        assert_eq!(
            plan(&sni_client(FRONTEND, Alpn::H2, sni), None, &r),
            Ok(Plan::Http {
                mode: HttpMode::Http2,
                target: HttpTarget::PerRequest
            }),
            "{sni}"
        );
        assert_eq!(
            plan(&sni_client(FRONTEND, Alpn::Other, sni), None, &r),
            Err(Refusal::UnknownProtocol)
        );
    }
    // A bare name with `[sni] default_port`.
    let r = with_sni(rules(vec![]), Some(8080), &[]);
    assert_eq!(
        plan(&sni_client(FRONTEND, Alpn::None, BB), None, &r),
        Ok(Plan::Opaque(bb))
    );
}

/// SNI refusals: as for a transport header (bad domain, loop, unauthorized).
#[test]
fn sni_refusals() {
    let r = east_only();
    let sni = "outbound_.9898_._.podinfo.test.svc.cluster.local";
    assert_eq!(
        plan(
            &sni_client(EAST, Alpn::H2, "outbound_.80_._.example.com"),
            None,
            &r
        ),
        Err(Refusal::BadGatewayDomain)
    );
    assert_eq!(
        plan(&sni_client(GW, Alpn::None, sni), None, &r),
        Err(Refusal::GatewayLoop)
    );
    assert_eq!(
        plan(&sni_client(FRONTEND, Alpn::None, sni), None, &r),
        Err(Refusal::Unauthorized)
    );
    assert_eq!(
        plan(&sni_client(FRONTEND, Alpn::Http1, sni), None, &r),
        Ok(Plan::Http {
            mode: HttpMode::Http1,
            target: HttpTarget::Sni {
                target: target(PODINFO, 9898),
                authorized: false
            }
        })
    );
}

#[test]
fn route_labels() {
    let r = rules(vec![]);
    assert_eq!(
        route_of(&client(FRONTEND, Alpn::Transport), &r),
        Route::Header
    );
    assert_eq!(route_of(&client(FRONTEND, Alpn::H2), &r), Route::Http);
    let c = sni_client(FRONTEND, Alpn::Transport, BB_ISTIO);
    assert_eq!(route_of(&c, &r), Route::Sni);
    assert_eq!(Route::Passthrough.as_label(), "passthrough");
}

/// The SNI/authority row: a request naming another host is misdirected (421).
#[test]
fn sni_against_request_authority() {
    let bb = target(BB, 8080);
    for same in [
        None,
        Some(BB),
        Some("BB.mc-demo.svc.cluster.local.:4143"),
        Some("bb.mc-demo.svc.cluster.local:8080"),
    ] {
        assert_eq!(check_sni_authority(&bb, same), Ok(()), "{same:?}");
    }
    for other in [
        "podinfo.test.svc.cluster.local",
        "127.0.0.1:4143",
        "[::1]:4143",
        "bb.mc-demo.svc.cluster.local:x",
    ] {
        assert_eq!(
            check_sni_authority(&bb, Some(other)),
            Err(Refusal::Misdirected),
            "{other}"
        );
    }
}

/// The passthrough port's rows: routed and allowed, or refused as `sni`.
#[test]
fn passthrough_rows() {
    let r = with_sni(rules(vec![]), Some(443), &["*.mc-demo.svc.cluster.local"]);
    assert_eq!(plan_passthrough(Some(BB_ISTIO), &r), Ok(target(BB, 8080)));
    assert_eq!(plan_passthrough(Some(BB), &r), Ok(target(BB, 443)));
    for (sni, reason) in [
        (None, "no server name"),
        (Some("10.0.0.1"), "ip literal"),
        (Some("::1"), "ip literal"),
        (Some("example.com"), "not routed"),
        (Some("outbound_.80_._.example.com"), "not routed"),
        (
            Some("outbound_.80_.v1_.bb.mc-demo.svc.cluster.local"),
            "not routed",
        ),
        (
            Some("outbound_.9898_._.podinfo.test.svc.cluster.local"),
            "not allowed",
        ),
        (Some("legacy.example.com"), "not allowed"),
    ] {
        assert_eq!(
            plan_passthrough(sni, &r),
            Err(Refusal::Sni(reason)),
            "{sni:?}"
        );
    }
    // Nothing allowed: the port splices nowhere.
    let closed = with_sni(rules(vec![]), Some(443), &[]);
    assert_eq!(
        plan_passthrough(Some(BB_ISTIO), &closed),
        Err(Refusal::Sni("not allowed"))
    );
}
