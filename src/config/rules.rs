//! The parsers of the sections a reload swaps: `[routing]` (cluster domain, static routes, DNS
//! servers) and `[[authorization]]` (identity and service patterns), as more methods of the
//! one [`Parser`] that reports every problem with file and key.

use super::Parser;
use super::Routing;
use crate::authz::{Pattern, Rule};
use std::collections::HashMap;
use std::net::SocketAddr;
use toml::{Table, Value};

impl Parser<'_> {
    pub(super) fn routing(&mut self, v: Option<&Value>) -> Option<Routing> {
        let empty = Table::new();
        let t = self.section(v, "routing").unwrap_or(&empty);
        self.known(t, "routing", &["cluster_domain", "static", "dns_servers"]);
        let cluster_domain = self
            .string(t, "cluster_domain", "routing.cluster_domain")
            .unwrap_or_else(|| "cluster.local".into());
        if !crate::names::is_dns_name(&cluster_domain) {
            self.error(
                "routing.cluster_domain",
                format!("{cluster_domain:?} is not a DNS name"),
            );
        } else if let Some(rest) = crate::names::normalize(&cluster_domain).strip_prefix("svc.") {
            // Targets are <svc>.<ns>.svc.<cluster_domain>: this one would make them end in
            // svc.svc.<rest>, a name no Kubernetes service has.
            self.error(
                "routing.cluster_domain",
                format!(
                    "{cluster_domain:?} starts with \"svc.\": targets would be \
                     <svc>.<ns>.svc.{cluster_domain}; the cluster domain is what follows \
                     \"svc.\", write {rest:?}"
                ),
            );
        }
        let mut statics = HashMap::new();
        if let Some(st) = self.section(t.get("static"), "routing.static") {
            for (k, v) in st {
                let full = format!("routing.static.\"{k}\"");
                let Some(key) = self.static_key(k, &full) else {
                    continue;
                };
                let eps = self.endpoints(v, &full);
                if !eps.is_empty() {
                    statics.insert(key, eps);
                }
            }
        }
        let dns_servers = match t.get("dns_servers") {
            None => Vec::new(),
            Some(v) => self.endpoints(v, "routing.dns_servers"),
        };
        Some(Routing {
            cluster_domain,
            statics,
            dns_servers,
        })
    }

    fn static_key(&mut self, k: &str, full: &str) -> Option<(String, u16)> {
        let Some((name, port)) = k.rsplit_once(':') else {
            self.error(full, "key must be name:port");
            return None;
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                self.error(full, format!("bad port {port:?}"));
                return None;
            }
        };
        if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') {
            self.error(full, "key must be a name, never an IP literal");
            return None;
        }
        if !crate::names::is_dns_name(name) {
            self.error(full, format!("{name:?} is not a DNS name"));
            return None;
        }
        Some((crate::names::normalize(name), port))
    }

    pub(crate) fn endpoints(&mut self, v: &Value, full: &str) -> Vec<SocketAddr> {
        let Value::Array(items) = v else {
            self.error(full, "expected an array of \"ip:port\" strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str().map(str::parse::<SocketAddr>) {
                Some(Ok(a)) => out.push(a),
                _ => self.error(full, format!("bad endpoint {item} (expected \"ip:port\")")),
            }
        }
        if items.is_empty() {
            self.error(full, "no endpoints");
        }
        out
    }

    pub(super) fn authorization(&mut self, v: Option<&Value>) -> Vec<Rule> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(rules) = v else {
            self.error("authorization", "expected [[authorization]] tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let prefix = format!("authorization[{i}]");
            let Value::Table(t) = r else {
                self.error(&prefix, "expected a table");
                continue;
            };
            self.known(t, &prefix, &["identities", "services"]);
            let identities = self.patterns(
                t.get("identities"),
                &format!("{prefix}.identities"),
                crate::authz::identity_pattern,
            );
            if t.get("identities").is_none() {
                self.error(&format!("{prefix}.identities"), "missing (e.g. [\"*\"])");
            }
            for (key, what) in [("identities", "no client"), ("services", "no service")] {
                if matches!(t.get(key), Some(Value::Array(a)) if a.is_empty()) {
                    self.error(
                        &format!("{prefix}.{key}"),
                        format!(
                            "empty: the rule admits {what}, and with rules in force whatever \
                             no rule admits is refused; list patterns (e.g. [\"*\"]) or \
                             remove the rule"
                        ),
                    );
                }
            }
            let services = match t.get("services") {
                None => vec![Pattern::Any],
                some => self.patterns(
                    some,
                    &format!("{prefix}.services"),
                    crate::authz::service_pattern,
                ),
            };
            out.push(Rule {
                identities,
                services,
            });
        }
        out
    }

    pub(super) fn patterns(
        &mut self,
        v: Option<&Value>,
        full: &str,
        parse: fn(&str) -> Result<Pattern, String>,
    ) -> Vec<Pattern> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.error(full, "expected an array of patterns");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str().map(parse) {
                Some(Ok(p)) => out.push(p),
                Some(Err(e)) => self.error(full, e),
                None => self.error(full, format!("expected a string, got {item}")),
            }
        }
        out
    }
}
