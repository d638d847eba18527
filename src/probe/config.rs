//! The prober's configuration: `[server] admin`, `[identity]`, `[probe] dns_servers` and the
//! `[[link]]` entries, validated as a whole. Every problem is reported at once, naming the file
//! and the key, before any port is bound (the same [`Parser`] as `crossgate run`). It does not
//! load the identity files: `identity::load` does that when the prober is built.

use crate::config::{ConfigErrors, Identity, Parser};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use toml::{Table, Value};

/// The whole validated prober configuration.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The prober's own `/live`, `/ready`, `/metrics` (plaintext).
    pub admin: SocketAddr,
    /// The prober's client identity; needed when some link has an `identity`.
    pub identity: Option<Identity>,
    /// DNS servers for link addresses instead of the system's resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    pub links: Vec<Link>,
}

/// One `[[link]]`: a remote gateway's probe port.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The target cluster's name: the `target_cluster_name` label.
    pub name: String,
    /// An IP literal or a hostname, resolved again at every probe.
    pub address: String,
    pub port: u16,
    pub path: String,
    /// Between probes; each wait adds up to 10 % of it at random.
    pub period: Duration,
    /// For the whole probe: resolve, connect, handshake, request and response.
    pub timeout: Duration,
    /// Consecutive failures that mark the gateway dead.
    pub failure_threshold: u32,
    /// The gateway's identity: SNI and the SAN its certificate must carry. `None`: plaintext.
    pub identity: Option<String>,
    /// The services mirrored from this cluster (`NUM_SVC`).
    pub services: Vec<String>,
}

/// The default prober admin address. Not 4191: a prober often runs beside a gateway.
pub const DEFAULT_ADMIN: &str = "0.0.0.0:4192";

impl ProbeConfig {
    /// Reads and validates `path`; relative identity paths are taken from its directory.
    pub fn load(path: &Path) -> Result<ProbeConfig, ConfigErrors> {
        let (origin, text) = crate::config::read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        ProbeConfig::parse(&text, &origin, base)
    }

    /// Validates TOML `text`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<ProbeConfig, ConfigErrors> {
        let (table, mut p) = Parser::start(text, origin)?;
        p.known(&table, "", &["server", "identity", "probe", "link"]);
        let admin = server(&mut p, table.get("server"));
        let identity = table
            .get("identity")
            .and_then(|v| p.identity(Some(v), base));
        let dns_servers = dns_servers(&mut p, table.get("probe"));
        let links = links(&mut p, table.get("link"), table.contains_key("identity"));
        if !p.errors.is_empty() {
            return Err(ConfigErrors(p.errors));
        }
        Ok(ProbeConfig {
            admin,
            identity,
            dns_servers,
            links,
        })
    }
}

fn server(p: &mut Parser, v: Option<&Value>) -> SocketAddr {
    let fallback = DEFAULT_ADMIN.parse().expect("literal");
    let Some(t) = p.section(v, "server") else {
        return fallback;
    };
    p.known(t, "server", &["admin"]);
    match p.string(t, "admin", "server.admin") {
        None => fallback,
        Some(s) => s.parse().unwrap_or_else(|e| {
            p.error(
                "server.admin",
                format!("bad address {s:?}: {e} (expected ip:port)"),
            );
            fallback
        }),
    }
}

fn dns_servers(p: &mut Parser, v: Option<&Value>) -> Vec<SocketAddr> {
    let Some(t) = p.section(v, "probe") else {
        return Vec::new();
    };
    p.known(t, "probe", &["dns_servers"]);
    match t.get("dns_servers") {
        None => Vec::new(),
        Some(v) => p.endpoints(v, "probe.dns_servers"),
    }
}

/// `has_identity`: the prober has a client identity, so links may name the gateway's.
fn links(p: &mut Parser, v: Option<&Value>, has_identity: bool) -> Vec<Link> {
    let Some(Value::Array(items)) = v else {
        let msg = match v {
            None => "missing: at least one [[link]] (name, address)",
            Some(_) => "expected [[link]] tables",
        };
        p.error("link", msg);
        return Vec::new();
    };
    let mut out: Vec<Link> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("link[{i}]");
        let Value::Table(t) = item else {
            p.error(&prefix, "expected a table");
            continue;
        };
        let Some(l) = link(p, t, &prefix, has_identity) else {
            continue;
        };
        if out.iter().any(|o| o.name == l.name) {
            p.error(
                &format!("{prefix}.name"),
                format!("{:?} is already the name of another link", l.name),
            );
        }
        out.push(l);
    }
    out
}

fn link(p: &mut Parser, t: &Table, prefix: &str, has_identity: bool) -> Option<Link> {
    p.known(
        t,
        prefix,
        &[
            "name",
            "address",
            "port",
            "path",
            "period",
            "timeout",
            "failure_threshold",
            "identity",
            "services",
        ],
    );
    let key = |k: &str| format!("{prefix}.{k}");
    let name = required(p, t, "name", &key("name"));
    if let Some(n) = &name
        && (n.is_empty() || n.contains(|c: char| c.is_control() || c == '"'))
    {
        p.error(&key("name"), format!("{n:?} is not a usable cluster name"));
    }
    let address = required(p, t, "address", &key("address"));
    if let Some(a) = &address
        && a.parse::<std::net::IpAddr>().is_err()
        && !crate::names::is_dns_name(a.trim_end_matches('.'))
    {
        p.error(
            &key("address"),
            format!("{a:?} is neither an IP address nor a hostname"),
        );
    }
    let port = p.count(t, "port", &key("port"), 65535).unwrap_or(4191) as u16;
    let path = p.string(t, "path", &key("path")).unwrap_or("/ready".into());
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        p.error(&key("path"), format!("{path:?} is not an absolute path"));
    }
    let period = p.duration(t, "period", &key("period"));
    let timeout = p.duration(t, "timeout", &key("timeout"));
    let failure_threshold = p.count(t, "failure_threshold", &key("failure_threshold"), 1000);
    let identity = p.string(t, "identity", &key("identity"));
    if let Some(id) = &identity
        && !crate::names::is_dns_name(id)
    {
        // The identity is sent as SNI, which only carries DNS names.
        p.error(
            &key("identity"),
            format!("{id:?} is not a DNS-name identity"),
        );
    }
    if identity.is_some() && !has_identity {
        p.error(
            &key("identity"),
            "an mTLS probe needs the prober's own [identity] (trust_anchors, certificate, key)",
        );
    }
    let services = services(p, t.get("services"), &key("services"));
    Some(Link {
        name: name?,
        address: address?,
        port,
        path,
        period: period.unwrap_or(Duration::from_secs(3)),
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
        failure_threshold: failure_threshold.unwrap_or(3) as u32,
        identity,
        services,
    })
}

fn required(p: &mut Parser, t: &Table, k: &str, full: &str) -> Option<String> {
    if t.get(k).is_none() {
        p.error(full, "missing");
    }
    p.string(t, k, full)
}

fn services(p: &mut Parser, v: Option<&Value>, full: &str) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    let Value::Array(items) = v else {
        p.error(full, "expected an array of service names");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => p.error(full, format!("expected a service name, got {item}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProbeConfig, ConfigErrors> {
        let dir = std::env::temp_dir();
        for f in ["cg-probe-ca.crt", "cg-probe-tls.crt", "cg-probe-tls.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        ProbeConfig::parse(text, "probe.toml", &dir)
    }

    const IDENTITY: &str = "[identity]\ntrust_anchors = \"cg-probe-ca.crt\"\ncertificate = \"cg-probe-tls.crt\"\nkey = \"cg-probe-tls.key\"\n";

    #[test]
    fn defaults_are_linkerds() {
        let c = parse("[[link]]\nname = \"east\"\naddress = \"10.0.0.1\"\n").unwrap();
        assert_eq!(c.admin, DEFAULT_ADMIN.parse().unwrap());
        assert!(c.identity.is_none() && c.dns_servers.is_empty());
        assert_eq!(
            c.links,
            vec![Link {
                name: "east".into(),
                address: "10.0.0.1".into(),
                port: 4191,
                path: "/ready".into(),
                period: Duration::from_secs(3),
                timeout: Duration::from_secs(30),
                failure_threshold: 3,
                identity: None,
                services: vec![],
            }]
        );
    }

    #[test]
    fn full_example() {
        let text = format!(
            "[server]\nadmin = \"127.0.0.1:9999\"\n{IDENTITY}[probe]\ndns_servers = [\"127.0.0.1:53\"]\n\
             [[link]]\nname = \"east\"\naddress = \"gw.east.example.com\"\nport = 4191\npath = \"/ready\"\n\
             period = \"100ms\"\ntimeout = \"1s\"\nfailure_threshold = 2\n\
             identity = \"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local\"\n\
             services = [\"podinfo\", \"web\"]\n"
        );
        let c = parse(&text).unwrap();
        let l = &c.links[0];
        assert_eq!(c.admin.port(), 9999);
        assert!(c.identity.is_some());
        assert_eq!(c.dns_servers.len(), 1);
        assert_eq!(l.period, Duration::from_millis(100));
        assert_eq!(l.failure_threshold, 2);
        assert_eq!(l.services.len(), 2);
    }

    #[test]
    fn every_problem_reported() {
        let text = "[server]\nadmin = \"nope\"\nbogus = 1\n[probe]\ndns_servers = [\"x\"]\n\
                    [[link]]\nname = \"east\"\naddress = \"not an address\"\nport = 0\npath = \"ready\"\n\
                    period = \"soon\"\nfailure_threshold = -1\nidentity = \"gw.example.com\"\nservices = [1]\n\
                    [[link]]\nname = \"east\"\naddress = \"10.0.0.2\"\ncolour = \"red\"\n\
                    [[link]]\naddress = \"10.0.0.3\"\n";
        let errs = parse(text).unwrap_err().0;
        let all = errs.join("\n");
        for needle in [
            "server.admin",
            "server.bogus",
            "probe.dns_servers",
            "link[0].address",
            "link[0].port",
            "link[0].path",
            "link[0].period",
            "link[0].failure_threshold",
            "link[0].identity: an mTLS probe needs",
            "link[0].services",
            "link[1].name",
            "link[1].colour",
            "link[2].name: missing",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert!(errs.iter().all(|e| e.starts_with("probe.toml: ")));
    }

    #[test]
    fn no_link_is_an_error() {
        let errs = parse(IDENTITY).unwrap_err().0;
        assert!(errs[0].contains("link: missing"), "{errs:?}");
    }
}
