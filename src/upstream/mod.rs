//! The upstream side, per target: its endpoints (from [`crate::discovery`], under the rules
//! snapshot the caller decided with), the choice of one ([`balance`]: power of two choices
//! over the ready endpoints by peak-EWMA load, waiting at most `failfast_timeout` for one to be
//! ready; each endpoint's [`health`]), the one connect path
//! ([`connect`]: TCP, mTLS as the gateway, a transport header), and per endpoint its HTTP
//! connections ([`http`]): an HTTP/2 connection ([`h2`]) and an HTTP/1.1 pool, chosen by the
//! endpoint's protocol hint and the request's version. [`Upstream::send`] and
//! [`Upstream::open`] are all that the proxy calls; refusals come back typed.

pub mod balance;
mod body;
mod connect;
mod enforce;
mod h2;
mod health;
mod http;
mod open;
mod send;

pub use body::{BodyError, RequestBody, ResponseBody};
pub use connect::{Connected, Connector, UpstreamIo, transport_header_for};
pub use enforce::{Caller, Revocation};
pub use health::{Balancer, InFlight};
pub use open::Opened;

use crate::client_tls::ClientTls;
use crate::discovery::policy::Policies;
use crate::discovery::{Discovery, Endpoint, EndpointSet};
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use ::http::{Request, Response, Version};
use balance::{Draws, p2c};
use health::{Health, TargetEvents};
use http::{EndpointConns, SendError};
use send::send_to;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// `l5d-orig-proto`: an HTTP/1 request carried over HTTP/2 to a meshed endpoint.
pub const L5D_ORIG_PROTO: &str = "l5d-orig-proto";

/// How often the endpoint table is swept of endpoints nobody used for [`http::IDLE_TIMEOUT`].
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Marks a request the client sent in absolute form (`GET http://host/path HTTP/1.1`), so
/// that an upgrade to HTTP/2 says so in `l5d-orig-proto`.
#[derive(Clone, Copy, Debug)]
pub struct AbsoluteForm;

/// An endpoint set and its endpoints' connections, in the set's order.
type SeenSet = (EndpointSet, Arc<[Arc<EndpointConns>]>);

/// Per target: the balancer's view (the connections of the endpoint set it last saw, in the
/// set's order), readiness events, and since when no endpoint has been ready.
struct TargetState {
    cache: Mutex<Option<SeenSet>>,
    events: Arc<TargetEvents>,
    /// Since when no endpoint was ready: milliseconds since the upstream's epoch plus one;
    /// zero while some are.
    none_ready_since: AtomicU64,
}

/// The targets that resolved, each with its state, and the last one asked for.
#[derive(Default)]
struct Targets {
    map: HashMap<Target, Arc<TargetState>>,
    last: Option<(Target, Arc<TargetState>)>,
}

/// The upstream: discovery, the balancer, the connect path, and the endpoints' connections.
pub struct Upstream {
    discovery: Arc<Discovery>,
    connector: Arc<Connector>,
    balancer: Balancer,
    targets: Mutex<Targets>,
    endpoints: Mutex<HashMap<(Target, Endpoint), Arc<EndpointConns>>>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last sweep.
    swept: AtomicU64,
    /// `[policy]`: the pods' policy watches; `None`: no pod policy is enforced.
    policies: Option<Arc<Policies>>,
}

/// How often a request waiting for a ready endpoint asks discovery again (a new endpoint may
/// have been added), besides being woken when one of the known ones turns ready.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// How many endpoints a request that none could take is offered to before it fails.
const MAX_NOT_SENT: usize = 3;

impl Upstream {
    pub fn new(
        discovery: Arc<Discovery>,
        tls: Option<Arc<ClientTls>>,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
        balancer: Balancer,
    ) -> Upstream {
        Upstream {
            discovery,
            connector: Arc::new(Connector {
                tls,
                metrics,
                timeout: connect_timeout,
            }),
            balancer,
            targets: Mutex::default(),
            endpoints: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            swept: AtomicU64::new(0),
            policies: None,
        }
    }

    /// Another upstream over the same discovery, policies and connector, with connections of
    /// its own: one per worker thread, so that a connection and the upstream connections it
    /// uses live on one thread.
    pub fn sibling(&self) -> Upstream {
        Upstream {
            discovery: self.discovery.clone(),
            connector: self.connector.clone(),
            balancer: self.balancer,
            targets: Mutex::default(),
            endpoints: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            swept: AtomicU64::new(0),
            policies: self.policies.clone(),
        }
    }

    /// Holds every caller to the chosen pod's own policy, from `policies` ([`enforce`]).
    pub fn with_policies(mut self, policies: Arc<Policies>) -> Upstream {
        self.policies = Some(policies);
        self
    }

    /// Sends `req` to an endpoint of `target` and returns its response head and the endpoint.
    /// The endpoint is chosen by the balancer among the ready ones; with none ready the request
    /// waits for one, at most `failfast_timeout` since none has been. HTTP/2 requests ride the
    /// endpoint's HTTP/2 connection; HTTP/1 requests too when the endpoint takes HTTP/2 (marked
    /// `l5d-orig-proto`, undone on the response), else an HTTP/1.1 connection of its pool.
    /// The request's URI is absolute (`http://target/path`); it is boxed, so that every
    /// future on its way holds a pointer, not a copy. Once its endpoint is chosen,
    /// and before anything is sent to it, `caller` is held to the endpoint's pod policy.
    /// `statics`: the target's `[routing.static]` endpoints in the rules the request was
    /// decided with, found when it was routed ([`Routes::static_endpoints`]), so that a
    /// request hashes no table for them.
    ///
    /// [`Routes::static_endpoints`]: crate::route::Routes::static_endpoints
    pub async fn send(
        &self,
        target: &Target,
        statics: Option<&EndpointSet>,
        caller: &Caller,
        mut req: Box<Request<RequestBody>>,
    ) -> Result<(Response<ResponseBody>, SocketAddr), Refusal> {
        // A request no connection of its endpoint could take (a connect failed: the endpoint
        // is pending now) goes to another ready one, a few times at most.
        for _ in 0..MAX_NOT_SENT {
            let conns = self
                .pick(target, statics, req.version() == Version::HTTP_2)
                .await?;
            self.enforce_request(&conns, caller, &*req).await?;
            match send_to(&conns, req).await {
                Ok(sent) => {
                    conns.answered();
                    return Ok(sent);
                }
                Err(SendError::Failed(refusal)) => return Err(refusal),
                Err(SendError::NotSent(refusal, back)) => {
                    tracing::debug!(%target, addr = %conns.endpoint.addr, error = %refusal, "not sent; choosing again");
                    req = back;
                }
            }
        }
        Err(Refusal::Upstream("no endpoint took the request".into()))
    }

    /// The balancer's choice for one request: P2C over the ready endpoints of the target's
    /// current set; with none ready, wait (woken by a readiness change, or asking discovery
    /// again every [`WAIT_POLL`]) until one is or `failfast_timeout` has passed since none was.
    async fn pick(
        &self,
        target: &Target,
        statics: Option<&EndpointSet>,
        h2: bool,
    ) -> Result<Arc<EndpointConns>, Refusal> {
        let mut state = None;
        loop {
            let set = self.discovery.resolve(target, statics).await?;
            // Only a target that resolved gets state: a made-up name leaves nothing behind.
            let state = state.get_or_insert_with(|| self.state(target));
            let list = self.conns_of(state, target, &set);
            // New and failed endpoints connect in the background (a no-op when under way).
            for conns in list.iter().filter(|c| !c.health.is_ready()) {
                conns.warm(h2);
            }
            let ready = |i: usize| list[i].health.is_ready();
            // The clock is read to weigh loads, so not when one endpoint is ready.
            let now = std::cell::OnceCell::new();
            let load = |i: usize| list[i].health.load_at(*now.get_or_init(Instant::now));
            if let Some(i) = draw(list.len(), ready, load) {
                if state.none_ready_since.load(Ordering::Relaxed) != 0 {
                    state.none_ready_since.store(0, Ordering::Relaxed);
                }
                return Ok(list[i].clone());
            }
            let woken = state.events.ready_changed.notified();
            // Milliseconds since `epoch`, plus one so that zero means "some are ready".
            let now_ms = self.epoch.elapsed().as_millis() as u64 + 1;
            let since = match state.none_ready_since.compare_exchange(
                0,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => now_ms,
                Err(since) => since,
            };
            let waited = Duration::from_millis(now_ms.saturating_sub(since));
            let Some(left) = self.balancer.failfast.checked_sub(waited) else {
                tracing::debug!(%target, endpoints = list.len(), "no endpoint ready: fail-fast");
                return Err(Refusal::FailFast);
            };
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(left.min(WAIT_POLL)) => {}
            }
        }
    }

    async fn endpoints_of(&self, target: &Target, rules: &Rules) -> Result<EndpointSet, Refusal> {
        let statics = rules.routes.static_endpoints(target);
        let set = self.discovery.resolve(target, statics).await?;
        if set.is_empty() {
            return Err(Refusal::Upstream("no endpoints".into()));
        }
        Ok(set)
    }

    fn state(&self, target: &Target) -> Arc<TargetState> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        // The target of the last request, again: no hashing (a connection's requests mostly
        // go to one target, and its name is one allocation, compared by address first).
        if let Some((t, s)) = &targets.last
            && t == target
        {
            return s.clone();
        }
        // Entries exist only for targets that resolved: real services, not made-up names.
        if let Some(s) = targets.map.get(target).cloned() {
            targets.last = Some((target.clone(), s.clone()));
            return s;
        }
        let state = Arc::new(TargetState {
            cache: Mutex::new(None),
            events: Arc::new(TargetEvents::new(
                target.clone(),
                self.connector.metrics.clone(),
            )),
            none_ready_since: AtomicU64::new(0),
        });
        targets.map.insert(target.clone(), state.clone());
        targets.last = Some((target.clone(), state.clone()));
        state
    }

    /// The connections of each endpoint of `set`, in its order. The target keeps those of the
    /// set it last saw, so that a request to an unchanged set hashes no endpoint.
    fn conns_of(
        &self,
        state: &TargetState,
        target: &Target,
        set: &EndpointSet,
    ) -> Arc<[Arc<EndpointConns>]> {
        {
            let cache = state.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, conns)) = &*cache
                && Arc::ptr_eq(seen, set)
            {
                return conns.clone();
            }
        }
        self.sweep();
        let conns: Arc<[Arc<EndpointConns>]> = {
            let mut table = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            set.iter()
                .map(|e| {
                    table
                        .entry((target.clone(), e.clone()))
                        .or_insert_with(|| {
                            let health =
                                Health::new(&self.balancer, self.epoch, state.events.clone());
                            let conns = Arc::new(EndpointConns::new(
                                target.clone(),
                                e.clone(),
                                self.connector.clone(),
                                self.epoch,
                                health,
                            ));
                            // The pod's policy is fetched from when the endpoint appears.
                            self.policy_watch(&conns);
                            conns
                        })
                        .clone()
                })
                .collect()
        };
        *state.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((set.clone(), conns.clone()));
        conns
    }

    /// Drops the connections of endpoints nobody used lately: removed endpoints (a reload, a
    /// Destination update) and idle ones, and the state of idle targets. Their in-flight
    /// requests finish. At most every [`SWEEP_EVERY`].
    fn sweep(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.swept.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep_idle();
    }

    /// [`Upstream::sweep`] now; the gateway also calls it every [`SWEEP_EVERY`], so that idle
    /// upstream connections close when no traffic comes at all.
    pub fn sweep_idle(&self) {
        let idle = |c: &Arc<EndpointConns>| c.idle_for(http::IDLE_TIMEOUT);
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| {
                c.expire_h1();
                !idle(c)
            });
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.map.retain(|_, s| {
            let cache = s.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .as_ref()
                .is_some_and(|(_, conns)| !conns.iter().all(idle))
        });
        // The last target's state may be gone from the map: it is found there again or anew.
        targets.last = None;
    }

    /// [`Upstream::sweep_idle`] every [`SWEEP_EVERY`], until the task is aborted.
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            self.sweep_idle();
        }
    }
}

/// The balancer's draw on this thread's generator: P2C among the `n` endpoints.
fn draw(n: usize, ready: impl Fn(usize) -> bool, load: impl Fn(usize) -> f64) -> Option<usize> {
    thread_local! {
        static DRAWS: std::cell::RefCell<Draws> = std::cell::RefCell::new(Draws::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            h.finish()
        }));
    }
    DRAWS.with(|d| {
        let mut d = d.borrow_mut();
        p2c(n, ready, load, &mut || d.draw())
    })
}
