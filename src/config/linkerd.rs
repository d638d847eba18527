//! `[identity.linkerd]`: the gateway's leaf from Linkerd's identity controller instead of
//! files. Parsed as one more method of the [`Parser`]; nothing here dials or reads the token.

use super::discovery::{is_loopback, split_host_port};
use super::{LinkerdIdentity, Parser};
use std::path::Path;
use std::time::Duration;
use toml::Table;

const KEYS: &[&str] = &[
    "addr",
    "server_name",
    "token_file",
    "min_refresh",
    "max_refresh",
];

impl Parser<'_> {
    /// `[identity.linkerd]` within `[identity]` (`t`). Both modes at once, or no
    /// `identity.name`, are errors naming the keys. `None` when anything is wrong.
    pub(super) fn linkerd_identity(
        &mut self,
        t: &Table,
        base: &Path,
        has_name: bool,
    ) -> Option<LinkerdIdentity> {
        let before = self.errors.len();
        let files: Vec<_> = ["certificate", "key"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .map(|k| format!("identity.{k}"))
            .collect();
        if !files.is_empty() {
            self.error(
                "identity.linkerd",
                format!(
                    "both modes configured: {} and [identity.linkerd]; the leaf comes either \
                     from files or from Linkerd's identity controller, remove one",
                    files.join(" and ")
                ),
            );
        }
        if !has_name {
            self.error(
                "identity.name",
                "missing: required with [identity.linkerd] (the identity asked for, e.g. \
                 linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local)",
            );
        }
        let l: &Table = self.section(t.get("linkerd"), "identity.linkerd")?;
        self.known(l, "identity.linkerd", KEYS);
        let addr = self.string(l, "addr", "identity.linkerd.addr");
        let mut needs_name = false;
        match &addr {
            None if l.get("addr").is_none() => self.error(
                "identity.linkerd.addr",
                "missing (host:port of the Identity API, e.g. \
                 linkerd-identity-headless.linkerd.svc.cluster.local.:8080)",
            ),
            None => {}
            Some(a) => match split_host_port(a) {
                Ok((host, _)) => needs_name = !is_loopback(host),
                Err(e) => self.error("identity.linkerd.addr", format!("{a:?}: {e}")),
            },
        }
        let server_name = self.string(l, "server_name", "identity.linkerd.server_name");
        match &server_name {
            Some(n) if !crate::names::is_dns_name(n) => self.error(
                "identity.linkerd.server_name",
                format!("{n:?} is not a DNS-like identity"),
            ),
            None if l.get("server_name").is_none() && needs_name => self.error(
                "identity.linkerd.server_name",
                "missing (the controller's identity; only a loopback addr may go without TLS)",
            ),
            _ => {}
        }
        let token_file = match self.string(l, "token_file", "identity.linkerd.token_file") {
            None => {
                if l.get("token_file").is_none() {
                    self.error(
                        "identity.linkerd.token_file",
                        "missing (the projected ServiceAccount token, audience identity.l5d.io)",
                    );
                }
                None
            }
            Some(s) => {
                let path = base.join(&s);
                match std::fs::metadata(&path) {
                    Ok(_) => Some(path),
                    Err(e) => {
                        self.error(
                            "identity.linkerd.token_file",
                            crate::explain::file(&path, &e),
                        );
                        None
                    }
                }
            }
        };
        let min_refresh = self
            .duration(l, "min_refresh", "identity.linkerd.min_refresh")
            .unwrap_or(Duration::from_secs(10));
        let max_refresh = self
            .duration(l, "max_refresh", "identity.linkerd.max_refresh")
            .unwrap_or(Duration::from_secs(24 * 3600));
        if min_refresh > max_refresh {
            self.error(
                "identity.linkerd.min_refresh",
                "is above identity.linkerd.max_refresh",
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(LinkerdIdentity {
            addr: addr?,
            server_name,
            token_file: token_file?,
            min_refresh,
            max_refresh,
        })
    }
}
