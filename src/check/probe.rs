//! `crossgate check` on a prober's configuration (`crossgate probe --config`), recognised by
//! its `[[link]]` tables: everything `probe` would load, loaded and explained without binding
//! or probing: the admin port, the client identity and its dates, each link.

use super::{span, utc};
use crate::probe::{Link, ProbeConfig};
use std::net::SocketAddr;
use std::path::Path;

/// True when `path` reads as TOML with `[[link]]` tables: a prober's configuration. Anything
/// else, unreadable included, is checked as a gateway's (which names the problem).
pub fn is_prober_config(path: &Path) -> bool {
    let Ok((_, text)) = crate::config::read(path) else {
        return false;
    };
    text.parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("link"))
}

/// What a successful check of a prober's configuration found.
pub struct ProbeReport {
    pub admin: SocketAddr,
    /// The client identity, its trust anchors and the leaf's validity (Unix seconds).
    pub identity: Option<(String, usize, i64, i64)>,
    pub dns_servers: Vec<SocketAddr>,
    pub links: Vec<Link>,
    /// What loads but deserves a word (e.g. trust anchors without a root).
    pub notes: Vec<String>,
}

/// Checks a prober's configuration and, when it has `[identity]`, its files, as `probe`
/// loads them. Returns every problem found.
pub fn check(path: &Path) -> Result<ProbeReport, Vec<String>> {
    let config = ProbeConfig::load(path).map_err(|e| e.0)?;
    let (identity, notes) = match &config.identity {
        None => (None, Vec::new()),
        Some(files) => {
            let (roots, creds) = crate::identity::load(files, &crate::tls::provider())?;
            let id = (
                creds.identity,
                roots.len(),
                creds.not_before,
                creds.not_after,
            );
            (Some(id), crate::identity::audit_anchors(files).warnings)
        }
    };
    Ok(ProbeReport {
        admin: config.admin,
        identity,
        dns_servers: config.dns_servers,
        links: config.links,
        notes,
    })
}

impl ProbeReport {
    /// The summary `check` prints for a prober: one fact a line.
    pub fn summary(&self, now: i64) -> Vec<String> {
        let mut out = vec![
            format!("ok: prober configuration, {} link(s)", self.links.len()),
            format!(
                "prober admin port: {} (/live, /ready, /metrics)",
                self.admin
            ),
        ];
        out.push(match &self.identity {
            None => "client identity: none (plaintext probes only)".into(),
            Some((id, anchors, not_before, not_after)) => format!(
                "client identity: {id} ({anchors} trust anchor(s)); certificate: not_before {} \
                 not_after {} ({} left of {})",
                utc(*not_before),
                utc(*not_after),
                span(not_after - now),
                span(not_after - not_before)
            ),
        });
        if !self.dns_servers.is_empty() {
            let servers: Vec<_> = self.dns_servers.iter().map(ToString::to_string).collect();
            out.push(format!("dns servers: {}", servers.join(", ")));
        }
        for l in &self.links {
            let over = match &l.identity {
                Some(id) => format!("mTLS to {id}"),
                None => "plaintext".into(),
            };
            out.push(format!(
                "link {}: GET {}:{}{} ({over}) every {}, timeout {}, dead after {} failure(s), \
                 {} service(s)",
                l.name,
                l.address,
                l.port,
                l.path,
                humantime::format_duration(l.period),
                humantime::format_duration(l.timeout),
                l.failure_threshold,
                l.services.len()
            ));
        }
        out
    }

    /// The notes, and a client leaf with less than 10 % of its life left.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let mut out = self.notes.clone();
        if let Some((_, _, not_before, not_after)) = self.identity
            && super::life_nearly_over(not_before, not_after, now)
        {
            out.push(format!(
                "the prober's client leaf expires at {} (in {}): less than 10 % of its \
                 lifetime left; rotate it",
                utc(not_after),
                span(not_after - now)
            ));
        }
        out
    }
}
