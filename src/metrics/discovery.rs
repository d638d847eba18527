//! What the Destination API client counts: the updates the controller sent, by kind, and the
//! state of the per-target streams. The handles are taken once, at construction, so counting
//! is an atomic add; every label value is registered at zero so dashboards see the series
//! before the first update.

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `op="add"|"remove"|"no_endpoints"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct OpLabels {
    pub op: &'static str,
}

impl EncodeLabelSet for OpLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("op", self.op)].encode(enc)
    }
}

/// `state="active"|"reconnecting"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct StreamLabels {
    pub state: &'static str,
}

impl EncodeLabelSet for StreamLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("state", self.state)].encode(enc)
    }
}

/// `discovery_updates_total{op}` and `discovery_streams{state}`. Clones share the series.
#[derive(Clone, Debug)]
pub struct DestinationMetrics {
    updates: Family<OpLabels, Counter>,
    streams: Family<StreamLabels, Gauge>,
    /// `Add` updates applied.
    pub add: Counter,
    /// `Remove` updates applied.
    pub remove: Counter,
    /// `NoEndpoints` updates applied (whether or not the service exists).
    pub no_endpoints: Counter,
    /// Targets whose `Get` stream is open.
    pub active: Gauge,
    /// Targets waiting to open their stream again (backoff, connecting).
    pub reconnecting: Gauge,
}

impl Default for DestinationMetrics {
    fn default() -> DestinationMetrics {
        let updates = Family::<OpLabels, Counter>::default();
        let streams = Family::<StreamLabels, Gauge>::default();
        let op = |op| updates.get_or_create(&OpLabels { op }).clone();
        let state = |state| streams.get_or_create(&StreamLabels { state }).clone();
        DestinationMetrics {
            add: op("add"),
            remove: op("remove"),
            no_endpoints: op("no_endpoints"),
            active: state("active"),
            reconnecting: state("reconnecting"),
            updates,
            streams,
        }
    }
}

impl DestinationMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "discovery_updates",
            "Updates received from the Destination API, by kind",
            self.updates.clone(),
        );
        registry.register(
            "discovery_streams",
            "Destination API streams (one per watched target), by state",
            self.streams.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_lines() {
        let m = DestinationMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let handle = m.clone();
        handle.add.inc();
        handle.add.inc();
        handle.no_endpoints.inc();
        handle.active.inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            "# TYPE discovery_updates counter",
            "discovery_updates_total{op=\"add\"} 2",
            "discovery_updates_total{op=\"remove\"} 0",
            "discovery_updates_total{op=\"no_endpoints\"} 1",
            "# TYPE discovery_streams gauge",
            "discovery_streams{state=\"active\"} 1",
            "discovery_streams{state=\"reconnecting\"} 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
    }
}
