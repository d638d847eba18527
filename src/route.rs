//! Routing: from what the client said (transport header, or an HTTP authority) to a [`Target`],
//! or a refusal. Pure: no I/O, no DNS. Never an open proxy: only names under
//! `svc.<cluster_domain>` with at least `<svc>.<ns>` before it, or exact `[routing.static]` keys.

use crate::endpoint::{Endpoint, EndpointSet};
use crate::names::normalize;
use crate::refusal::Refusal;
use crate::sni::{SniName, SniRules};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a connection or request goes: a normalized (lower-case, no trailing dot) name and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub name: Arc<str>,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// The routing table: the cluster domain and the statically configured targets.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// `.svc.<cluster_domain>`, lower-case, with the leading dot.
    svc_suffix: String,
    statics: HashMap<Target, EndpointSet>,
    sni: SniRules,
}

impl Routes {
    /// `statics` keys are `(name, port)`; names are normalized here.
    pub fn new(cluster_domain: &str, statics: HashMap<(String, u16), Vec<SocketAddr>>) -> Routes {
        let cd = normalize(cluster_domain);
        Routes {
            svc_suffix: format!(".svc.{cd}"),
            statics: statics
                .into_iter()
                .map(|((n, port), eps)| {
                    let name = normalize(&n).into();
                    let eps: Vec<Endpoint> = eps.into_iter().map(Endpoint::plain).collect();
                    (Target { name, port }, EndpointSet::from(eps))
                })
                .collect(),
            sni: SniRules::default(),
        }
    }

    /// With the rules of SNI routing (`[sni]`, `[passthrough] allow`).
    pub fn with_sni(mut self, sni: SniRules) -> Routes {
        self.sni = sni;
        self
    }

    /// The rules of SNI routing in force.
    pub fn sni(&self) -> &SniRules {
        &self.sni
    }

    /// The target a server name names, if it names one: Istio's form always (refused when it
    /// does not route), a bare name with `[sni] default_port` when it routes. `None`: the
    /// name is not a target, and the connection is served as addressed to the gateway.
    pub fn route_sni(&self, sni: &str) -> Option<Result<Target, Refusal>> {
        match crate::sni::parse(sni) {
            SniName::Istio { name, port } => Some(self.route(name, port)),
            SniName::BadIstio => Some(Err(Refusal::BadGatewayDomain)),
            SniName::Bare(name) => {
                let port = self.sni.default_port?;
                self.route(name, port).ok().map(Ok)
            }
        }
    }

    /// The static endpoints for `target`, if it is a `[routing.static]` key.
    pub fn static_endpoints(&self, target: &Target) -> Option<&EndpointSet> {
        self.statics.get(target)
    }

    /// Routes `name:port` to a target, or refuses it as a bad gateway domain.
    pub fn route(&self, name: &str, port: u16) -> Result<Target, Refusal> {
        let name = normalize(name);
        if crate::names::is_ip_literal(&name) || port == 0 {
            return Err(Refusal::BadGatewayDomain);
        }
        // `<service>.<namespace>` at least before the suffix; a DNS name has no empty label.
        let in_cluster = name
            .strip_suffix(&self.svc_suffix)
            .is_some_and(|head| head.contains('.'))
            && crate::names::is_dns_name(&name);
        let target = Target {
            name: name.into(),
            port,
        };
        if in_cluster || self.statics.contains_key(&target) {
            Ok(target)
        } else {
            Err(Refusal::BadGatewayDomain)
        }
    }

    /// Routes an HTTP authority (`host[:port]`), defaulting the port to `default_port`.
    pub fn route_authority(&self, authority: &str, default_port: u16) -> Result<Target, Refusal> {
        let (host, port) = split_authority(authority, Some(default_port))?;
        self.route(host, port)
    }
}

/// Splits `host[:port]`; without a port, `default_port` or a refusal. IPv6 literals (`[..]`)
/// and ports that are not numbers are refused.
pub fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(&str, u16), Refusal> {
    if authority.starts_with('[') {
        return Err(Refusal::BadGatewayDomain); // IPv6 literal
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h, p.parse::<u16>().map_err(|_| Refusal::BadGatewayDomain)?)),
        None => default_port
            .map(|p| (authority, p))
            .ok_or(Refusal::BadGatewayDomain),
    }
}

impl Target {
    /// The target an upstream request URI names: the authority the gateway wrote itself,
    /// always with its port (no default here: a missing port is a bug, refused).
    pub fn from_uri(uri: &http::Uri) -> Result<Target, Refusal> {
        let authority = uri.authority().ok_or(Refusal::BadGatewayDomain)?;
        let (name, port) = split_authority(authority.as_str(), None)?;
        Ok(Target {
            name: name.into(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let mut s = HashMap::new();
        s.insert(
            ("bb.mc-demo.svc.cluster.local".to_string(), 8080),
            vec!["127.0.0.1:18080".parse().unwrap()],
        );
        s.insert(
            ("Legacy.Example.COM".to_string(), 443),
            vec!["127.0.0.1:18443".parse().unwrap()],
        );
        Routes::new("cluster.local", s)
    }

    #[test]
    fn cluster_names_accepted() {
        let r = routes();
        for name in [
            "podinfo.test.svc.cluster.local",
            "podinfo.test.svc.cluster.local.",
            "PodInfo.Test.SVC.Cluster.Local",
            "pod-0.podinfo.test.svc.cluster.local",
        ] {
            let t = r.route(name, 9898).unwrap();
            assert_eq!(t.port, 9898);
            assert!(t.name.ends_with(".svc.cluster.local"), "{name}");
            assert_eq!(&*t.name, t.name.to_ascii_lowercase());
        }
        assert_eq!(
            r.route("podinfo.test.svc.cluster.local", 9898)
                .unwrap()
                .to_string(),
            "podinfo.test.svc.cluster.local:9898"
        );
    }

    #[test]
    fn others_refused() {
        let r = routes();
        for name in [
            "podinfo.test.example.com",
            "test.svc.cluster.local",
            "svc.cluster.local",
            "podinfo.test.svc.cluster.local.evil.com",
            "podinfo.test.svc.other.local",
            "127.0.0.1",
            "::1",
            "[::1]",
            "10.0.0.1",
            "kubernetes.default.svc.cluster.localx",
            ".test.svc.cluster.local",
            "a..svc.cluster.local",
        ] {
            assert_eq!(
                r.route(name, 80),
                Err(Refusal::BadGatewayDomain),
                "{name} accepted"
            );
        }
    }

    #[test]
    fn statics_exact_name_and_port() {
        let r = routes();
        assert!(r.route("legacy.example.com", 443).is_ok());
        assert!(r.route("LEGACY.example.com.", 443).is_ok());
        assert_eq!(
            r.route("legacy.example.com", 444),
            Err(Refusal::BadGatewayDomain)
        );
        let t = r.route("bb.mc-demo.svc.cluster.local", 8080).unwrap();
        assert_eq!(r.static_endpoints(&t).unwrap().len(), 1);
        let t = r.route("bb.mc-demo.svc.cluster.local", 8081).unwrap();
        assert!(r.static_endpoints(&t).is_none());
    }

    #[test]
    fn targets_from_sni() {
        let r = routes();
        let istio = "outbound_.8080_._.BB.mc-demo.svc.cluster.local";
        assert_eq!(
            r.route_sni(istio),
            Some(Ok(Target {
                name: "bb.mc-demo.svc.cluster.local".into(),
                port: 8080
            }))
        );
        for refused in [
            "outbound_.8080_._.example.com",
            "outbound_.8080_._.10.0.0.1",
            "outbound_.8080_.v1_.bb.mc-demo.svc.cluster.local",
            "outbound_.x_._.bb.mc-demo.svc.cluster.local",
        ] {
            assert_eq!(
                r.route_sni(refused),
                Some(Err(Refusal::BadGatewayDomain)),
                "{refused}"
            );
        }
        // A bare name is a target only with a default port, and only when it routes.
        assert_eq!(r.route_sni("bb.mc-demo.svc.cluster.local"), None);
        let r = r.with_sni(SniRules {
            default_port: Some(443),
            ..SniRules::default()
        });
        assert_eq!(
            r.route_sni("legacy.example.com"),
            Some(Ok(Target {
                name: "legacy.example.com".into(),
                port: 443
            }))
        );
        assert_eq!(r.route_sni("gateway.example.com"), None);
        assert_eq!(r.route_sni("10.0.0.1"), None);
    }

    #[test]
    fn authorities() {
        let r = routes();
        assert_eq!(
            r.route_authority("podinfo.test.svc.cluster.local", 80)
                .unwrap()
                .port,
            80
        );
        assert_eq!(
            r.route_authority("podinfo.test.svc.cluster.local:9898", 80)
                .unwrap()
                .port,
            9898
        );
        assert!(r.route_authority("[::1]:80", 80).is_err());
        assert!(r.route_authority("127.0.0.1:80", 80).is_err());
        assert!(r.route_authority("a.b.svc.cluster.local:x", 80).is_err());
    }
}
