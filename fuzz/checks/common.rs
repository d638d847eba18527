//! Shared by the targets: the rules they judge by, names worth choosing from, and the
//! invariants every routed target must hold.
#![allow(dead_code)]

use arbitrary::{Result, Unstructured};
use crossgate::authz::{Pattern, Policy, Rule};
use crossgate::names::{is_dns_name, is_ip_literal, normalize};
use crossgate::route::{Routes, Target};
use crossgate::rules::Rules;
use std::collections::HashMap;

pub const GW: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
pub const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";
/// The one static key outside the cluster domain.
pub const STATIC_NAME: &str = "legacy.example.com";
pub const STATIC_PORT: u16 = 443;
pub const IN_CLUSTER_STATIC: &str = "bb.mc-demo.svc.cluster.local";

/// With `CROSSGATE_FUZZ_SKIP_KNOWN` set, the targets steer around the findings listed in
/// fuzz/README.md (reproducers in `fuzz/known/`), so that a long run explores the rest.
pub fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("CROSSGATE_FUZZ_SKIP_KNOWN").is_some())
}

/// The gateway's identity with a trailing dot: a DNS SAN may carry one, and
/// `authz::authorize` does not see it as the gateway's own (known finding 1).
pub const GW_DOT: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local.";

/// [`IDENTITIES`], plus [`GW_DOT`] unless known findings are skipped.
pub fn identities() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = IDENTITIES.to_vec();
        if !skip_known() {
            v.push(GW_DOT);
        }
        v
    })
}

/// Identities worth trying besides arbitrary text: the gateway's own (and another spelling),
/// allowed and not allowed clients, a spiffe one.
pub const IDENTITIES: &[&str] = &[
    GW,
    "LINKERD-GATEWAY.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
    FRONTEND,
    "frontend.west.serviceaccount.identity.linkerd.cluster.local.",
    "intruder.east.serviceaccount.identity.linkerd.cluster.local",
    "spiffe://cluster.local/ns/west/sa/frontend",
    "west.serviceaccount.identity.linkerd.cluster.local",
];

/// Names worth trying besides arbitrary text.
pub const NAMES: &[&str] = &[
    "podinfo.test.svc.cluster.local",
    "PodInfo.Test.SVC.Cluster.Local.",
    "pod-0.podinfo.test.svc.cluster.local",
    "web.mc-demo.svc.cluster.local",
    IN_CLUSTER_STATIC,
    STATIC_NAME,
    "LEGACY.example.com.",
    "test.svc.cluster.local",
    "svc.cluster.local",
    "a..svc.cluster.local",
    "podinfo.test.svc.cluster.local.evil.com",
    "127.0.0.1",
    "::1",
    "[::1]",
    "10.0.0.1",
    "0x7f.1",
    "2130706433",
    "localhost",
    "",
];

/// Both rule sets, built once.
pub fn both_rules() -> &'static [Rules; 2] {
    static RULES: std::sync::OnceLock<[Rules; 2]> = std::sync::OnceLock::new();
    RULES.get_or_init(|| [rules(false), rules(true)])
}

pub fn pick<'a>(u: &mut Unstructured<'a>, list: &[&'a str]) -> Result<&'a str> {
    if u.ratio(1, 4)? {
        u.arbitrary::<&str>()
    } else {
        u.choose(list).copied()
    }
}

/// The rules the targets judge by: the cluster domain, two static keys (one outside the
/// domain), and either one rule allowing `*.west...` identities to `*.mc-demo...` and the
/// static key, or (`open_policy`) no rule at all: Linkerd's default, any identity.
pub fn rules(open_policy: bool) -> Rules {
    let mut statics = HashMap::new();
    statics.insert(
        (STATIC_NAME.to_string(), STATIC_PORT),
        vec!["127.0.0.1:18443".parse().unwrap()],
    );
    statics.insert(
        (IN_CLUSTER_STATIC.to_string(), 8080),
        vec!["127.0.0.1:18080".parse().unwrap()],
    );
    let p = |s: &str| s.parse::<Pattern>().unwrap();
    Rules {
        routes: Routes::new("cluster.local", statics),
        policy: Policy {
            own_identity: GW.to_string(),
            rules: if open_policy {
                Vec::new()
            } else {
                vec![Rule {
                    identities: vec![p("*.west.serviceaccount.identity.linkerd.cluster.local")],
                    services: vec![p("*.mc-demo.svc.cluster.local"), p(STATIC_NAME)],
                }]
            },
        },
        allow_sources: None,
        generation: 0,
    }
}

/// Every target routing produces: a normalized name, a port, never an IP literal, and either
/// `<a>.<b>.svc.cluster.local` (a DNS name) or exactly a static key.
pub fn assert_routable(t: &Target) {
    assert_ne!(t.port, 0, "{t:?}");
    assert!(!is_ip_literal(&t.name), "IP literal target {t:?}");
    assert_eq!(&*t.name, normalize(&t.name), "not normalized: {t:?}");
    let is_static = (&*t.name, t.port) == (STATIC_NAME, STATIC_PORT)
        || (&*t.name, t.port) == (IN_CLUSTER_STATIC, 8080);
    let in_cluster = is_dns_name(&t.name)
        && t.name
            .strip_suffix(".svc.cluster.local")
            .is_some_and(|head| {
                head.split('.').count() >= 2 && head.split('.').all(|l| !l.is_empty())
            });
    assert!(is_static || in_cluster, "open proxy: {t:?}");
}

/// The oracle for [`rules`]: may `client` reach `t` (ignoring loops)?
pub fn allowed(rules: &Rules, client: &str, t: &Target) -> bool {
    if rules.policy.rules.is_empty() {
        return true;
    }
    let client = normalize(client);
    client.ends_with(".west.serviceaccount.identity.linkerd.cluster.local")
        && (t.name.ends_with(".mc-demo.svc.cluster.local") || &*t.name == STATIC_NAME)
}

/// Is `client` the gateway itself, as names compare everywhere else (case and one trailing
/// dot ignored)?
pub fn is_own(client: &str) -> bool {
    normalize(client) == normalize(GW)
}
