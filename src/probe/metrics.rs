//! The prober's metric families, labelled `target_cluster_name` as Linkerd's service-mirror
//! labels them, plus crossgate's failure reasons and mirrored-service count. Only configured
//! link names become labels: every handle is created once, at start, from the configuration.
//! What a probe found is decided in `prober`; this module only records it.

use crate::metrics::LATENCY_BUCKETS_MS;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// `target_cluster_name="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub target_cluster_name: String,
}

/// `target_cluster_name` and `probe_successful="true"|"false"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub target_cluster_name: String,
    pub probe_successful: String,
}

/// `target_cluster_name` and `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub target_cluster_name: String,
    pub reason: &'static str,
}

/// Why a probe failed: the `reason` label of `gateway_probe_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The address did not resolve.
    Resolve,
    /// No TCP connection to any resolved address.
    Connect,
    /// The TLS handshake failed, e.g. the gateway's certificate lacks the expected identity.
    Tls,
    /// The probe did not finish within the link's `timeout`.
    Timeout,
    /// No 2xx answer: another status, or no valid HTTP response at all.
    Status,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Resolve,
        Failure::Connect,
        Failure::Tls,
        Failure::Timeout,
        Failure::Status,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Failure::Resolve => "resolve",
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
        }
    }
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every family the prober exports.
pub struct ProbeMetrics {
    enabled: Family<ClusterLabels, Gauge>,
    alive: Family<ClusterLabels, Gauge>,
    latency: Family<ClusterLabels, F64Gauge>,
    latencies: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    probes: Family<ProbeLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    services: Family<ClusterLabels, Gauge>,
    registry: Registry,
}

/// The handles of one link, taken once at start.
#[derive(Clone)]
pub struct LinkMetrics {
    pub alive: Gauge,
    /// Milliseconds of the last successful probe.
    pub latency: F64Gauge,
    pub latencies: Histogram,
    pub succeeded: Counter,
    pub failed: Counter,
    failures: [Counter; 5],
}

impl LinkMetrics {
    /// The counter of failures for `reason`.
    pub fn failure(&self, reason: Failure) -> &Counter {
        let i = Failure::ALL.iter().position(|f| *f == reason).unwrap_or(0);
        &self.failures[i]
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

impl Default for ProbeMetrics {
    fn default() -> ProbeMetrics {
        ProbeMetrics::new()
    }
}

impl ProbeMetrics {
    pub fn new() -> ProbeMetrics {
        let mut m = ProbeMetrics {
            enabled: Family::default(),
            alive: Family::default(),
            latency: Family::default(),
            latencies: Family::new_with_constructor(latency_histogram),
            probes: Family::default(),
            failures: Family::default(),
            services: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut m.registry;
        r.register("gateway_enabled", "Gateway is probed", m.enabled.clone());
        r.register(
            "gateway_alive",
            "Gateway is alive: 0 after failure_threshold consecutive failed probes",
            m.alive.clone(),
        );
        r.register(
            "gateway_latency",
            "Latency of the last successful probe, in milliseconds",
            m.latency.clone(),
        );
        r.register(
            "gateway_probe_latency_ms",
            "Latency of successful probes, in milliseconds",
            m.latencies.clone(),
        );
        r.register("gateway_probes", "Probes sent", m.probes.clone());
        r.register(
            "gateway_probe_failures",
            "Failed probes, by reason",
            m.failures.clone(),
        );
        r.register(
            "gateway_mirrored_services",
            "Services mirrored from the target cluster (the link's services)",
            m.services.clone(),
        );
        m
    }

    /// Creates every series of the link `name` and returns its handles.
    pub fn link(&self, name: &str, services: usize) -> LinkMetrics {
        let cluster = ClusterLabels {
            target_cluster_name: name.to_string(),
        };
        let probe = |ok: bool| ProbeLabels {
            target_cluster_name: name.to_string(),
            probe_successful: ok.to_string(),
        };
        let failure = |f: Failure| {
            self.failures
                .get_or_create_owned(&FailureLabels {
                    target_cluster_name: name.to_string(),
                    reason: f.label(),
                })
                .clone()
        };
        self.enabled.get_or_create(&cluster).set(1);
        self.services.get_or_create(&cluster).set(services as i64);
        LinkMetrics {
            alive: self.alive.get_or_create_owned(&cluster),
            latency: self.latency.get_or_create_owned(&cluster),
            latencies: self.latencies.get_or_create_owned(&cluster),
            succeeded: self.probes.get_or_create_owned(&probe(true)),
            failed: self.probes.get_or_create_owned(&probe(false)),
            failures: Failure::ALL.map(failure),
        }
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_a_link_exist_from_the_start() {
        let m = ProbeMetrics::new();
        let east = m.link("east", 2);
        east.failure(Failure::Tls).inc();
        east.failed.inc();
        let text = m.encode();
        for line in [
            "gateway_enabled{target_cluster_name=\"east\"} 1",
            "gateway_alive{target_cluster_name=\"east\"} 0",
            "gateway_mirrored_services{target_cluster_name=\"east\"} 2",
            "gateway_probes_total{target_cluster_name=\"east\",probe_successful=\"true\"} 0",
            "gateway_probes_total{target_cluster_name=\"east\",probe_successful=\"false\"} 1",
            "gateway_probe_failures_total{target_cluster_name=\"east\",reason=\"tls\"} 1",
            "gateway_probe_failures_total{target_cluster_name=\"east\",reason=\"resolve\"} 0",
            "gateway_probe_latency_ms_bucket{le=\"1.0\",target_cluster_name=\"east\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}
