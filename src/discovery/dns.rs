//! DNS: a target's name resolved to plaintext endpoints on the target's port; a name DNS does
//! not know is [`Refusal::NoSuchService`].

use super::{Endpoint, EndpointSet};
use crate::refusal::Refusal;
use crate::route::Target;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use std::net::SocketAddr;
use std::time::Duration;

/// Asks DNS for a target's addresses (hickory-resolver: its cache respects TTLs and caches
/// negative answers).
pub struct Dns {
    resolver: Result<TokioResolver, String>,
}

impl Dns {
    /// `dns_servers` empty means the system's resolv.conf.
    pub fn new(dns_servers: &[SocketAddr]) -> Dns {
        let resolver = build_resolver(dns_servers).map_err(|e| {
            tracing::warn!(error = %e, "no DNS resolver; only static targets will resolve");
            e
        });
        Dns { resolver }
    }

    /// The addresses of `target`, as plaintext endpoints.
    pub async fn resolve(&self, target: &Target) -> Result<EndpointSet, Refusal> {
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
        let endpoints: Vec<Endpoint> = ips
            .iter()
            .map(|ip| Endpoint::plain(SocketAddr::new(ip, target.port)))
            .collect();
        if endpoints.is_empty() {
            return Err(Refusal::NoSuchService);
        }
        Ok(endpoints.into())
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
