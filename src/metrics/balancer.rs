//! The balancer's families: `outbound_http_balancer_endpoints{authority, endpoint_state}`
//! (how many of a target's endpoints are ready or pending) and
//! `outbound_http_balancer_requests_total{authority, target_addr}` (the requests each endpoint
//! answered). Labels come from [`super::TargetLabels`], so they are bounded like the others.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    authority: String,
    endpoint_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    authority: String,
    target_addr: String,
}

/// The balancer's metric families.
#[derive(Clone, Debug, Default)]
pub struct BalancerMetrics {
    endpoints: Family<StateLabels, Gauge>,
    requests: Family<EndpointLabels, Counter>,
}

impl BalancerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outbound_http_balancer_endpoints",
            "Endpoints of each target by balancer state: ready (connected) or pending",
            self.endpoints.clone(),
        );
        registry.register(
            "outbound_http_balancer_requests",
            "HTTP requests the balancer gave each endpoint of a target",
            self.requests.clone(),
        );
    }

    /// The gauge of `authority`'s endpoints in `state` (`ready`, `pending`).
    pub fn endpoints(&self, authority: &str, state: &'static str) -> Gauge {
        self.endpoints.get_or_create_owned(&StateLabels {
            authority: authority.to_string(),
            endpoint_state: state,
        })
    }

    /// The counter of requests answered by endpoint `target_addr` of `authority`.
    pub fn requests(&self, authority: String, target_addr: String) -> Counter {
        self.requests.get_or_create_owned(&EndpointLabels {
            authority,
            target_addr,
        })
    }
}
