//! Discovery: from a [`Target`] to its endpoints, and nothing else: it never dials. Static
//! endpoints come from `[routing.static]` in the rules snapshot the caller decided with;
//! every other name resolves through DNS. What is known of each endpoint ([`Endpoint`]) tells
//! the upstream how to connect.

pub mod destination;
mod dns;

pub(crate) use dns::resolver_builder;
pub use crate::endpoint::{Endpoint, EndpointSet, ProtocolHint, ServerId};

use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use std::net::SocketAddr;

/// The sources of endpoints, in the order they are asked.
pub struct Discovery {
    dns: dns::Dns,
}

impl Discovery {
    /// `dns_servers` empty means the system's resolv.conf.
    pub fn new(dns_servers: &[SocketAddr]) -> Discovery {
        Discovery {
            dns: dns::Dns::new(dns_servers),
        }
    }

    /// `target`'s endpoints now, under `rules` (the snapshot the connection or request was
    /// decided with): its static endpoints, else what DNS says.
    pub async fn resolve(&self, target: &Target, rules: &Rules) -> Result<EndpointSet, Refusal> {
        if let Some(set) = rules.routes.static_endpoints(target) {
            return Ok(set);
        }
        self.dns.resolve(target).await
    }
}
