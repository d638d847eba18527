//! Configuration: the TOML file plus command-line overrides, turned into a validated [`Config`].
//! Every problem is collected and reported at once, naming the file and the key, before any
//! port is bound. Identity files are checked for presence here and parsed in `identity`.

mod discovery;
mod linkerd;
mod parse;
mod policy;
mod ports;
mod rules;
mod sni;

pub use discovery::{Balancer, Discovery, Fallback, default_context_token};
pub use policy::{Enforce, Policy, Unknown};
pub use sni::{Passthrough, Sni, SniCertificate};

pub(crate) use parse::{Parser, read};

use crate::access::AccessLog;
use crate::authz::Rule;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[server]`: listeners, deadlines and limits.
#[derive(Clone, Debug)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Worker threads; default the cores the process may use (affinity, cgroup quota). One
    /// thread runs the current-thread scheduler.
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
    /// After SIGTERM, keep accepting (with `/ready` at 503) this long before draining, so a
    /// load balancer stops sending first. Zero: drain at once.
    pub drain_delay: Duration,
    /// Admin connections served as usual; more are accepted on probation (one request with
    /// a head due within 1 s, then closed).
    pub admin_max_connections: usize,
    /// An admin connection with no request in flight is closed after this long. HTTP/1.1
    /// keep-alive meets the 2 s head deadline first ([`crate::admin::HEAD_DEADLINE`]).
    pub admin_idle_timeout: Duration,
    /// Targets that get their own `authority` label; the rest are folded into `other`.
    pub max_metric_targets: usize,
    /// Source networks allowed to connect to the gateway port; `None`: any.
    pub allow_sources: Option<Vec<ipnet::IpNet>>,
    /// When set, `/metrics` is served here only and the admin port answers `/live`, `/ready`.
    pub metrics: Option<SocketAddr>,
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
            drain_delay: Duration::ZERO,
            admin_max_connections: 100,
            admin_idle_timeout: Duration::from_secs(10),
            max_metric_targets: 1000,
            allow_sources: None,
            metrics: None,
        }
    }
}

/// `[identity]`: where the gateway's own credentials come from: the files `certificate` and
/// `key`, or (with `linkerd` set) Linkerd's identity controller.
#[derive(Clone, Debug)]
pub struct Identity {
    pub trust_anchors: PathBuf,
    /// The leaf file in file mode; empty with `linkerd`.
    pub certificate: PathBuf,
    /// The key file in file mode; empty with `linkerd`.
    pub key: PathBuf,
    /// Own identity; default the leaf's first SAN. Always set with `linkerd`.
    pub name: Option<String>,
    /// How often the certificate and key files are checked for rotation.
    pub reload_interval: Duration,
    /// `[identity.linkerd]`: the leaf comes from Linkerd's Identity API, not from files.
    pub linkerd: Option<LinkerdIdentity>,
}

/// `[identity.linkerd]`: Linkerd's identity controller, named as linkerd2-proxy's
/// `LINKERD2_PROXY_IDENTITY_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkerdIdentity {
    /// `host:port` of the controller as written (a name is resolved at each connect).
    pub addr: String,
    /// The controller's identity: SNI and the SAN its leaf must carry. `None` only for a
    /// loopback `addr`, and then the call is plaintext.
    pub server_name: Option<String>,
    /// The ServiceAccount token sent with each Certify, read again at each call.
    pub token_file: PathBuf,
    /// Renewal never comes sooner than this after a new leaf; also the retry backoff's cap.
    pub min_refresh: Duration,
    /// Renewal never comes later than this.
    pub max_refresh: Duration,
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

/// `[log]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub access: AccessLog,
}

/// Where a configuration was read from, so that it can be read again on reload.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub overrides: Overrides,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub identity: Identity,
    pub routing: Routing,
    pub authorization: Vec<Rule>,
    pub log: Log,
    /// `[discovery]`; `None`: static endpoints and DNS only.
    pub discovery: Option<Discovery>,
    /// The balancer's settings (`[discovery]` too), for every kind of endpoint.
    pub balancer: Balancer,
    /// `[policy]`; `None`: no pod policy is enforced.
    pub policy: Option<Policy>,
    /// Set when read from a file ([`Config::load`]); `None` for text parsed in place.
    pub source: Option<Source>,
    /// `[sni]`: terminated SNI routing and certificates by SNI.
    pub sni: Sni,
    /// `[passthrough]`; `None`: no passthrough port.
    pub passthrough: Option<Passthrough>,
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
        let (origin, text) = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::parse(&text, &origin, base, overrides)?;
        config.source = Some(Source {
            path: path.to_path_buf(),
            overrides: overrides.clone(),
        });
        Ok(config)
    }

    /// Validates TOML `text`; relative identity paths are taken from `base`.
    pub fn parse(
        text: &str,
        origin: &str,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let (table, mut p) = Parser::start(text, origin)?;
        p.known(
            &table,
            "",
            &[
                "server",
                "identity",
                "routing",
                "authorization",
                "log",
                "discovery",
                "policy",
                "sni",
                "passthrough",
            ],
        );
        let server = p.server(table.get("server"), overrides);
        let identity = p.identity(table.get("identity"), base);
        let routing = p.routing(table.get("routing"));
        let authorization = p.authorization(table.get("authorization"));
        let log = p.log(table.get("log"));
        let discovery = p.discovery(table.get("discovery"), |k| std::env::var(k).ok());
        let balancer = p.balancer(table.get("discovery"));
        let policy = p.policy(table.get("policy"), discovery.is_some());
        let sni = p.sni(table.get("sni"), base);
        let max_connections = server.as_ref().map_or(20_000, |s| s.max_connections);
        let passthrough = p.passthrough(table.get("passthrough"), max_connections);
        match (server, identity, routing) {
            (Some(server), Some(identity), Some(routing)) if p.errors.is_empty() => Ok(Config {
                server,
                identity,
                routing,
                authorization,
                log,
                discovery,
                balancer,
                policy,
                source: None,
                sni,
                passthrough,
            }),
            _ => Err(ConfigErrors(p.errors)),
        }
    }
}

#[cfg(test)]
mod tests;
