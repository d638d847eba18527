//! The section parsers behind [`super::Config::parse`]: each reads its table, checks every key,
//! and records every problem (file and key named) instead of stopping at the first.

use super::{Identity, Log, Overrides, Server};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

pub(crate) struct Parser<'a> {
    pub(crate) origin: &'a str,
    pub(crate) errors: Vec<String>,
}

/// The text of the config file at `path`, and its name for messages.
pub(crate) fn read(path: &Path) -> Result<(String, String), super::ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| super::ConfigErrors(vec![crate::explain::file(path, &e)]))?;
    Ok((origin, text))
}

impl<'a> Parser<'a> {
    /// The TOML table of `text`, and a parser that names `origin` in every problem.
    pub(crate) fn start(
        text: &str,
        origin: &'a str,
    ) -> Result<(Table, Parser<'a>), super::ConfigErrors> {
        let table = text
            .parse()
            .map_err(|e: toml::de::Error| super::ConfigErrors(vec![format!("{origin}: {e}")]))?;
        let parser = Parser {
            origin,
            errors: Vec::new(),
        };
        Ok((table, parser))
    }
}

impl Parser<'_> {
    pub(crate) fn error(&mut self, key: &str, msg: impl fmt::Display) {
        self.errors.push(format!("{}: {key}: {msg}", self.origin));
    }

    pub(crate) fn known(&mut self, table: &Table, prefix: &str, keys: &[&str]) {
        for k in table.keys() {
            if !keys.contains(&k.as_str()) {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                self.error(&full, format!("unknown key (known: {})", keys.join(", ")));
            }
        }
    }

    pub(crate) fn section<'v>(&mut self, v: Option<&'v Value>, name: &str) -> Option<&'v Table> {
        match v {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(_) => {
                self.error(name, "expected a table");
                None
            }
        }
    }

    pub(crate) fn string(&mut self, t: &Table, key: &str, full: &str) -> Option<String> {
        match t.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(full, "expected a string");
                None
            }
        }
    }

    pub(crate) fn addr(
        &mut self,
        value: Option<String>,
        full: &str,
        default: SocketAddr,
    ) -> SocketAddr {
        match value {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|e| {
                self.error(full, format!("bad address {s:?}: {e} (expected ip:port)"));
                default
            }),
        }
    }

    pub(crate) fn duration(&mut self, t: &Table, key: &str, full: &str) -> Option<Duration> {
        let s = self.string(t, key, full)?;
        match humantime::parse_duration(&s) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(full, "duration must be above zero");
                None
            }
            Err(e) => {
                self.error(
                    full,
                    format!("bad duration {s:?}: {e} (e.g. \"250ms\", \"30s\")"),
                );
                None
            }
        }
    }

    pub(crate) fn count(&mut self, t: &Table, key: &str, full: &str, max: i64) -> Option<i64> {
        match t.get(key)? {
            Value::Integer(n) if (1..=max).contains(n) => Some(*n),
            _ => {
                self.error(full, format!("expected an integer from 1 to {max}"));
                None
            }
        }
    }

    pub(super) fn server(&mut self, v: Option<&Value>, o: &Overrides) -> Option<Server> {
        let empty = Table::new();
        let t = self.section(v, "server").unwrap_or(&empty);
        self.known(
            t,
            "server",
            &[
                "listen",
                "admin",
                "threads",
                "handshake_timeout",
                "header_timeout",
                "connect_timeout",
                "idle_timeout",
                "http_idle_timeout",
                "response_timeout",
                "max_connections",
                "max_in_flight",
                "h2_max_concurrent_streams",
                "tls_resumption",
                "drain_timeout",
                "drain_delay",
                "admin_max_connections",
                "admin_idle_timeout",
                "max_metric_targets",
                "allow_sources",
                "metrics",
            ],
        );
        let d = Server::default();
        let listen = o
            .listen
            .clone()
            .or_else(|| self.string(t, "listen", "server.listen"));
        let listen_key = if o.listen.is_some() {
            "--listen"
        } else {
            "server.listen"
        };
        let admin = o
            .admin
            .clone()
            .or_else(|| self.string(t, "admin", "server.admin"));
        let admin_key = if o.admin.is_some() {
            "--admin"
        } else {
            "server.admin"
        };
        let before = self.errors.len();
        let listen = self.addr(listen, listen_key, d.listen);
        let admin = self.addr(admin, admin_key, d.admin);
        let metrics = self
            .string(t, "metrics", "server.metrics")
            .map(|m| self.addr(Some(m), "server.metrics", d.admin));
        if self.errors.len() == before {
            let mut ports = vec![(listen_key, listen), (admin_key, admin)];
            ports.extend(metrics.map(|m| ("server.metrics", m)));
            self.distinct_ports(&ports);
        }
        let dur = |p: &mut Self, k: &str, dflt: Duration| {
            p.duration(t, k, &format!("server.{k}")).unwrap_or(dflt)
        };
        let s = Server {
            listen,
            admin,
            threads: self
                .count(t, "threads", "server.threads", 1024)
                .map(|n| n as usize),
            handshake_timeout: dur(self, "handshake_timeout", d.handshake_timeout),
            header_timeout: dur(self, "header_timeout", d.header_timeout),
            connect_timeout: dur(self, "connect_timeout", d.connect_timeout),
            idle_timeout: dur(self, "idle_timeout", d.idle_timeout),
            http_idle_timeout: dur(self, "http_idle_timeout", d.http_idle_timeout),
            response_timeout: self.duration(t, "response_timeout", "server.response_timeout"),
            max_connections: self
                .count(t, "max_connections", "server.max_connections", 10_000_000)
                .map_or(d.max_connections, |n| n as usize),
            max_in_flight: self
                .count(t, "max_in_flight", "server.max_in_flight", 10_000_000)
                .map_or(d.max_in_flight, |n| n as usize),
            h2_max_concurrent_streams: self
                .count(
                    t,
                    "h2_max_concurrent_streams",
                    "server.h2_max_concurrent_streams",
                    i64::from(u32::MAX),
                )
                .map_or(d.h2_max_concurrent_streams, |n| n as u32),
            tls_resumption: match t.get("tls_resumption") {
                None => false,
                Some(Value::Boolean(b)) => *b,
                Some(_) => {
                    self.error("server.tls_resumption", "expected true or false");
                    false
                }
            },
            drain_timeout: dur(self, "drain_timeout", d.drain_timeout),
            drain_delay: self.duration_or_zero(t, "drain_delay", "server.drain_delay"),
            admin_max_connections: self
                .count(
                    t,
                    "admin_max_connections",
                    "server.admin_max_connections",
                    100_000,
                )
                .map_or(d.admin_max_connections, |n| n as usize),
            admin_idle_timeout: dur(self, "admin_idle_timeout", d.admin_idle_timeout),
            max_metric_targets: self
                .count(
                    t,
                    "max_metric_targets",
                    "server.max_metric_targets",
                    1_000_000,
                )
                .map_or(d.max_metric_targets, |n| n as usize),
            allow_sources: self.networks(t, "allow_sources", "server.allow_sources"),
            metrics,
        };
        Some(s)
    }

    pub(crate) fn identity(&mut self, v: Option<&Value>, base: &Path) -> Option<Identity> {
        let Some(t) = self.section(v, "identity") else {
            if v.is_none() {
                self.error(
                    "identity",
                    "missing section (trust_anchors, certificate, key)",
                );
            }
            return None;
        };
        self.known(
            t,
            "identity",
            &[
                "trust_anchors",
                "certificate",
                "key",
                "name",
                "reload_interval",
                "linkerd",
            ],
        );
        let file = |p: &mut Self, key: &str| -> Option<PathBuf> {
            let full = format!("identity.{key}");
            let Some(s) = p.string(t, key, &full) else {
                if t.get(key).is_none() {
                    p.error(&full, "missing (a PEM file path)");
                }
                return None;
            };
            let path = base.join(&s);
            if let Err(e) = std::fs::metadata(&path) {
                p.error(&full, crate::explain::file(&path, &e));
                return None;
            }
            Some(path)
        };
        let trust_anchors = file(self, "trust_anchors");
        let name = self.string(t, "name", "identity.name");
        if t.contains_key("linkerd") {
            let linkerd = self.linkerd_identity(t, base, name.is_some());
            let name = self.identity_name(name);
            let reload_interval = self
                .duration(t, "reload_interval", "identity.reload_interval")
                .unwrap_or(Duration::from_secs(10));
            return Some(Identity {
                trust_anchors: trust_anchors?,
                certificate: PathBuf::new(),
                key: PathBuf::new(),
                name,
                reload_interval,
                linkerd: Some(linkerd?),
            });
        }
        if !t.contains_key("certificate") && !t.contains_key("key") {
            self.error(
                "identity",
                "no credentials: set identity.certificate and identity.key (files), or \
                 [identity.linkerd] (Linkerd's identity controller)",
            );
            return None;
        }
        let certificate = file(self, "certificate");
        let key = file(self, "key");
        let name = self.identity_name(name);
        let reload_interval = self
            .duration(t, "reload_interval", "identity.reload_interval")
            .unwrap_or(Duration::from_secs(10));
        Some(Identity {
            trust_anchors: trust_anchors?,
            certificate: certificate?,
            key: key?,
            name,
            reload_interval,
            linkerd: None,
        })
    }

    /// `identity.name`, checked: a DNS name or a `spiffe://` URI.
    fn identity_name(&mut self, name: Option<String>) -> Option<String> {
        if let Some(n) = &name
            && !crate::names::is_identity_syntax(n)
        {
            self.error(
                "identity.name",
                format!("{n:?} is neither a DNS name nor a spiffe:// URI"),
            );
        }
        name
    }

    pub(super) fn log(&mut self, v: Option<&Value>) -> Log {
        let empty = Table::new();
        let t = self.section(v, "log").unwrap_or(&empty);
        self.known(t, "log", &["access"]);
        let mut log = Log::default();
        if let Some(mode) = self.string(t, "access", "log.access") {
            match mode.parse() {
                Ok(access) => log.access = access,
                Err(e) => self.error("log.access", e),
            }
        }
        log
    }

    /// A duration that may be zero (`"0s"`); absent: zero.
    fn duration_or_zero(&mut self, t: &Table, key: &str, full: &str) -> Duration {
        let Some(s) = self.string(t, key, full) else {
            return Duration::ZERO;
        };
        humantime::parse_duration(&s).unwrap_or_else(|e| {
            self.error(
                full,
                format!("bad duration {s:?}: {e} (e.g. \"0s\", \"10s\")"),
            );
            Duration::ZERO
        })
    }

    /// A list of networks in CIDR form (`"10.0.0.0/8"`, `"2001:db8::/32"`); a bare address is
    /// a single host.
    fn networks(&mut self, t: &Table, key: &str, full: &str) -> Option<Vec<ipnet::IpNet>> {
        let v = t.get(key)?;
        let Value::Array(items) = v else {
            self.error(full, "expected an array of \"network/prefix\" strings");
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.error(full, format!("expected a string, got {item}"));
                continue;
            };
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => out.push(net.trunc()),
                Err(_) => self.error(
                    full,
                    format!(
                        "bad network {text:?} (expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")"
                    ),
                ),
            }
        }
        if items.is_empty() {
            self.error(full, "no networks (remove the key to allow any source)");
        }
        Some(out)
    }
}
