//! The upstream side, per target: its endpoints (from [`crate::discovery`], under the rules
//! snapshot the caller decided with), the choice of one (round robin, failing over to the
//! next on a connect error; the balancer replaces [`choose`]), the one connect path
//! ([`connect`]: TCP, mTLS as the gateway, a transport header), and per endpoint its HTTP
//! connections ([`http`]): an HTTP/2 connection and an HTTP/1.1 pool, chosen by the
//! endpoint's protocol hint and the request's version. [`Upstream::send`] and
//! [`Upstream::open`] are all that the proxy calls; refusals come back typed.

mod body;
mod connect;
mod http;

pub use body::RequestBody;
pub use connect::{Connected, Connector, UpstreamIo, transport_header_for};

use crate::client_tls::ClientTls;
use crate::discovery::{Discovery, Endpoint, EndpointSet, ProtocolHint};
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use ::http::header::{HeaderValue, TRANSFER_ENCODING};
use ::http::{Method, Request, Response, Uri, Version};
use http::EndpointConns;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// One connection opened for opaque TCP or `CONNECT`.
pub struct Opened {
    pub connected: Connected,
    /// The endpoint reached.
    pub addr: SocketAddr,
}

/// An endpoint set and its endpoints' connections, in the set's order.
type SeenSet = (EndpointSet, Arc<[Arc<EndpointConns>]>);

/// Per target: where the round robin stands, and the connections of the endpoint set it
/// last saw (in the set's order).
#[derive(Default)]
struct TargetState {
    next: AtomicUsize,
    cache: Mutex<Option<SeenSet>>,
}

/// The upstream: discovery, the connect path, and the endpoints' connections.
pub struct Upstream {
    discovery: Arc<Discovery>,
    connector: Arc<Connector>,
    targets: Mutex<HashMap<Target, Arc<TargetState>>>,
    endpoints: Mutex<HashMap<(Target, Endpoint), Arc<EndpointConns>>>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last sweep.
    swept: AtomicU64,
}

impl Upstream {
    pub fn new(
        discovery: Arc<Discovery>,
        tls: Option<Arc<ClientTls>>,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
    ) -> Upstream {
        Upstream {
            discovery,
            connector: Arc::new(Connector {
                tls,
                metrics,
                timeout: connect_timeout,
            }),
            targets: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            swept: AtomicU64::new(0),
        }
    }

    /// One connection to `target`, for opaque TCP and `CONNECT`: no session protocol follows
    /// a transport header.
    pub async fn open(&self, target: &Target, rules: &Rules) -> Result<Opened, Refusal> {
        let set = self.endpoints_of(target, rules).await?;
        let start = self.start(target);
        let mut last = None;
        for i in 0..set.len() {
            let endpoint = &set[choose(&set, start + i)];
            match self.connector.connect(target, endpoint, None).await {
                Ok(connected) => {
                    return Ok(Opened {
                        connected,
                        addr: endpoint.addr,
                    });
                }
                Err(r) => last = Some(r),
            }
        }
        Err(last.unwrap_or(Refusal::Upstream("no endpoints".into())))
    }

    /// Sends `req` to an endpoint of `target` and returns its response head and the endpoint.
    /// HTTP/2 requests ride the endpoint's HTTP/2 connection; HTTP/1 requests too when the
    /// endpoint takes HTTP/2 (marked `l5d-orig-proto`, undone on the response), else an
    /// HTTP/1.1 connection of its pool. The request's URI is absolute (`http://target/path`).
    pub async fn send(
        &self,
        target: &Target,
        rules: &Rules,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr), Refusal> {
        let set = self.endpoints_of(target, rules).await?;
        let conns = self.conns(target, &set);
        let orig = match req.version() {
            Version::HTTP_2 => None,
            v if conns.endpoint.hint == ProtocolHint::Http2 && upgradable(&req) => Some(
                orig_proto(v, req.extensions().get::<AbsoluteForm>().is_some()),
            ),
            _ => {
                origin_form(&mut req);
                return conns.send_h1(req).await.map(|r| (r, conns.endpoint.addr));
            }
        };
        let upgraded = orig.is_some();
        if let Some(orig) = orig {
            *req.version_mut() = Version::HTTP_2;
            let h = req.headers_mut();
            h.remove(TRANSFER_ENCODING);
            h.insert(L5D_ORIG_PROTO, orig);
        }
        let mut response = conns.send_h2(req).await?;
        if upgraded {
            response.headers_mut().remove(L5D_ORIG_PROTO);
            *response.version_mut() = Version::HTTP_11;
        }
        Ok((response, conns.endpoint.addr))
    }

    async fn endpoints_of(&self, target: &Target, rules: &Rules) -> Result<EndpointSet, Refusal> {
        let set = self.discovery.resolve(target, rules).await?;
        if set.is_empty() {
            return Err(Refusal::Upstream("no endpoints".into()));
        }
        Ok(set)
    }

    fn state(&self, target: &Target) -> Arc<TargetState> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        // Entries exist only for targets that resolved: real services, not made-up names.
        match targets.get(target) {
            Some(s) => s.clone(),
            None => targets.entry(target.clone()).or_default().clone(),
        }
    }

    /// Where the round robin starts for this call.
    fn start(&self, target: &Target) -> usize {
        self.state(target).next.fetch_add(1, Ordering::Relaxed)
    }

    /// The connections of the endpoint chosen for this request. The target keeps the
    /// connections of the set it last saw, so that a request to an unchanged set hashes no
    /// endpoint.
    fn conns(&self, target: &Target, set: &EndpointSet) -> Arc<EndpointConns> {
        let state = self.state(target);
        let i = choose(set, state.next.fetch_add(1, Ordering::Relaxed));
        {
            let cache = state.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, conns)) = &*cache
                && Arc::ptr_eq(seen, set)
            {
                return conns[i].clone();
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
                            Arc::new(EndpointConns::new(
                                target.clone(),
                                e.clone(),
                                self.connector.clone(),
                                self.epoch,
                            ))
                        })
                        .clone()
                })
                .collect()
        };
        let chosen = conns[i].clone();
        *state.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((set.clone(), conns));
        chosen
    }

    /// Drops the connections of endpoints nobody used lately: removed endpoints (a reload, a
    /// Destination update) and idle ones, and the state of idle targets. Their in-flight
    /// requests finish.
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
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| {
                let cache = s.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache
                    .as_ref()
                    .is_none_or(|(_, conns)| !conns.iter().all(idle))
            });
    }
}

/// The index in `set` of the `n`th choice: round robin.
pub fn choose(set: &EndpointSet, n: usize) -> usize {
    n % set.len()
}
/// HTTP/1 requests that may ride HTTP/2: not `CONNECT`, not an `Upgrade`.
fn upgradable(req: &Request<RequestBody>) -> bool {
    req.method() != Method::CONNECT && !req.headers().contains_key(::http::header::UPGRADE)
}

fn orig_proto(version: Version, absolute: bool) -> HeaderValue {
    let text = match (version == Version::HTTP_10, absolute) {
        (true, false) => "HTTP/1.0",
        (true, true) => "HTTP/1.0; absolute-form",
        (false, false) => "HTTP/1.1",
        (false, true) => "HTTP/1.1; absolute-form",
    };
    HeaderValue::from_static(text)
}

/// An HTTP/1.1 connection's request line carries the path only; `Host` names the target.
fn origin_form(req: &mut Request<RequestBody>) {
    if req.method() == Method::CONNECT {
        return;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = Uri::try_from(path) {
        *req.uri_mut() = uri;
    }
}
