//! `crossgate check`: everything `run` would load, loaded and explained, without binding.
//! Owns the words an operator reads about a configuration: the identity, the leaf's validity
//! as UTC dates, the rules in force and the routes. Loading itself is `config` and `identity`,
//! so `check` and `run` refuse the same things in the same words. A prober's configuration
//! (`[[link]]`) is checked as `probe` loads it ([`probe`]).

pub mod probe;

use crate::authz::{Pattern, Rule};
use crate::config::{Config, Overrides};
pub use crate::identity::{span, utc};
use std::net::SocketAddr;
use std::path::Path;

/// Below this share of its lifetime left, a leaf is worth a warning. Linkerd rotates at 70 %
/// of the lifetime, so a leaf this close to the end has missed its rotation.
const WARN_LIFE_LEFT: f64 = 0.10;

/// What a successful check found.
pub struct Report {
    pub identity: String,
    pub anchors: usize,
    /// The leaf's validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub cluster_domain: String,
    /// `name:port` and its endpoints, sorted by name and port.
    pub statics: Vec<(String, u16, Vec<SocketAddr>)>,
    pub rules: Vec<Rule>,
    /// The ports and who may reach them.
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub allow_sources: Option<Vec<ipnet::IpNet>>,
    /// Which mode is in force: the files, or Linkerd's identity controller.
    pub source: IdentitySource,
    /// `[policy]`, described in one line.
    pub policy: Option<String>,
    /// What loads but deserves a word (e.g. trust anchors without a root).
    pub notes: Vec<String>,
}

/// Where the gateway's leaf comes from.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// `identity.certificate` and `identity.key`, reloaded when they change.
    Files {
        certificate: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// `[identity.linkerd]`: no leaf until `run` asks the controller.
    Linkerd(crate::config::LinkerdIdentity),
}

/// `crossgate check`: the summary on stdout, warnings and errors on stderr; the exit code
/// (0, or 64 when anything is wrong). An expired leaf is an error like any other identity
/// problem, as `run` refuses it too. A prober's configuration (`[[link]]`) is checked as
/// `probe` loads it.
pub fn command(config: &Path) -> u8 {
    use std::io::Write;
    let now = crate::identity::unix_now();
    let checked = if probe::is_prober_config(config) {
        probe::check(config).map(|r| (r.summary(now), r.warnings(now)))
    } else {
        check(config).map(|r| (r.summary(now), r.warnings(now)))
    };
    match checked {
        Ok((summary, warnings)) => {
            // A closed stdout (`check | head`) is no reason to panic.
            let mut out = std::io::stdout().lock();
            for line in summary {
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
            for w in warnings {
                eprintln!("warning: {w}");
            }
            0
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            64
        }
    }
}

/// Checks the configuration file and the identity files it names: they parse, the key
/// matches the leaf, the leaf chains to the anchors and is valid now, and names the own
/// identity. Returns every problem found; an expired or not yet valid leaf is named as such,
/// with its dates.
pub fn check(path: &Path) -> Result<Report, Vec<String>> {
    let config = Config::load(path, &Overrides::default()).map_err(|e| e.0)?;
    if let Some(linkerd) = &config.identity.linkerd {
        return check_linkerd(&config, linkerd);
    }
    let (roots, creds) = crate::identity::load(&config.identity, &crate::tls::provider())?;
    let mut statics: Vec<_> = config
        .routing
        .statics
        .iter()
        .map(|((name, port), eps)| (name.clone(), *port, eps.clone()))
        .collect();
    statics.sort();
    Ok(Report {
        identity: creds.identity,
        anchors: roots.len(),
        not_before: creds.not_before,
        not_after: creds.not_after,
        cluster_domain: config.routing.cluster_domain,
        statics,
        rules: config.authorization,
        listen: config.server.listen,
        admin: config.server.admin,
        metrics: config.server.metrics,
        allow_sources: config.server.allow_sources,
        notes: crate::identity::audit_anchors(&config.identity).warnings,
        source: IdentitySource::Files {
            certificate: config.identity.certificate,
            key: config.identity.key,
        },
        policy: config.policy.as_ref().map(crate::config::Policy::describe),
    })
}

/// Linkerd mode: the anchors load; the leaf is the controller's business at run time.
fn check_linkerd(
    config: &Config,
    linkerd: &crate::config::LinkerdIdentity,
) -> Result<Report, Vec<String>> {
    let roots = crate::identity::anchors(&config.identity)?;
    let mut statics: Vec<_> = config
        .routing
        .statics
        .iter()
        .map(|((name, port), eps)| (name.clone(), *port, eps.clone()))
        .collect();
    statics.sort();
    Ok(Report {
        identity: crate::names::normalize(config.identity.name.as_deref().unwrap_or_default()),
        anchors: roots.len(),
        not_before: 0,
        not_after: 0,
        cluster_domain: config.routing.cluster_domain.clone(),
        statics,
        rules: config.authorization.clone(),
        listen: config.server.listen,
        admin: config.server.admin,
        metrics: config.server.metrics,
        allow_sources: config.server.allow_sources.clone(),
        source: IdentitySource::Linkerd(linkerd.clone()),
        policy: config.policy.as_ref().map(crate::config::Policy::describe),
        notes: crate::identity::audit_anchors(&config.identity).warnings,
    })
}

/// The line that says which identity mode is in force.
fn mode_line(source: &IdentitySource) -> String {
    match source {
        IdentitySource::Files { certificate, key } => format!(
            "identity mode: files: certificate {}, key {} (reloaded when they change)",
            certificate.display(),
            key.display()
        ),
        IdentitySource::Linkerd(l) => {
            let transport = match &l.server_name {
                Some(n) => format!("TLS to {n}"),
                None => "plaintext (loopback)".to_string(),
            };
            format!(
                "identity mode: linkerd: leaf from the identity controller at {} ({transport}), \
                 token {} read at each Certify, key in memory only; renewed at 70 % of its life \
                 within [{}, {}]; /ready answers 503 until the first leaf",
                l.addr,
                l.token_file.display(),
                humantime::format_duration(l.min_refresh),
                humantime::format_duration(l.max_refresh)
            )
        }
    }
}

impl Report {
    /// The summary `check` prints: identity, validity, routing, rules; one fact a line.
    pub fn summary(&self, now: i64) -> Vec<String> {
        let certificate = match &self.source {
            IdentitySource::Linkerd(_) => {
                "certificate: none yet: issued by the identity controller at run time".to_string()
            }
            IdentitySource::Files { .. } => format!(
                "certificate: not_before {} not_after {} ({} left of {})",
                utc(self.not_before),
                utc(self.not_after),
                span(self.not_after - now),
                span(self.not_after - self.not_before)
            ),
        };
        let mut out = vec![
            format!(
                "ok: identity {} ({} trust anchor(s))",
                self.identity, self.anchors
            ),
            certificate,
            mode_line(&self.source),
            format!(
                "routing: cluster domain {d}: targets <svc>.<ns>.svc.{d}, resolved by DNS \
                 unless a static route names them",
                d = self.cluster_domain
            ),
        ];
        let sources = match &self.allow_sources {
            None => "any source".to_string(),
            Some(nets) => {
                let nets: Vec<_> = nets.iter().map(ToString::to_string).collect();
                format!("sources {} only", nets.join(", "))
            }
        };
        out.push(format!("gateway port: {} ({sources})", self.listen));
        out.push(match self.metrics {
            None => format!("admin port: {} (/live, /ready, /metrics)", self.admin),
            Some(m) => format!(
                "admin port: {} (/live, /ready); metrics port: {m} (/metrics)",
                self.admin
            ),
        });
        if self.statics.is_empty() {
            out.push("static routes: none".into());
        }
        for (name, port, eps) in &self.statics {
            let eps: Vec<_> = eps.iter().map(ToString::to_string).collect();
            out.push(format!("static route: {name}:{port} -> {}", eps.join(", ")));
        }
        if self.rules.is_empty() {
            out.push("no rules: every identity under the anchors may reach every service".into());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            out.push(format!(
                "rule {}: identities [{}] may reach services [{}]",
                i + 1,
                list(&rule.identities),
                list(&rule.services)
            ));
        }
        out.extend(self.policy.clone());
        out.push(format!(
            "loop: a client presenting {} is always refused",
            self.identity
        ));
        out
    }

    /// Warnings about a configuration that loads: the [`Report::notes`], a leaf with less than
    /// 10 % of its life left.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let life = self.not_after - self.not_before;
        let left = self.not_after - now;
        let mut out = self.notes.clone();
        if matches!(self.source, IdentitySource::Linkerd(_)) {
            return out;
        }
        if life_nearly_over(self.not_before, self.not_after, now) {
            out.push(format!(
                "the leaf expires at {} (in {}): less than 10 % of its {} lifetime left; \
                 rotate it",
                utc(self.not_after),
                span(left),
                span(life)
            ));
        }
        out
    }
}

/// Less than [`WARN_LIFE_LEFT`] of the leaf's lifetime is left at `now`.
fn life_nearly_over(not_before: i64, not_after: i64, now: i64) -> bool {
    let (life, left) = (not_after - not_before, not_after - now);
    life > 0 && (left as f64) < (life as f64) * WARN_LIFE_LEFT
}

fn list(patterns: &[Pattern]) -> String {
    let quoted: Vec<_> = patterns
        .iter()
        .map(|p| format!("{:?}", p.to_string()))
        .collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rules: Vec<Rule>) -> Report {
        Report {
            identity: "gw.ns.serviceaccount.identity.linkerd.cluster.local".into(),
            anchors: 1,
            not_before: 0,
            not_after: 86_400,
            cluster_domain: "cluster.local".into(),
            statics: vec![(
                "bb.demo.svc.cluster.local".into(),
                8080,
                vec!["127.0.0.1:18080".parse().unwrap()],
            )],
            rules,
            listen: "0.0.0.0:4143".parse().unwrap(),
            admin: "0.0.0.0:4191".parse().unwrap(),
            metrics: None,
            allow_sources: None,
            source: IdentitySource::Files {
                certificate: "tls.crt".into(),
                key: "tls.key".into(),
            },
            policy: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn dates_and_spans() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(span(42), "42s");
        assert_eq!(span(7 * 60 + 3), "7m 3s");
        assert_eq!(span(5 * 3600 + 12 * 60), "5h 12m");
        assert_eq!(span(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(span(-5), "0s");
    }

    #[test]
    fn summary_names_rules_routes_and_dates() {
        let r = report(vec![]);
        let lines = r.summary(3600);
        assert!(lines.contains(
            &"no rules: every identity under the anchors may reach every service".to_string()
        ));
        assert!(lines.contains(
            &"static route: bb.demo.svc.cluster.local:8080 -> 127.0.0.1:18080".to_string()
        ));
        assert!(lines[1].contains("not_after 1970-01-02T00:00:00Z (23h 0m left of 1d 0h)"));
        assert!(lines.contains(&"gateway port: 0.0.0.0:4143 (any source)".to_string()));
        assert!(lines.contains(&"admin port: 0.0.0.0:4191 (/live, /ready, /metrics)".to_string()));
        let mut private = report(vec![]);
        private.metrics = Some("10.0.0.5:9191".parse().unwrap());
        private.allow_sources = Some(vec!["10.0.0.0/8".parse().unwrap()]);
        let lines = private.summary(0);
        assert!(
            lines.contains(&"gateway port: 0.0.0.0:4143 (sources 10.0.0.0/8 only)".to_string())
        );
        assert!(
            lines.contains(
                &"admin port: 0.0.0.0:4191 (/live, /ready); metrics port: 10.0.0.5:9191 (/metrics)"
                    .to_string()
            )
        );
        let r = report(vec![Rule {
            identities: vec![
                "*.west.serviceaccount.identity.linkerd.cluster.local"
                    .parse()
                    .unwrap(),
            ],
            services: vec![Pattern::Any],
        }]);
        assert!(
            r.summary(0).contains(
                &"rule 1: identities [\"*.west.serviceaccount.identity.linkerd.cluster.local\"] \
              may reach services [\"*\"]"
                    .to_string()
            )
        );
    }

    #[test]
    fn warns_below_a_tenth_of_the_life() {
        let r = report(vec![]);
        assert!(r.warnings(0).is_empty());
        assert!(r.warnings(77_760).is_empty(), "exactly 10 % left");
        let w = r.warnings(80_000);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("1970-01-02T00:00:00Z"), "{w:?}");
    }
}
