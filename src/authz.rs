//! Authorization: may this client identity reach this target? Pure; decided before any
//! upstream connection. Patterns follow Linkerd's identity matching: `*` matches anything,
//! `*.suffix` matches names ending in `.suffix` on a label boundary, anything else is exact
//! (case-insensitive, trailing dot ignored).

use crate::names::normalize;
use crate::refusal::Refusal;
use crate::route::Target;
use std::fmt;
use std::str::FromStr;

/// One identity or service pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Any,
    /// Holds `.suffix`, lower-case, with the leading dot.
    Suffix(String),
    Exact(String),
}

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Suffix(suffix) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                name.len() > suffix.len()
                    && name.is_char_boundary(name.len() - suffix.len())
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            Pattern::Exact(exact) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                name.eq_ignore_ascii_case(exact)
            }
        }
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Pattern, String> {
        if s == "*" {
            return Ok(Pattern::Any);
        }
        if let Some(rest) = s.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') || rest.starts_with('.') {
                return Err(format!(
                    "bad pattern {s:?}: expected \"*\", \"*.suffix\" or a name"
                ));
            }
            return Ok(Pattern::Suffix(format!(".{}", normalize(rest))));
        }
        if s.is_empty() || s.contains('*') || s.contains(char::is_whitespace) {
            return Err(format!(
                "bad pattern {s:?}: expected \"*\", \"*.suffix\" or a name"
            ));
        }
        Ok(Pattern::Exact(normalize(s)))
    }
}

/// The refusal of a `name:port` pattern, or `None` when `s` has no port. `what` says what
/// the pattern is matched against.
fn port_hint(s: &str, what: &str) -> Option<String> {
    let (name, port) = s.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{s:?} has a port, but patterns match {what} only: write {name:?}"))
}

/// A `services` pattern: `*`, `*.suffix` or a name, where the name part is a DNS name.
/// A port (`name:8081`) is refused by name: patterns never see the port, and a pattern with
/// one would match nothing.
pub fn service_pattern(s: &str) -> Result<Pattern, String> {
    if let Some(hint) = port_hint(s, "the service name (every port)") {
        return Err(hint);
    }
    let pattern: Pattern = s.parse()?;
    match &pattern {
        Pattern::Any => {}
        Pattern::Suffix(suffix) if crate::names::is_dns_name(&suffix[1..]) => {}
        Pattern::Exact(name) if crate::names::is_dns_name(name) => {}
        _ => return Err(format!("bad pattern {s:?}: not a DNS name")),
    }
    Ok(pattern)
}

/// An `identities` pattern: `*`, `*.suffix` of DNS identities, an exact DNS identity or an
/// exact `spiffe://` URI. A `name:port` is refused as in [`service_pattern`].
pub fn identity_pattern(s: &str) -> Result<Pattern, String> {
    if !s.starts_with("spiffe://")
        && let Some(hint) = port_hint(s, "the client identity")
    {
        return Err(hint);
    }
    let pattern: Pattern = s.parse()?;
    match &pattern {
        Pattern::Any => {}
        Pattern::Suffix(suffix) if crate::names::is_dns_name(&suffix[1..]) => {}
        Pattern::Exact(name) if crate::names::is_identity_syntax(name) => {}
        _ => {
            return Err(format!(
                "bad pattern {s:?}: neither a DNS name nor a spiffe:// URI"
            ));
        }
    }
    Ok(pattern)
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Suffix(s) => write!(f, "*{s}"),
            Pattern::Exact(s) => f.write_str(s),
        }
    }
}

/// One `[[authorization]]` rule: it allows when some identity pattern matches the client and
/// some service pattern matches the target name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub identities: Vec<Pattern>,
    pub services: Vec<Pattern>,
}

/// The gateway's authorization policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The gateway's own identity: a client presenting it is a loop.
    pub own_identity: String,
    /// No rules: any identity chained to the anchors is allowed (Linkerd's default).
    pub rules: Vec<Rule>,
}

/// Identities compared as names are: case-insensitive, one trailing dot ignored.
pub fn same_identity(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        s.strip_suffix('.').unwrap_or(s)
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// Decides whether `client` may reach `target`. Loops are refused first.
pub fn authorize(client: &str, target: &Target, policy: &Policy) -> Result<(), Refusal> {
    if same_identity(client, &policy.own_identity) {
        return Err(Refusal::GatewayLoop);
    }
    if policy.rules.is_empty() {
        return Ok(());
    }
    let allowed = policy.rules.iter().any(|rule| {
        rule.identities.iter().any(|p| p.matches(client))
            && rule.services.iter().any(|p| p.matches(&target.name))
    });
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// Whether `peer` may connect under `[server] allow_sources` (`None`: any source). An
/// IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, from a dual-stack listener) is checked as IPv4.
pub fn source_allowed(allow: Option<&[ipnet::IpNet]>, peer: std::net::SocketAddr) -> bool {
    let Some(nets) = allow else { return true };
    let ip = peer.ip().to_canonical();
    nets.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str =
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
    const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            port: 80,
        }
    }

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns() {
        assert!(p("*").matches("anything"));
        let s = p("*.west.serviceaccount.identity.linkerd.cluster.local");
        assert!(s.matches(FRONTEND));
        assert!(s.matches("a.b.west.serviceaccount.identity.linkerd.cluster.local"));
        assert!(s.matches("FRONTEND.WEST.serviceaccount.identity.linkerd.cluster.local."));
        assert!(!s.matches("west.serviceaccount.identity.linkerd.cluster.local"));
        assert!(!s.matches("frontendwest.serviceaccount.identity.linkerd.cluster.local"));
        assert!(!s.matches("frontend.east.serviceaccount.identity.linkerd.cluster.local"));
        let e = p(FRONTEND);
        assert!(e.matches(FRONTEND));
        assert!(!e.matches(&format!("x.{FRONTEND}")));
        assert!(
            p("spiffe://cluster.local/ns/west/sa/frontend")
                .matches("spiffe://cluster.local/ns/west/sa/frontend")
        );
        for bad in ["", "*.", "**", "a*b", "*.*.x", "a b"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(p("*.Foo.Bar").to_string(), "*.foo.bar");
    }

    #[test]
    fn ports_and_bad_names_are_refused_in_rule_patterns() {
        let e = service_pattern("echo.demo.svc.cluster.local:8081").unwrap_err();
        assert!(e.contains("has a port"), "{e}");
        assert!(e.contains("\"echo.demo.svc.cluster.local\""), "{e}");
        assert!(service_pattern("*.demo.svc.cluster.local:80").is_err());
        assert!(service_pattern("not a name").is_err());
        assert!(service_pattern("spiffe://cluster.local/ns/a/sa/b").is_err());
        assert_eq!(service_pattern("*"), Ok(Pattern::Any));
        assert_eq!(
            service_pattern("*.Demo.svc.cluster.local"),
            Ok(p("*.demo.svc.cluster.local"))
        );
        assert_eq!(
            service_pattern("echo.demo.svc.cluster.local"),
            Ok(p("echo.demo.svc.cluster.local"))
        );

        assert!(
            identity_pattern(&format!("{FRONTEND}:4143"))
                .unwrap_err()
                .contains("has a port")
        );
        assert!(identity_pattern("*.a/b").is_err());
        assert_eq!(identity_pattern(FRONTEND), Ok(p(FRONTEND)));
        let spiffe = "spiffe://cluster.local/ns/west/sa/frontend";
        assert_eq!(identity_pattern(spiffe), Ok(p(spiffe)));
        assert_eq!(
            identity_pattern("*.serviceaccount.identity.linkerd.west.example"),
            Ok(p("*.serviceaccount.identity.linkerd.west.example"))
        );
    }

    #[test]
    fn no_rules_allows_any_but_self() {
        let policy = Policy {
            own_identity: GW.into(),
            rules: vec![],
        };
        let t = target("podinfo.test.svc.cluster.local");
        assert_eq!(authorize(FRONTEND, &t, &policy), Ok(()));
        assert_eq!(authorize(GW, &t, &policy), Err(Refusal::GatewayLoop));
        // Found by fuzzing: the own identity with a trailing dot, or in capitals, is a loop.
        let dotted = format!("{}.", GW.to_ascii_uppercase());
        assert_eq!(authorize(&dotted, &t, &policy), Err(Refusal::GatewayLoop));
    }

    #[test]
    fn rules_match_identity_and_service() {
        let policy = Policy {
            own_identity: GW.into(),
            rules: vec![Rule {
                identities: vec![p("*.west.serviceaccount.identity.linkerd.cluster.local")],
                services: vec![p("*.mc-demo.svc.cluster.local")],
            }],
        };
        let ok = target("bb.mc-demo.svc.cluster.local");
        let other = target("podinfo.test.svc.cluster.local");
        assert_eq!(authorize(FRONTEND, &ok, &policy), Ok(()));
        assert_eq!(
            authorize(FRONTEND, &other, &policy),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            authorize(
                "x.east.serviceaccount.identity.linkerd.cluster.local",
                &ok,
                &policy
            ),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(authorize(GW, &ok, &policy), Err(Refusal::GatewayLoop));
    }

    #[test]
    fn allow_sources() {
        let nets: Vec<ipnet::IpNet> = ["10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse().expect("literal"))
            .collect();
        let allowed = |peer: &str| source_allowed(Some(&nets), peer.parse().expect("literal"));
        assert!(allowed("10.1.2.3:5000"));
        assert!(allowed("[2001:db8::1]:5000"));
        assert!(allowed("[::ffff:10.0.0.1]:5000"));
        assert!(!allowed("127.0.0.1:5000"));
        assert!(!allowed("[::1]:5000"));
        assert!(!allowed("[2001:db9::1]:5000"));
        assert!(source_allowed(
            None,
            "192.0.2.1:1".parse().expect("literal")
        ));
        assert!(!source_allowed(
            Some(&[]),
            "192.0.2.1:1".parse().expect("literal")
        ));
    }
}
