//! What holding callers to the target pods' policies counts: Linkerd's
//! `inbound_http_route_not_found_total`, `inbound_tcp_authz_terminate_total` and
//! `inbound_http_local_ratelimit_total` (with
//! `client_id` and `authority` beside its `srv_*` and `ratelimit_*` labels; the allow and
//! deny counts go to the authorization families, [`super::AuthzLabels::Policy`]), the
//! requests decided by `[policy] unknown`, and the policy watches: their state and the
//! controller's updates. Label values come from the controller or are validated identities
//! and target labels.

use super::labels::{meta_labels, server_labels};
use super::{AuthzLabels, PeerLabels, Scope};
use crate::policy::{Labels, RateLimited};
use crate::refusal::Refusal;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// `client_id`, `authority`, then the server's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ServerLabels(pub PeerLabels, pub Labels);

impl EncodeLabelSet for ServerLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(enc)?;
        server_labels(&self.1, enc)
    }
}

/// `client_id`, `authority`, the server's labels, the limit's, and `ratelimit_scope`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RateLimitLabels {
    pub server: ServerLabels,
    pub limit: Option<Arc<crate::policy::Meta>>,
    pub scope: &'static str,
}

impl EncodeLabelSet for RateLimitLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.server.encode(enc)?;
        if let Some(limit) = &self.limit {
            meta_labels("ratelimit", limit, enc)?;
        }
        [("ratelimit_scope", self.scope)].encode(enc)
    }
}

/// One label, `key="value"`, for the small families below.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct OneLabel(&'static str, &'static str);

impl EncodeLabelSet for OneLabel {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [(self.0, self.1)].encode(enc)
    }
}

/// The families of `[policy]`. Clones share the series.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    route_not_found: Family<ServerLabels, Counter>,
    terminate: Family<ServerLabels, Counter>,
    ratelimit: Family<RateLimitLabels, Counter>,
    unknown: Family<OneLabel, Counter>,
    watches: Family<OneLabel, Gauge>,
    updates: Family<OneLabel, Counter>,
    /// Watches whose stream is open.
    pub active: Gauge,
    /// Watches waiting to open their stream again (backoff, connecting).
    pub reconnecting: Gauge,
    /// Policies received that were read.
    pub read: Counter,
    /// Policies received that could not be read (then refused as invalid).
    pub invalid: Counter,
}

impl Default for PolicyMetrics {
    fn default() -> PolicyMetrics {
        let watches = Family::<OneLabel, Gauge>::default();
        let updates = Family::<OneLabel, Counter>::default();
        let state = |state| watches.get_or_create_owned(&OneLabel("state", state));
        let result = |result| updates.get_or_create_owned(&OneLabel("result", result));
        let (active, reconnecting) = (state("active"), state("reconnecting"));
        let (read, invalid) = (result("ok"), result("invalid"));
        PolicyMetrics {
            active,
            reconnecting,
            read,
            invalid,
            route_not_found: Family::default(),
            terminate: Family::default(),
            ratelimit: Family::default(),
            unknown: Family::default(),
            watches,
            updates,
        }
    }
}

impl PolicyMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "inbound_http_route_not_found",
            "Requests that matched no route of the target pod's policy",
            self.route_not_found.clone(),
        );
        r.register(
            "inbound_tcp_authz_terminate",
            "Connections cut when the target pod's policy changed and no longer admitted them",
            self.terminate.clone(),
        );
        r.register(
            "inbound_http_local_ratelimit",
            "Requests over the target pod's local rate limit, counted for their caller",
            self.ratelimit.clone(),
        );
        r.register(
            "policy_unknown",
            "Requests and connections decided by [policy] unknown, the pod's policy not known",
            self.unknown.clone(),
        );
        r.register(
            "policy_watches",
            "Watches of pod policies (one per workload and port), by state",
            self.watches.clone(),
        );
        r.register(
            "policy_updates",
            "Policies received from the policy controller, by result",
            self.updates.clone(),
        );
    }

    /// Counts a request or connection that `[policy] unknown` let through or refused.
    pub fn unknown(&self, allowed: bool) {
        let decision = if allowed { "allow" } else { "deny" };
        self.unknown
            .get_or_create(&OneLabel("decision", decision))
            .inc();
    }

    /// Counts a refusal made by a pod's policy, in its family (`deny` is the scope's
    /// authorization deny family); false when `refusal` is not one.
    pub(super) fn refused(
        &self,
        deny: &Family<AuthzLabels, Counter>,
        peer: Option<&PeerLabels>,
        refusal: &Refusal,
    ) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        match refusal {
            Refusal::PolicyUnauthorized(labels) => {
                let key = AuthzLabels::Policy(Arc::new(peer.clone()), (**labels).clone());
                deny.get_or_create(&key).inc();
            }
            Refusal::RouteNotFound(labels) => {
                let key = ServerLabels(peer.clone(), (**labels).clone());
                self.route_not_found.get_or_create(&key).inc();
            }
            Refusal::RateLimited(r) => {
                self.ratelimit
                    .get_or_create(&rate_limit_labels(peer, r))
                    .inc();
            }
            _ => return false,
        }
        true
    }

    /// Counts an open connection cut because the pod's policy no longer admits it.
    pub fn terminated(&self, peer: &PeerLabels, refusal: &Refusal) {
        if let Refusal::PolicyUnauthorized(labels) = refusal {
            let key = ServerLabels(peer.clone(), (**labels).clone());
            self.terminate.get_or_create(&key).inc();
        }
    }

    /// Counts a caller a pod's policy admitted, in the scope's authorization allow family.
    pub fn allowed(
        &self,
        metrics: &super::Metrics,
        scope: Scope,
        peer: &Arc<PeerLabels>,
        labels: &Labels,
    ) {
        let allow = match scope {
            Scope::Connection => &metrics.tcp.authz_allow,
            Scope::Request => &metrics.http.authz_allow,
        };
        allow
            .get_or_create(&AuthzLabels::Policy(peer.clone(), labels.clone()))
            .inc();
    }
}

fn rate_limit_labels(peer: &PeerLabels, r: &RateLimited) -> RateLimitLabels {
    RateLimitLabels {
        server: ServerLabels(peer.clone(), r.labels.clone()),
        limit: r.limit.clone(),
        scope: r.kind.scope(),
    }
}
