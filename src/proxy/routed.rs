//! A request's target, routed once: per connection for the target its requests name, and per
//! worker for a target the transport header or SNI fixed for a whole connection, shared by
//! every connection of that client to it. Linkerd's HTTP/1 without the hint opens a
//! connection per request, so routing it per connection meant the label sets, the
//! `Forwarded` element and the metric lookups were made again for every request.

use super::headers::{self, L5D_DST_CANONICAL};
use super::http::Conn;
use super::observe::RouteMetrics;
use crate::endpoint::EndpointSet;
use crate::kept::Kept;
use crate::metrics::{PeerLabels, RequestLabels};
use crate::plan;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use http::Request;
use http::header::{HOST, HeaderValue};
use http::uri::Authority;
use hyper::body::Incoming;
use std::sync::Arc;

/// The most (client, target) pairs a worker keeps routed; past it the cache starts again.
const MAX_KEPT: usize = 1024;

/// A routed target and what is derived from it once; shared (`Arc`), as every request of a
/// connection takes it.
pub(super) struct Routed {
    pub(super) target: Target,
    /// `name:port`, for logs (the metric label may be `other`).
    pub(super) text: Arc<str>,
    /// The metric labels say `other`: the target was not known to be real when routed.
    pub(super) folded: bool,
    pub(super) authority: Authority,
    pub(super) metrics: Arc<RouteMetrics>,
    pub(super) forwarded: HeaderValue,
    /// `Host` for HTTP/1 upstream requests: the authority, made once.
    pub(super) host: HeaderValue,
    /// The target's `[routing.static]` endpoints in the rules it was routed under (a routing
    /// is kept for one rules generation only), for the upstream not to look them up again.
    pub(super) statics: Option<EndpointSet>,
}

/// A routing kept for reuse: what it was asked, and under which rules generation.
pub(super) struct Cached {
    pub(super) raw: Box<str>,
    pub(super) generation: u64,
    pub(super) routed: Arc<Routed>,
}

/// A client identity and the target fixed for its connection.
type Key = (Arc<str>, Target);

/// Fixed targets routed for a worker's connections, by client identity and target, with the
/// rules generation they were routed under.
#[derive(Default)]
pub struct RouteCache(Kept<Key, (u64, Arc<Routed>), MAX_KEPT>);

impl Conn {
    /// The request's target under `rules`: the connection's fixed one, or the one the
    /// request names (plain mode); routed once per target and rules generation.
    pub(super) fn routed(
        &self,
        req: &Request<Incoming>,
        rules: &Rules,
    ) -> Result<Arc<Routed>, Refusal> {
        let named = || {
            plan::request_authority(
                req.headers()
                    .get(L5D_DST_CANONICAL)
                    .map(HeaderValue::as_bytes),
                req.uri().authority().map(Authority::as_str),
                req.headers().get(HOST).map(HeaderValue::as_bytes),
            )
        };
        let raw = match &self.fixed {
            Some(sni) if self.by_sni => {
                plan::check_sni_authority(sni, named().ok())?;
                None
            }
            Some(_) => None,
            None => Some(named()?),
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = last.as_ref()
            && c.generation == rules.generation
            && raw.is_none_or(|raw| *c.raw == *raw)
            && self.current(&c.routed)
        {
            return Ok(c.routed.clone());
        }
        let routed = match (&self.fixed, raw) {
            (Some(t), _) => self.fixed_route(t, rules)?,
            (None, Some(raw)) => self.route_state(plan::request_target(raw, rules)?, rules)?,
            (None, None) => return Err(Refusal::BadGatewayDomain),
        };
        *last = Some(Cached {
            raw: raw.unwrap_or_default().into(),
            generation: rules.generation,
            routed: routed.clone(),
        });
        Ok(routed)
    }

    /// A routing still good for its labels: one labelled `other` is made again once its
    /// target is reached, to be labelled by its name.
    fn current(&self, routed: &Routed) -> bool {
        !(routed.folded && self.ctx.metrics.targets.is_known(&routed.target))
    }

    /// The fixed target `t` routed under `rules`, as the worker last routed it for this
    /// client under the same generation.
    fn fixed_route(&self, t: &Target, rules: &Rules) -> Result<Arc<Routed>, Refusal> {
        let key = (self.client.id.clone(), t.clone());
        if let Some((generation, routed)) = self.ctx.routes.0.get(&key)
            && generation == rules.generation
            && self.current(&routed)
        {
            return Ok(routed);
        }
        let routed = self.route_state(rules.routes.route(&t.name, t.port)?, rules)?;
        self.ctx
            .routes
            .0
            .insert(key, (rules.generation, routed.clone()));
        Ok(routed)
    }

    fn route_state(&self, target: Target, rules: &Rules) -> Result<Arc<Routed>, Refusal> {
        let text = target.to_string();
        let authority =
            Authority::try_from(text.as_str()).map_err(|_| Refusal::BadGatewayDomain)?;
        let forwarded = headers::forwarded_element(&self.ctx.own_identity, &self.client.id, &text);
        let host = HeaderValue::from_str(&text).map_err(|_| Refusal::BadGatewayDomain)?;
        let label = self.ctx.metrics.targets.authority(&target);
        let labels = RequestLabels(Arc::new(PeerLabels {
            client_id: self.client.id.to_string(),
            authority: label,
        }));
        Ok(Arc::new(Routed {
            folded: labels.0.authority == crate::metrics::OTHER,
            text: text.into(),
            metrics: Arc::new(RouteMetrics::new(&self.ctx.metrics, labels)),
            forwarded: HeaderValue::try_from(forwarded).map_err(|_| Refusal::BadGatewayDomain)?,
            host,
            authority,
            statics: rules.routes.static_endpoints(&target).cloned(),
            target,
        }))
    }
}
