//! The rules a connection is judged by: the routing table (with SNI routing's `[sni]
//! default_port` and `[passthrough] allow`), the authorization policy and the
//! source-network allow list (`[server] allow_sources`), held as one value and swapped whole when the
//! configuration reloads. A connection or request loads the current value once (a few
//! nanoseconds, no lock) and decides with it; an opaque stream authorized under old rules keeps
//! running after a swap.

use crate::authz::Policy;
use crate::config::Config;
use crate::route::Routes;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One version of the rules.
#[derive(Debug)]
pub struct Rules {
    pub routes: Routes,
    pub policy: Policy,
    /// `[server] allow_sources`: networks a peer must be in to connect; `None`: any.
    pub allow_sources: Option<Vec<ipnet::IpNet>>,
    /// Counts up at each swap; caches of routing decisions compare it.
    pub generation: u64,
}

impl Rules {
    /// The rules of `config`, for a gateway whose own identity is `own_identity`.
    pub fn from_config(config: &Config, own_identity: &str) -> Rules {
        Rules {
            routes: Routes::new(
                &config.routing.cluster_domain,
                config.routing.statics.clone(),
            )
            .with_sni(crate::sni::SniRules {
                default_port: config.sni.default_port,
                passthrough_allow: config
                    .passthrough
                    .as_ref()
                    .map(|p| p.allow.clone())
                    .unwrap_or_default(),
            }),
            policy: Policy {
                own_identity: own_identity.to_string(),
                rules: config.authorization.clone(),
            },
            allow_sources: config.server.allow_sources.clone(),
            generation: 0,
        }
    }
}

/// The current rules, shared by every connection and swapped atomically.
#[derive(Debug)]
pub struct RulesHandle {
    current: ArcSwap<Rules>,
    generations: AtomicU64,
}

impl RulesHandle {
    pub fn new(rules: Rules) -> RulesHandle {
        RulesHandle {
            current: ArcSwap::from_pointee(rules),
            generations: AtomicU64::new(0),
        }
    }

    /// The rules in force now.
    pub fn load(&self) -> Arc<Rules> {
        self.current.load_full()
    }

    /// Puts `rules` in force for every new connection and request.
    pub fn swap(&self, mut rules: Rules) {
        rules.generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Arc::new(rules));
    }
}
