//! Telemetry: the prometheus-client families Linkerd dashboards read (DESIGN.md part 1), with
//! their exact names and labels, grouped by the stage that counts them ([`TcpMetrics`] for
//! connections and their legs, [`HttpMetrics`] for requests, [`TlsMetrics`] for handshakes and
//! the own certificate, [`ConfigMetrics`] for reloads), each registering itself into one
//! registry, and the `process_*` family read from `/proc` at scrape time. [`Metrics::refused`]
//! is the one place a refusal is counted and logged. Handles are taken once per connection or
//! target, then incremented lock-free.

mod balancer;
pub mod discovery;
mod labels;
mod leg;
pub mod policy;
mod process;
mod targets;

use crate::refusal::Refusal;
pub use labels::*;
pub use leg::Leg;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
pub use targets::{OTHER, TargetLabels};

/// Linkerd's latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// Connections: both TCP legs, connection-level refusals and authorization, transport headers.
#[derive(Default)]
pub struct TcpMetrics {
    pub open: Family<TcpLabels, Counter>,
    pub close: Family<(TcpLabels, Classification), Counter>,
    pub open_connections: Family<TcpLabels, Gauge>,
    pub read_bytes: Family<TcpLabels, Counter>,
    pub write_bytes: Family<TcpLabels, Counter>,
    pub authz_allow: Family<AuthzLabels, Counter>,
    pub authz_deny: Family<AuthzLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub transport_header_connections: Family<HeaderLabels, Counter>,
}

impl TcpMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("tcp_open", "Connections opened", self.open.clone());
        r.register("tcp_close", "Connections closed", self.close.clone());
        r.register(
            "tcp_open_connections",
            "Connections currently open",
            self.open_connections.clone(),
        );
        r.register(
            "tcp_read_bytes",
            "Bytes read from the peer",
            self.read_bytes.clone(),
        );
        r.register(
            "tcp_write_bytes",
            "Bytes written to the peer",
            self.write_bytes.clone(),
        );
        r.register(
            "inbound_tcp_authz_allow",
            "Connections allowed by authorization",
            self.authz_allow.clone(),
        );
        r.register(
            "inbound_tcp_authz_deny",
            "Connections denied by authorization",
            self.authz_deny.clone(),
        );
        r.register(
            "inbound_tcp_errors",
            "Connections refused or failed, by error",
            self.errors.clone(),
        );
        r.register(
            "inbound_tcp_transport_header_connections",
            "Connections that sent a transport header",
            self.transport_header_connections.clone(),
        );
    }

    /// Counts a connection refused before or instead of being served.
    pub fn error(&self, error: &'static str) {
        self.errors.get_or_create(&ErrorLabels { error }).inc();
    }
}

/// Requests: what was asked, answered, refused.
pub struct HttpMetrics {
    pub authz_allow: Family<AuthzLabels, Counter>,
    pub authz_deny: Family<AuthzLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub request_total: Family<RequestLabels, Counter>,
    pub response_total: Family<ResponseLabels, Counter>,
    pub response_latency_ms: Family<ResponseLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> HttpMetrics {
        HttpMetrics {
            authz_allow: Family::default(),
            authz_deny: Family::default(),
            errors: Family::default(),
            request_total: Family::default(),
            response_total: Family::default(),
            response_latency_ms: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HttpMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "inbound_http_authz_allow",
            "Requests allowed by authorization",
            self.authz_allow.clone(),
        );
        r.register(
            "inbound_http_authz_deny",
            "Requests denied by authorization",
            self.authz_deny.clone(),
        );
        r.register(
            "inbound_http_errors",
            "Requests refused or failed, by error",
            self.errors.clone(),
        );
        r.register("request", "Requests received", self.request_total.clone());
        r.register("response", "Responses sent", self.response_total.clone());
        r.register(
            "response_latency_ms",
            "Time from request to response headers, in milliseconds",
            self.response_latency_ms.clone(),
        );
    }

    /// Counts a request refused or failed by the gateway itself.
    pub fn error(&self, error: &'static str) {
        self.errors.get_or_create(&ErrorLabels { error }).inc();
    }
}

/// Handshakes and the gateway's own certificate, and its reloads from disk.
#[derive(Default)]
pub struct TlsMetrics {
    pub handshake_failures: Family<ReasonLabels, Counter>,
    pub cert_expiration: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// When the leaf in use was last put in force (a file load or a Certify), Unix seconds.
    pub cert_refresh: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Leaves put in force, the first included.
    pub cert_refreshes: Counter,
    pub identity_reloads: Family<ResultLabels, Counter>,
    /// Calls to Linkerd's `Identity.Certify`, by result (`ok`, `error`, `refused`).
    pub certify_requests: Family<ResultLabels, Counter>,
    /// Client chains found among those already verified (`hit`) or verified in full (`miss`).
    pub chain_cache: Family<ResultLabels, Counter>,
}

impl TlsMetrics {
    /// The counters the verified-chain cache increments.
    pub fn chain_counters(&self) -> crate::verified_chains::ChainCounters {
        let counter = |result| {
            self.chain_cache
                .get_or_create(&ResultLabels { result })
                .clone()
        };
        crate::verified_chains::ChainCounters {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }
}

impl TlsMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "inbound_tls_handshake_failures",
            "mTLS handshakes refused, by reason",
            self.handshake_failures.clone(),
        );
        r.register(
            "inbound_tls_chain_cache",
            "Client certificate chains found already verified (hit) or verified in full (miss)",
            self.chain_cache.clone(),
        );
        r.register(
            "identity_cert_expiration_timestamp_seconds",
            "Expiry of the gateway's own certificate",
            self.cert_expiration.clone(),
        );
        r.register(
            "identity_cert_refresh_timestamp_seconds",
            "When the gateway's own certificate was last replaced",
            self.cert_refresh.clone(),
        );
        r.register(
            "identity_cert_refreshes",
            "Certificates put in force, by a file load or a Certify",
            self.cert_refreshes.clone(),
        );
        r.register(
            "identity_reloads",
            "Reloads of the gateway's identity files, by result",
            self.identity_reloads.clone(),
        );
        r.register(
            "identity_certify_requests",
            "Certify calls to Linkerd's identity controller, by result",
            self.certify_requests.clone(),
        );
    }

    /// A leaf went into force: its expiry, now as the refresh time, one more refresh.
    pub fn cert_refreshed(&self, not_after: i64) {
        self.cert_expiration.set(not_after as f64);
        self.cert_refresh.set(crate::identity::unix_now() as f64);
        self.cert_refreshes.inc();
    }

    /// Counts one Certify call.
    pub fn certified(&self, result: &'static str) {
        self.certify_requests
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts one reload of the identity files.
    pub fn identity_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.identity_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Reloads of the configuration file.
#[derive(Default)]
pub struct ConfigMetrics {
    pub reloads: Family<ResultLabels, Counter>,
}

impl ConfigMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "config_reloads",
            "Configuration reloads, by result",
            self.reloads.clone(),
        );
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Where a refusal was made: before serving a connection, or answering one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Request,
}

/// Every family the gateway exports, registered into one registry.
pub struct Metrics {
    pub tcp: TcpMetrics,
    pub http: HttpMetrics,
    pub tls: TlsMetrics,
    pub config: ConfigMetrics,
    /// The Destination client's updates and streams.
    pub discovery: discovery::DestinationMetrics,
    /// The balancer's endpoint states and per-endpoint requests.
    pub balancer: balancer::BalancerMetrics,
    /// Target pods' policies: route not found, rate limits, unknown policies, the watches.
    pub policy: policy::PolicyMetrics,
    /// Which target names may be labels (bounded; the rest are `other`).
    pub targets: TargetLabels,
    /// The series of leg label sets already looked up.
    legs: leg::LegCache,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// With the default cap of 1,000 target labels.
    pub fn new() -> Metrics {
        Metrics::with_target_cap(1000)
    }

    /// At most `max_targets` target names become labels.
    pub fn with_target_cap(max_targets: usize) -> Metrics {
        let mut m = Metrics {
            tcp: TcpMetrics::default(),
            http: HttpMetrics::default(),
            tls: TlsMetrics::default(),
            config: ConfigMetrics::default(),
            discovery: discovery::DestinationMetrics::default(),
            balancer: balancer::BalancerMetrics::default(),
            policy: policy::PolicyMetrics::default(),
            targets: TargetLabels::new(max_targets),
            legs: leg::LegCache::default(),
            registry: Registry::default(),
        };
        m.registry.register(
            "metric_targets_folded",
            "Target labels folded into authority=\"other\" (not known to be real, or past max_metric_targets)",
            m.targets.folded.clone(),
        );
        m.tcp.register(&mut m.registry);
        m.http.register(&mut m.registry);
        m.tls.register(&mut m.registry);
        m.config.register(&mut m.registry);
        m.discovery.register(&mut m.registry);
        m.balancer.register(&mut m.registry);
        m.policy.register(&mut m.registry);
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        m.registry.register(
            "crossgate_build_info",
            "The running crossgate's version",
            build,
        );
        m.registry
            .register_collector(Box::new(process::ProcessCollector));
        m
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The one place a refusal is counted and logged: its error label in the scope's errors
    /// family, or, for an authorization denial, the scope's deny family under `peer` (client
    /// and authority; a pod policy's denials, route misses and rate limits with its labels).
    /// The connection's span carries who the client is.
    pub fn refused(&self, scope: Scope, peer: Option<&PeerLabels>, refusal: &Refusal) {
        let (errors, deny) = match scope {
            Scope::Connection => (&self.tcp.errors, &self.tcp.authz_deny),
            Scope::Request => (&self.http.errors, &self.http.authz_deny),
        };
        match (refusal.error_label(), peer) {
            _ if self.policy.refused(deny, peer, refusal) => 0,
            (Some(error), _) => errors.get_or_create(&ErrorLabels { error }).inc(),
            (None, Some(peer)) => deny.get_or_create(&AuthzLabels::Rules(peer.clone())).inc(),
            (None, None) => 0,
        };
        tracing::debug!(
            ?scope,
            authority = peer.map(|p| p.authority.as_str()),
            reason = %refusal,
            "refused"
        );
    }
}
