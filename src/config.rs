//! Configuration: the TOML file plus command-line overrides, turned into a validated [`Config`].
//! Every problem is collected and reported at once, naming the file and the key, before any
//! port is bound. Identity files are checked for presence here and parsed in `identity`.

use crate::authz::{Pattern, Rule};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// `[server]`: listeners, deadlines and limits.
#[derive(Clone, Debug)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Worker threads; default the number of cores.
    pub threads: Option<usize>,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle deadline of an opaque TCP stream (no bytes either way).
    pub idle_timeout: Duration,
    /// Idle deadline of an HTTP connection with no request in flight.
    pub http_idle_timeout: Duration,
    /// Upstream response headers deadline; `None` waits as long as the client does.
    pub response_timeout: Option<Duration>,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub h2_max_concurrent_streams: u32,
    pub tls_resumption: bool,
    pub drain_timeout: Duration,
}

impl Default for Server {
    fn default() -> Server {
        Server {
            listen: "0.0.0.0:4143".parse().expect("literal"),
            admin: "0.0.0.0:4191".parse().expect("literal"),
            threads: None,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3600),
            http_idle_timeout: Duration::from_secs(300),
            response_timeout: None,
            max_connections: 20_000,
            max_in_flight: 10_000,
            h2_max_concurrent_streams: 1000,
            tls_resumption: false,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// `[identity]`: the files of the gateway's own credentials.
#[derive(Clone, Debug)]
pub struct Identity {
    pub trust_anchors: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Own identity; default the leaf's first SAN.
    pub name: Option<String>,
    /// How often the certificate and key files are checked for rotation.
    pub reload_interval: Duration,
}

/// `[routing]`.
#[derive(Clone, Debug)]
pub struct Routing {
    pub cluster_domain: String,
    /// `name:port` -> endpoints.
    pub statics: HashMap<(String, u16), Vec<SocketAddr>>,
    /// DNS servers to ask instead of the system's resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub identity: Identity,
    pub routing: Routing,
    pub authorization: Vec<Rule>,
}

/// All problems found in a configuration, each naming the file and the key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Command-line overrides of the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin: Option<String>,
}

impl Config {
    /// Reads and validates `path`, applying `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{origin}: cannot read: {e}")]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &origin, base, overrides)
    }

    /// Validates TOML `text`; relative identity paths are taken from `base`.
    pub fn parse(
        text: &str,
        origin: &str,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigErrors(vec![format!("{origin}: {e}")]))?;
        let mut p = Parser {
            origin,
            errors: Vec::new(),
        };
        p.known(
            &table,
            "",
            &["server", "identity", "routing", "authorization"],
        );
        let server = p.server(table.get("server"), overrides);
        let identity = p.identity(table.get("identity"), base);
        let routing = p.routing(table.get("routing"));
        let authorization = p.authorization(table.get("authorization"));
        match (server, identity, routing) {
            (Some(server), Some(identity), Some(routing)) if p.errors.is_empty() => Ok(Config {
                server,
                identity,
                routing,
                authorization,
            }),
            _ => Err(ConfigErrors(p.errors)),
        }
    }
}

pub(crate) struct Parser<'a> {
    pub(crate) origin: &'a str,
    pub(crate) errors: Vec<String>,
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

    fn addr(&mut self, value: Option<String>, full: &str, default: SocketAddr) -> SocketAddr {
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

    fn server(&mut self, v: Option<&Value>, o: &Overrides) -> Option<Server> {
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
        let dur = |p: &mut Self, k: &str, dflt: Duration| {
            p.duration(t, k, &format!("server.{k}")).unwrap_or(dflt)
        };
        let s = Server {
            listen: self.addr(listen, listen_key, d.listen),
            admin: self.addr(admin, admin_key, d.admin),
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
                p.error(&full, format!("cannot read {}: {e}", path.display()));
                return None;
            }
            Some(path)
        };
        let trust_anchors = file(self, "trust_anchors");
        let certificate = file(self, "certificate");
        let key = file(self, "key");
        let name = self.string(t, "name", "identity.name");
        if let Some(n) = &name
            && !crate::identity::is_identity_syntax(n)
        {
            self.error(
                "identity.name",
                format!("{n:?} is neither a DNS name nor a spiffe:// URI"),
            );
        }
        let reload_interval = self
            .duration(t, "reload_interval", "identity.reload_interval")
            .unwrap_or(Duration::from_secs(10));
        Some(Identity {
            trust_anchors: trust_anchors?,
            certificate: certificate?,
            key: key?,
            name,
            reload_interval,
        })
    }

    fn routing(&mut self, v: Option<&Value>) -> Option<Routing> {
        let empty = Table::new();
        let t = self.section(v, "routing").unwrap_or(&empty);
        self.known(t, "routing", &["cluster_domain", "static", "dns_servers"]);
        let cluster_domain = self
            .string(t, "cluster_domain", "routing.cluster_domain")
            .unwrap_or_else(|| "cluster.local".into());
        if !crate::transport_header::is_dns_name(&cluster_domain) {
            self.error(
                "routing.cluster_domain",
                format!("{cluster_domain:?} is not a DNS name"),
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
        if !crate::transport_header::is_dns_name(name) {
            self.error(full, format!("{name:?} is not a DNS name"));
            return None;
        }
        Some((crate::route::normalize(name), port))
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

    fn authorization(&mut self, v: Option<&Value>) -> Vec<Rule> {
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
            let identities = self.patterns(t.get("identities"), &format!("{prefix}.identities"));
            if t.get("identities").is_none() {
                self.error(&format!("{prefix}.identities"), "missing (e.g. [\"*\"])");
            }
            let services = match t.get("services") {
                None => vec![Pattern::Any],
                some => self.patterns(some, &format!("{prefix}.services")),
            };
            out.push(Rule {
                identities,
                services,
            });
        }
        out
    }

    fn patterns(&mut self, v: Option<&Value>, full: &str) -> Vec<Pattern> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.error(full, "expected an array of patterns");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str().map(str::parse::<Pattern>) {
                Some(Ok(p)) => out.push(p),
                Some(Err(e)) => self.error(full, e),
                None => self.error(full, format!("expected a string, got {item}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let dir = std::env::temp_dir();
        for f in ["cg-test-ca.crt", "cg-test-tls.crt", "cg-test-tls.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        Config::parse(text, "test.toml", &dir, &Overrides::default())
    }

    const IDENTITY: &str = "[identity]\ntrust_anchors = \"cg-test-ca.crt\"\ncertificate = \"cg-test-tls.crt\"\nkey = \"cg-test-tls.key\"\n";

    #[test]
    fn minimal_defaults() {
        let c = parse(IDENTITY).unwrap();
        assert_eq!(c.server.listen.port(), 4143);
        assert_eq!(c.server.admin.port(), 4191);
        assert_eq!(c.routing.cluster_domain, "cluster.local");
        assert!(c.authorization.is_empty());
        assert!(!c.server.tls_resumption);
        assert_eq!(c.server.h2_max_concurrent_streams, 1000);
    }

    #[test]
    fn full_example() {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:5143\"\nadmin = \"127.0.0.1:5191\"\nhandshake_timeout = \"250ms\"\n{IDENTITY}\
             [routing]\ncluster_domain = \"example.org\"\n[routing.static]\n\"bb.mc-demo.svc.cluster.local:8080\" = [\"127.0.0.1:18080\"]\n\
             [[authorization]]\nidentities = [\"*.west.serviceaccount.identity.linkerd.cluster.local\"]\nservices = [\"*.mc-demo.svc.cluster.local\"]\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:5143".parse().unwrap());
        assert_eq!(c.server.handshake_timeout, Duration::from_millis(250));
        assert_eq!(c.routing.statics.len(), 1);
        assert_eq!(c.authorization.len(), 1);
    }

    #[test]
    fn every_problem_reported() {
        let text = "[server]\nlisten = \"nope\"\nhandshake_timeout = \"soon\"\nbogus = 1\n\
                    [identity]\ntrust_anchors = \"/nonexistent/ca.crt\"\ncertificate = \"cg-test-tls.crt\"\n\
                    [routing.static]\n\"10.0.0.1:80\" = [\"127.0.0.1:1\"]\n\"a.b.svc.cluster.local:80\" = [\"x\"]\n\
                    [[authorization]]\nidentities = [\"a*b\"]\n";
        let errs = parse(text).unwrap_err().0;
        let all = errs.join("\n");
        for needle in [
            "server.listen",
            "server.handshake_timeout",
            "server.bogus",
            "identity.trust_anchors",
            "identity.key",
            "10.0.0.1:80",
            "a.b.svc.cluster.local:80",
            "authorization[0].identities",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert!(errs.iter().all(|e| e.starts_with("test.toml: ")));
    }

    #[test]
    fn overrides_win() {
        let dir = std::env::temp_dir();
        parse(IDENTITY).unwrap();
        let c = Config::parse(
            IDENTITY,
            "t",
            &dir,
            &Overrides {
                listen: Some("127.0.0.1:1".into()),
                admin: Some("bad".into()),
            },
        )
        .unwrap_err();
        assert!(c.0.iter().any(|e| e.contains("--admin")));
    }
}
