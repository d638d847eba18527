//! Discovery: from a [`Target`] to a connected upstream socket. Static endpoints come from
//! `[routing.static]`; every other name resolves through DNS (hickory-resolver, whose cache
//! respects TTLs and caches negative answers). Connections spread across the addresses
//! round-robin and fail over to the next address on a connect error.

use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::RulesHandle;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// Resolves targets and connects to them.
pub struct Discovery {
    /// Static endpoints come from the rules in force, so a reload changes them.
    rules: Arc<RulesHandle>,
    resolver: Result<TokioResolver, String>,
    /// The next address to try first, per target: round-robin within each target.
    next: Mutex<HashMap<Target, usize>>,
    connect_timeout: Duration,
}

impl Discovery {
    /// `dns_servers` empty means the system's resolv.conf.
    pub fn new(
        rules: Arc<RulesHandle>,
        dns_servers: &[SocketAddr],
        connect_timeout: Duration,
    ) -> Discovery {
        let resolver = build_resolver(dns_servers).map_err(|e| {
            tracing::warn!(error = %e, "no DNS resolver; only static targets will resolve");
            e
        });
        Discovery {
            rules,
            resolver,
            next: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// The addresses of `target`.
    pub async fn resolve(&self, target: &Target) -> Result<Arc<[SocketAddr]>, Refusal> {
        if let Some(eps) = self.rules.load().routes.static_endpoints(target) {
            return Ok(eps);
        }
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|e| Refusal::Upstream(format!("no resolver: {e}")))?;
        // Fully qualified: search domains must not turn a cluster name into something else.
        let fqdn = format!("{}.", target.name);
        let ips = resolver
            .lookup_ip(fqdn.as_str())
            .await
            .map_err(|e| resolve_refusal(&target.name, &e))?;
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::NoSuchService);
        }
        Ok(addrs.into())
    }

    /// Connects to one of `target`'s addresses, starting at the next in rotation and failing
    /// over to the others; each attempt under the connect deadline.
    pub async fn connect(&self, target: &Target) -> Result<(TcpStream, SocketAddr), Refusal> {
        let addrs = self.resolve(target).await?;
        // Entries exist only for targets that resolved: real services, not made-up names.
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let n = next.entry(target.clone()).or_insert(0);
            let start = *n;
            *n = start.wrapping_add(1);
            start
        };
        let mut last = String::new();
        for i in 0..addrs.len() {
            let addr = addrs[(start + i) % addrs.len()];
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "upstream connect failed");
                    last = format!("connect {addr}: {e}");
                }
                Err(_) => {
                    tracing::debug!(%addr, "upstream connect timed out");
                    last = format!("connect {addr}: timed out after {:?}", self.connect_timeout);
                }
            }
        }
        Err(Refusal::Upstream(last))
    }
}

/// A failed lookup as the client reads it: a name DNS does not know (NXDOMAIN, or no address
/// records) is [`Refusal::NoSuchService`]; anything else (timeouts, server failures) is an
/// upstream failure with a short reason, never the resolver's Debug text.
fn resolve_refusal(name: &str, e: &NetError) -> Refusal {
    if e.is_no_records_found() {
        return Refusal::NoSuchService;
    }
    tracing::debug!(name, error = %e, "DNS lookup failed");
    let reason = match e {
        NetError::Timeout => "timed out".to_string(),
        NetError::Dns(DnsError::ResponseCode(code)) => format!("DNS answered {code}"),
        NetError::NoConnections => "no DNS server answered".to_string(),
        NetError::Io(io) => io.to_string(),
        NetError::Message(m) => (*m).to_string(),
        NetError::Msg(m) => m.clone(),
        // A label, not free text: stable, short, and never the Debug form of a query.
        other => other.as_metrics_label().replace('_', " "),
    };
    Refusal::Upstream(format!("resolve {name}: {reason}"))
}

/// A resolver builder asking `dns_servers`, or resolv.conf's when empty; the gateway and the
/// prober each set their own cache options on it.
pub(crate) fn resolver_builder(
    dns_servers: &[SocketAddr],
) -> Result<hickory_resolver::ResolverBuilder<TokioRuntimeProvider>, String> {
    let builder = if dns_servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let servers = dns_servers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    Ok(builder)
}

fn build_resolver(dns_servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = resolver_builder(dns_servers)?;
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 4096;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    // A missing service should not be asked for again on every connection.
    opts.negative_min_ttl = Some(Duration::from_secs(1));
    opts.negative_max_ttl = Some(Duration::from_secs(30));
    opts.positive_max_ttl = Some(Duration::from_secs(300));
    builder.build().map_err(|e| e.to_string())
}
