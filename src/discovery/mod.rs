//! Discovery: from a [`Target`] to its endpoints, and nothing else: it never dials. Static
//! endpoints come from `[routing.static]` in the rules snapshot the caller decided with; with
//! `[discovery]`, every other name asks Linkerd's Destination API ([`destination`]: one watched
//! `Get` stream per target), falling back to DNS (or failing) when the controller does not
//! answer in time or does not know the service; without it, DNS. What is known of each
//! endpoint ([`Endpoint`]: identity, protocol hint, ...) tells the upstream how to connect.

pub mod destination;
mod dns;
pub mod policy;

pub use crate::endpoint::{Endpoint, EndpointSet, ProtocolHint, ServerId};
pub(crate) use dns::resolver_builder;

use crate::config::Fallback;
use crate::refusal::Refusal;
use crate::route::Target;
use destination::{Answer, Destination};
use std::net::SocketAddr;

/// The sources of endpoints, in the order they are asked.
pub struct Discovery {
    destination: Option<(Destination, Fallback)>,
    dns: dns::Dns,
}

impl Discovery {
    /// `dns_servers` empty means the system's resolv.conf.
    pub fn new(dns_servers: &[SocketAddr]) -> Discovery {
        Discovery {
            destination: None,
            dns: dns::Dns::new(dns_servers),
        }
    }

    /// Asks `destination` for every name that is not static; `fallback` says what happens
    /// when it cannot answer.
    pub fn with_destination(mut self, destination: Destination, fallback: Fallback) -> Discovery {
        self.destination = Some((destination, fallback));
        self
    }

    /// `target`'s endpoints now: `statics`, its `[routing.static]` endpoints in the rules
    /// snapshot the connection or request was decided with ([`Routes::static_endpoints`],
    /// found once when the target was routed), else what the controller says (an empty set
    /// when the service exists with no endpoints), else what DNS says.
    ///
    /// [`Routes::static_endpoints`]: crate::route::Routes::static_endpoints
    pub async fn resolve(
        &self,
        target: &Target,
        statics: Option<&EndpointSet>,
    ) -> Result<EndpointSet, Refusal> {
        if let Some(set) = statics {
            return Ok(set.clone());
        }
        if let Some((destination, _)) = &self.destination
            && let Some(Answer::Endpoints(set)) = destination.answered(target)
        {
            return Ok(set);
        }
        // Boxed: every request awaits this future, and the waits below (a first answer, DNS)
        // are the rare case; inline, their state would be copied with every request's.
        Box::pin(self.ask(target)).await
    }

    /// [`Discovery::resolve`] without an answer at hand: waits for the controller's first
    /// answer, then falls back (or fails) as configured.
    async fn ask(&self, target: &Target) -> Result<EndpointSet, Refusal> {
        if let Some((destination, fallback)) = &self.destination {
            let why = match destination.resolve(target).await {
                Answer::Endpoints(set) => return Ok(set),
                Answer::NoSuchService => "not known to the controller".to_string(),
                Answer::Unavailable(why) => why,
            };
            match fallback {
                Fallback::Dns => {
                    tracing::debug!(%target, reason = %why, "Destination: falling back to DNS");
                }
                Fallback::Fail => {
                    tracing::debug!(%target, reason = %why, "Destination: no endpoints");
                    return Err(Refusal::Upstream("no endpoints".into()));
                }
            }
        }
        self.dns.resolve(target).await
    }
}
