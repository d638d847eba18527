//! Targets named by SNI: the forms a server name takes when it names a target rather than
//! the gateway, and the settings that say which are accepted. Istio's east-west form
//! `outbound_.<port>_.<subset>_.<name>` names its port (the subset must be `_`: crossgate has
//! no subsets); a bare `<name>` takes `[sni] default_port`, and names nothing without it.
//! Pure: [`crate::route::Routes`] routes what this module parses, [`crate::plan`] decides.

use crate::authz::Pattern;

/// `[sni] default_port` and `[passthrough] allow`: the rules of SNI routing, swapped with
/// the other rules on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SniRules {
    /// The port of a bare-name SNI; `None`: only Istio's form names a target.
    pub default_port: Option<u16>,
    /// The target names the passthrough port may splice to; empty: none.
    pub passthrough_allow: Vec<Pattern>,
}

/// What a server name says about a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SniName<'a> {
    /// Istio's form, with the port it names.
    Istio { name: &'a str, port: u16 },
    /// Istio's prefix, but not its form (no port, a subset): names no target crossgate has.
    BadIstio,
    /// Any other name: a target only with `[sni] default_port`.
    Bare(&'a str),
}

/// Istio's prefix for an SNI that names a service's port.
const ISTIO_PREFIX: &str = "outbound_.";

/// Reads a server name (as the client sent it; case is kept, compared later).
pub fn parse(sni: &str) -> SniName<'_> {
    let Some(rest) = strip_prefix_ignore_case(sni, ISTIO_PREFIX) else {
        return SniName::Bare(sni);
    };
    let istio = || -> Option<SniName<'_>> {
        let (port, rest) = rest.split_once('.')?;
        let port = port.strip_suffix('_')?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
        let (subset, name) = rest.split_once('.')?;
        (subset == "_" && !name.is_empty()).then_some(SniName::Istio { name, port })
    };
    istio().unwrap_or(SniName::BadIstio)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The host name part of a server name: the service name of Istio's form, else the name
/// itself. What `[[sni.certificate]]` names are matched against.
pub fn host_of(sni: &str) -> &str {
    match parse(sni) {
        SniName::Istio { name, .. } => name,
        SniName::BadIstio | SniName::Bare(_) => sni,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_form() {
        assert_eq!(
            parse("outbound_.8080_._.bb.mc-demo.svc.cluster.local"),
            SniName::Istio {
                name: "bb.mc-demo.svc.cluster.local",
                port: 8080
            }
        );
        assert_eq!(
            parse("OUTBOUND_.443_._.Web.NS.svc.cluster.local."),
            SniName::Istio {
                name: "Web.NS.svc.cluster.local.",
                port: 443
            }
        );
        for bad in [
            "outbound_.",
            "outbound_.8080_",
            "outbound_.8080._.bb.ns.svc.cluster.local",
            "outbound_._._.bb.ns.svc.cluster.local",
            "outbound_.0_._.bb.ns.svc.cluster.local",
            "outbound_.70000_._.bb.ns.svc.cluster.local",
            "outbound_.+80_._.bb.ns.svc.cluster.local",
            "outbound_.8080_.v1_.bb.ns.svc.cluster.local",
            "outbound_.8080_._.",
        ] {
            assert_eq!(parse(bad), SniName::BadIstio, "{bad}");
        }
    }

    #[test]
    fn bare_names_and_hosts() {
        assert_eq!(
            parse("bb.mc-demo.svc.cluster.local"),
            SniName::Bare("bb.mc-demo.svc.cluster.local")
        );
        assert_eq!(parse("outbound"), SniName::Bare("outbound"));
        assert_eq!(
            host_of("outbound_.8080_._.bb.mc-demo.svc.cluster.local"),
            "bb.mc-demo.svc.cluster.local"
        );
        assert_eq!(
            host_of("bb.mc-demo.svc.cluster.local"),
            "bb.mc-demo.svc.cluster.local"
        );
    }
}
