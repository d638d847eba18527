//! Metrics: the prometheus-client families Linkerd dashboards read (DESIGN.md part 1), with
//! their exact names and labels. Handles are taken once per connection or target, then
//! incremented lock-free.

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Labels of one TCP leg.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum TcpLabels {
    /// The client leg: `direction="inbound",peer="src",tls="true",client_id`.
    Inbound { client_id: Arc<str> },
    /// The upstream leg: plaintext to the in-cluster endpoint.
    Outbound {
        authority: Arc<str>,
        target_addr: Arc<str>,
    },
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            TcpLabels::Inbound { client_id } => [
                ("direction", "inbound"),
                ("peer", "src"),
                ("tls", "true"),
                ("client_id", client_id),
            ]
            .encode(enc),
            TcpLabels::Outbound {
                authority,
                target_addr,
            } => [
                ("direction", "outbound"),
                ("peer", "dst"),
                ("tls", "no_identity"),
                ("no_tls_reason", "not_provided_by_service_discovery"),
                ("authority", authority),
                ("target_addr", target_addr),
            ]
            .encode(enc),
        }
    }
}

/// `classification="success"` or `"failure"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Classification(pub bool);

impl EncodeLabelSet for Classification {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let v = if self.0 { "success" } else { "failure" };
        [("classification", v)].encode(enc)
    }
}

/// `client_id` and `authority`, for authorization and request families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    pub client_id: String,
    pub authority: String,
}

/// The labels of the HTTP request families: `direction="inbound",tls="true"` plus the peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels(pub Arc<PeerLabels>);

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("direction", "inbound"), ("tls", "true")].encode(enc)?;
        self.0.encode(enc)
    }
}

/// The labels of `response_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ResponseLabels {
    pub peer: RequestLabels,
    pub status_code: u16,
    pub success: bool,
}

impl EncodeLabelSet for ResponseLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.peer.encode(enc)?;
        let code = self.status_code.to_string();
        [("status_code", code.as_str())].encode(enc)?;
        Classification(self.success).encode(enc)
    }
}

/// `error="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

/// `reason="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels of `inbound_tcp_transport_header_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct HeaderLabels {
    pub session_protocol: Option<&'static str>,
    pub target_port: u16,
    pub target_name: String,
    pub client_id: String,
}

impl EncodeLabelSet for HeaderLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        if let Some(p) = self.session_protocol {
            [("session_protocol", p)].encode(enc)?;
        }
        let port = self.target_port.to_string();
        [
            ("target_port", port.as_str()),
            ("target_name", &self.target_name),
            ("client_id", &self.client_id),
        ]
        .encode(enc)
    }
}

/// Linkerd's latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// Every family the gateway exports.
pub struct Metrics {
    pub tcp_open: Family<TcpLabels, Counter>,
    pub tcp_close: Family<(TcpLabels, Classification), Counter>,
    pub tcp_open_connections: Family<TcpLabels, Gauge>,
    pub tcp_read_bytes: Family<TcpLabels, Counter>,
    pub tcp_write_bytes: Family<TcpLabels, Counter>,
    pub tcp_authz_allow: Family<PeerLabels, Counter>,
    pub tcp_authz_deny: Family<PeerLabels, Counter>,
    pub tcp_errors: Family<ErrorLabels, Counter>,
    pub http_authz_allow: Family<PeerLabels, Counter>,
    pub http_authz_deny: Family<PeerLabels, Counter>,
    pub http_errors: Family<ErrorLabels, Counter>,
    pub request_total: Family<RequestLabels, Counter>,
    pub response_total: Family<ResponseLabels, Counter>,
    pub response_latency_ms: Family<ResponseLabels, Histogram, fn() -> Histogram>,
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    pub transport_header_connections: Family<HeaderLabels, Counter>,
    pub cert_expiration: Gauge<f64, std::sync::atomic::AtomicU64>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            tcp_open: Family::default(),
            tcp_close: Family::default(),
            tcp_open_connections: Family::default(),
            tcp_read_bytes: Family::default(),
            tcp_write_bytes: Family::default(),
            tcp_authz_allow: Family::default(),
            tcp_authz_deny: Family::default(),
            tcp_errors: Family::default(),
            http_authz_allow: Family::default(),
            http_authz_deny: Family::default(),
            http_errors: Family::default(),
            request_total: Family::default(),
            response_total: Family::default(),
            response_latency_ms: Family::new_with_constructor(latency_histogram),
            tls_handshake_failures: Family::default(),
            transport_header_connections: Family::default(),
            cert_expiration: Gauge::default(),
            registry: Registry::default(),
        };
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register("tcp_open", "Connections opened", self.tcp_open.clone());
        r.register("tcp_close", "Connections closed", self.tcp_close.clone());
        r.register(
            "tcp_open_connections",
            "Connections currently open",
            self.tcp_open_connections.clone(),
        );
        r.register(
            "tcp_read_bytes",
            "Bytes read from the peer",
            self.tcp_read_bytes.clone(),
        );
        r.register(
            "tcp_write_bytes",
            "Bytes written to the peer",
            self.tcp_write_bytes.clone(),
        );
        r.register(
            "inbound_tcp_authz_allow",
            "Connections allowed by authorization",
            self.tcp_authz_allow.clone(),
        );
        r.register(
            "inbound_tcp_authz_deny",
            "Connections denied by authorization",
            self.tcp_authz_deny.clone(),
        );
        r.register(
            "inbound_tcp_errors",
            "Connections refused or failed, by error",
            self.tcp_errors.clone(),
        );
        r.register(
            "inbound_http_authz_allow",
            "Requests allowed by authorization",
            self.http_authz_allow.clone(),
        );
        r.register(
            "inbound_http_authz_deny",
            "Requests denied by authorization",
            self.http_authz_deny.clone(),
        );
        r.register(
            "inbound_http_errors",
            "Requests refused or failed, by error",
            self.http_errors.clone(),
        );
        r.register("request", "Requests received", self.request_total.clone());
        r.register("response", "Responses sent", self.response_total.clone());
        r.register(
            "response_latency_ms",
            "Time from request to response headers, in milliseconds",
            self.response_latency_ms.clone(),
        );
        r.register(
            "inbound_tls_handshake_failures",
            "mTLS handshakes refused, by reason",
            self.tls_handshake_failures.clone(),
        );
        r.register(
            "inbound_tcp_transport_header_connections",
            "Connections that sent a transport header",
            self.transport_header_connections.clone(),
        );
        r.register(
            "identity_cert_expiration_timestamp_seconds",
            "Expiry of the gateway's own certificate",
            self.cert_expiration.clone(),
        );
        self
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a connection refused before or instead of being served.
    pub fn tcp_error(&self, error: &'static str) {
        self.tcp_errors.get_or_create(&ErrorLabels { error }).inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// The live counters of one TCP leg, taken once when the leg opens. Dropping it counts the
/// close (as a failure unless [`Leg::succeeded`] was called) and lowers the open gauge.
pub struct Leg {
    pub read: Counter,
    pub write: Counter,
    open: Gauge,
    close: (Counter, Counter),
    success: bool,
}

impl Leg {
    pub fn open(m: &Metrics, labels: TcpLabels) -> Leg {
        m.tcp_open.get_or_create(&labels).inc();
        let open = m.tcp_open_connections.get_or_create_owned(&labels);
        open.inc();
        Leg {
            read: m.tcp_read_bytes.get_or_create_owned(&labels),
            write: m.tcp_write_bytes.get_or_create_owned(&labels),
            open,
            close: (
                m.tcp_close
                    .get_or_create_owned(&(labels.clone(), Classification(true))),
                m.tcp_close
                    .get_or_create_owned(&(labels, Classification(false))),
            ),
            success: false,
        }
    }

    /// Marks the leg as closed cleanly.
    pub fn succeeded(&mut self) {
        self.success = true;
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        self.open.dec();
        if self.success {
            self.close.0.inc();
        } else {
            self.close.1.inc();
        }
    }
}
