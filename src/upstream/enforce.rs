//! `[policy]` at the upstream: once the balancer has chosen an endpoint, and before anything
//! of the caller's is sent to it, the caller is held to that pod's own inbound policy (the
//! endpoint's `PortWatch`, [`crate::discovery::policy`]), decided by the pure
//! [`crate::policy`]. An endpoint without a workload (static, DNS, a pod the controller gave
//! no `pod` and `namespace` labels) is not subject to it. The policy of the pod chosen is the
//! one applied. A policy not known in time (controller unreachable, too many watches) is
//! decided by `[policy] unknown`. Allows are counted here; refusals go back to the caller,
//! which counts them with the rest.

use super::Upstream;
use super::http::EndpointConns;
use crate::config::Unknown;
use crate::discovery::policy::PortWatch;
use crate::metrics::{PeerLabels, Scope};
use crate::policy::{self, Denied, Labels, Meta, ServerPolicy};
use crate::refusal::Refusal;
use std::net::SocketAddr;
use std::sync::Arc;

/// Completes when the pod's policy no longer admits an open connection: why.
pub type Revocation = std::pin::Pin<Box<dyn Future<Output = Refusal> + Send>>;

/// Who is asking, for the target pod's policy: the caller's identity and TCP peer address,
/// and (HTTP) the labels its requests are counted under.
#[derive(Clone, Debug)]
pub struct Caller {
    pub id: Arc<str>,
    pub addr: SocketAddr,
    /// `client_id` and `authority` as the request families count them; `None`: made at
    /// counting time from the target's label.
    pub peer: Option<Arc<PeerLabels>>,
}

impl Upstream {
    /// The watch of `endpoint`'s pod policy, when `[policy]` is on and it names a pod.
    pub(super) fn policy_watch(&self, conns: &EndpointConns) -> Option<Arc<PortWatch>> {
        let policies = self.policies.as_ref()?;
        let workload = conns.endpoint.workload.as_ref()?;
        if let Some(w) = conns.policy.get() {
            return Some(w.clone());
        }
        let w = policies.watch(workload, conns.endpoint.addr.port())?;
        Some(conns.policy.get_or_init(|| w).clone())
    }

    /// Holds one HTTP request of `caller` to the chosen endpoint's pod policy (an allow is
    /// counted at once).
    pub(super) async fn enforce_request<B>(
        &self,
        conns: &EndpointConns,
        caller: &Caller,
        req: &http::Request<B>,
    ) -> Result<(), Refusal> {
        // The clock is read only for a pod with a policy (the decision is then made at once).
        let decide = |p: &ServerPolicy, port, who: &policy::Caller| {
            let now = tokio::time::Instant::now().into_std();
            policy::check_request(p, port, who, req, now)
        };
        let allowed = self.enforce(conns, caller, decide).await?;
        self.count_allowed(conns, caller, Scope::Request, allowed.as_ref());
        Ok(())
    }

    /// Holds one connection of `caller` (opaque TCP, `CONNECT`) to the chosen endpoint's pod
    /// policy; what admitted it, for [`Upstream::count_allowed`] once dialled (a target
    /// reached is then labelled by its name).
    pub(super) async fn enforce_connection(
        &self,
        conns: &EndpointConns,
        caller: &Caller,
    ) -> Result<Option<Labels>, Refusal> {
        self.enforce(conns, caller, policy::check_connection).await
    }

    /// Counts what a pod's policy admitted (`None`: not subject to one, or let through by
    /// `unknown`) in the scope's authorization allow family.
    pub(super) fn count_allowed(
        &self,
        conns: &EndpointConns,
        caller: &Caller,
        scope: Scope,
        allowed: Option<&Labels>,
    ) {
        if let Some(labels) = allowed {
            let m = &self.connector.metrics;
            m.policy
                .allowed(m, scope, &self.peer(caller, conns), labels);
        }
    }

    /// The decision for `caller` on `conns`' pod: `Ok(Some(labels))` admitted by its policy,
    /// `Ok(None)` not subject to one (or `unknown = "allow"`).
    async fn enforce(
        &self,
        conns: &EndpointConns,
        caller: &Caller,
        decide: impl FnOnce(&ServerPolicy, u16, &policy::Caller) -> Result<Labels, Denied>,
    ) -> Result<Option<Labels>, Refusal> {
        let Some(policies) = &self.policies else {
            return Ok(None);
        };
        if conns.endpoint.workload.is_none() {
            return Ok(None);
        }
        let port = conns.endpoint.addr.port();
        let current = match self.policy_watch(conns) {
            Some(w) => w.current().await,
            None => Err("too many pod policies watched".to_string()),
        };
        let policy = match current {
            Ok(p) => p,
            Err(why) => return self.unknown(policies.unknown(), port, &why, conns),
        };
        let who = policy::Caller {
            id: &caller.id,
            addr: caller.addr.ip(),
        };
        match decide(&policy, port, &who) {
            Ok(labels) => Ok(Some(labels)),
            Err(denied) => {
                tracing::debug!(client_id = %caller.id, endpoint = %conns.endpoint.addr, ?denied, "pod policy refused");
                Err(refusal(denied))
            }
        }
    }

    /// `[policy] unknown` decides: through unchecked, or refused as the pod's proxy refuses
    /// under its `default:deny` policy.
    fn unknown(
        &self,
        unknown: Unknown,
        port: u16,
        why: &str,
        conns: &EndpointConns,
    ) -> Result<Option<Labels>, Refusal> {
        let allowed = unknown == Unknown::Allow;
        self.connector.metrics.policy.unknown(allowed);
        tracing::debug!(endpoint = %conns.endpoint.addr, reason = why, allowed, "pod policy unknown");
        if allowed {
            return Ok(None);
        }
        Err(Refusal::PolicyUnauthorized(Box::new(Labels {
            server: Meta::default_named("deny"),
            port,
            route: None,
            authz: None,
        })))
    }

    /// For a connection the pod's policy admitted: completes, with the refusal, once a new
    /// policy of the pod no longer admits it, as the pod's proxy then cuts the connection.
    pub(super) fn revocation(&self, conns: &EndpointConns, caller: &Caller) -> Option<Revocation> {
        let mut updates = conns.policy.get()?.updates();
        let (id, addr) = (caller.id.clone(), caller.addr.ip());
        let port = conns.endpoint.addr.port();
        Some(Box::pin(async move {
            loop {
                let policy = updates.next().await;
                let who = policy::Caller { id: &id, addr };
                if let Err(denied) = policy::check_connection(&policy, port, &who) {
                    return refusal(denied);
                }
            }
        }))
    }

    fn peer(&self, caller: &Caller, conns: &EndpointConns) -> Arc<PeerLabels> {
        caller.peer.clone().unwrap_or_else(|| {
            Arc::new(PeerLabels {
                client_id: caller.id.to_string(),
                authority: self.connector.metrics.targets.authority(&conns.target),
            })
        })
    }
}

fn refusal(denied: Denied) -> Refusal {
    match denied {
        Denied::Unauthorized(labels) => Refusal::PolicyUnauthorized(Box::new(labels)),
        Denied::RouteNotFound(labels) => Refusal::RouteNotFound(Box::new(labels)),
        Denied::RateLimited(r) => Refusal::RateLimited(Box::new(r)),
        Denied::Invalid(_, why) => Refusal::PolicyInvalid(why),
    }
}
