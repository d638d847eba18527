//! HTTP connections to one endpoint: one HTTP/2 connection (prior knowledge, multiplexed,
//! shared by every request to the endpoint, driven through `h2` by [`super::h2`]) and a pool
//! of HTTP/1.1 connections (hyper's client), each opened
//! through the one connect path. No lock is held across an await: the HTTP/2 connection is
//! opened by a task of its own that the first caller starts and later callers wait on.

use super::RequestBody;
use super::connect::{Connected, Connector};
use super::h2::{H2Body, H2Conn};
use super::health::Health;
use crate::discovery::{Endpoint, ProtocolHint};
use crate::metered::Metered;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::transport_header::SessionProtocol;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Idle HTTP/1.1 connections kept per endpoint; more are closed when their response ends.
const MAX_IDLE_H1: usize = 1024;
/// An idle HTTP/1.1 connection older than this is closed rather than reused.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type H2Sender = H2Conn;
type H1Sender = http1::SendRequest<RequestBody>;

enum H2Slot {
    Empty,
    /// A task is connecting; its result is published here.
    Connecting(watch::Receiver<Option<Result<H2Sender, Refusal>>>),
    Ready(H2Sender),
}

/// The HTTP connections of one target's endpoint.
pub(super) struct EndpointConns {
    pub(super) target: Target,
    pub(super) endpoint: Endpoint,
    connector: Arc<Connector>,
    h2: Mutex<H2Slot>,
    /// HTTP/1.1 connections with when each was last handed out; busy ones stay in the list
    /// and are skipped until their response has ended.
    /// (Each with when it was last handed out, milliseconds since `epoch`.)
    h1: Mutex<Vec<(H1Sender, u64)>>,
    /// Milliseconds since `epoch` of the last use, for the idle sweep.
    last_used: AtomicU64,
    epoch: Instant,
    /// What the balancer weighs: round trip, requests in flight, ready or pending.
    pub(super) health: Arc<Health>,
    /// `outbound_http_balancer_requests_total` of this endpoint, taken at its first answer
    /// (the target is then known to be real, so its name is the label).
    requests: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
    /// `[policy]`: the watch of the pod's policy, held while the endpoint is kept.
    pub(super) policy: std::sync::OnceLock<Arc<crate::discovery::policy::PortWatch>>,
}

impl EndpointConns {
    pub(super) fn new(
        target: Target,
        endpoint: Endpoint,
        connector: Arc<Connector>,
        epoch: Instant,
        health: Health,
    ) -> EndpointConns {
        EndpointConns {
            target,
            endpoint,
            connector,
            h2: Mutex::new(H2Slot::Empty),
            h1: Mutex::new(Vec::new()),
            last_used: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            epoch,
            health: Arc::new(health),
            requests: std::sync::OnceLock::new(),
            policy: std::sync::OnceLock::new(),
        }
    }

    /// Counts a request this endpoint answered.
    pub(super) fn answered(&self) {
        self.requests
            .get_or_init(|| {
                let m = &self.connector.metrics;
                m.balancer.requests(
                    m.targets.authority(&self.target),
                    self.endpoint.addr.to_string(),
                )
            })
            .inc();
    }

    /// Connects in the background, unless a connect or a back-off is under way: the endpoint
    /// is ready once connected; after a failed connect it stays pending and tries again after
    /// a back-off (100 ms doubling to 60 s) while anyone still holds it. The connection is the
    /// endpoint's HTTP/2 one when it takes HTTP/2 (its hint, or `h2`: what the waiting request
    /// speaks), else one for its HTTP/1.1 pool; either way the request then uses it.
    pub(super) fn warm(self: &Arc<Self>, h2: bool) {
        if self.health.warming.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(conns) = weak.upgrade() else {
                    return;
                };
                let attempt = if h2 || conns.endpoint.hint == ProtocolHint::Http2 {
                    conns.h2().await.map(drop)
                } else {
                    let now = conns.touch();
                    conns.connect_h1().await.map(|s| conns.put_back(s, now))
                };
                let wait = match attempt {
                    Ok(()) => {
                        conns.health.connected();
                        conns.health.warming.store(false, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        let (wait, first) = conns.health.failed();
                        let (addr, target) = (conns.endpoint.addr, &conns.target);
                        if first {
                            // Said once per outage of the endpoint; the retries at debug.
                            tracing::warn!(%target, %addr, error = %e, "endpoint pending: cannot connect");
                        } else {
                            tracing::debug!(%target, %addr, error = %e, ?wait, "endpoint still pending");
                        }
                        wait
                    }
                };
                drop(conns);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// A connect on a request's path failed: pending until a background connect succeeds.
    fn connect_failed(self: &Arc<Self>, h2: bool) {
        self.health.failed();
        self.warm(h2);
    }

    /// Marks the endpoint used now; returns now, milliseconds since `epoch`.
    pub(super) fn touch(&self) -> u64 {
        self.touch_at(Instant::now())
    }

    /// Marks the endpoint used at `now` (the request's send time, already read); returns it,
    /// milliseconds since `epoch`.
    fn touch_at(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_used.store(ms, Ordering::Relaxed);
        ms
    }

    /// True when nothing used this endpoint for `idle`.
    pub(super) fn idle_for(&self, idle: Duration) -> bool {
        let last = Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) > idle
    }

    /// The session a transport header announces on this endpoint's HTTP connections.
    fn session(&self, h2: bool) -> Option<SessionProtocol> {
        match (self.endpoint.hint, h2) {
            (ProtocolHint::Opaque, _) => None,
            (_, true) => Some(SessionProtocol::Http2),
            (_, false) => Some(SessionProtocol::Http1),
        }
    }

    /// The endpoint's open HTTP/2 connection, if it has one.
    fn h2_ready(&self, now: Instant) -> Option<H2Sender> {
        let slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            H2Slot::Ready(s) if !s.is_closed() => {
                let sender = s.clone();
                drop(slot);
                self.touch_at(now);
                Some(sender)
            }
            _ => None,
        }
    }

    /// The endpoint's HTTP/2 connection, opened if there is none.
    pub(super) async fn h2(self: &Arc<Self>) -> Result<H2Sender, Refusal> {
        self.touch();
        let mut rx = {
            let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                H2Slot::Ready(s) if !s.is_closed() => return Ok(s.clone()),
                H2Slot::Connecting(rx) => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    *slot = H2Slot::Connecting(rx.clone());
                    let conns = self.clone();
                    // A task, so that a caller that goes away does not abandon the connect.
                    tokio::spawn(async move {
                        let result = conns.connect_h2().await;
                        let mut slot = conns.h2.lock().unwrap_or_else(|e| e.into_inner());
                        *slot = match &result {
                            Ok(s) => H2Slot::Ready(s.clone()),
                            Err(_) => H2Slot::Empty,
                        };
                        drop(slot);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r
                .clone()
                .unwrap_or(Err(Refusal::Upstream("connect abandoned".into()))),
            Err(_) => Err(Refusal::Upstream("connect abandoned".into())),
        }
    }

    async fn connect_h2(&self) -> Result<H2Sender, Refusal> {
        let Connected { io, mut leg } = self
            .connector
            .connect(&self.target, &self.endpoint, self.session(true))
            .await?;
        let io = metered(io, &leg);
        let addr = self.endpoint.addr;
        let done = move |ended: Result<(), String>| match ended {
            Ok(()) => leg.succeeded(),
            Err(error) => tracing::debug!(%addr, %error, "upstream HTTP/2 connection failed"),
        };
        super::h2::handshake(io, done).await
    }

    /// Sends `req` over the endpoint's HTTP/2 connection. A connect that fails gives the
    /// request back (nothing of it was sent), for another endpoint to take. `now`: the send
    /// time, the endpoint's last use.
    pub(super) async fn send_h2(
        self: &Arc<Self>,
        req: Box<Request<RequestBody>>,
        now: Instant,
    ) -> Result<Response<H2Body>, SendError> {
        let ready = self.h2_ready(now);
        // Boxed: opening or waiting for the connection is the rare case, and its state would
        // otherwise be copied with every request's future.
        let sender = match ready {
            Some(s) => Ok(s),
            None => Box::pin(self.h2()).await,
        };
        match sender {
            Ok(conn) => super::h2::send(conn, req).await,
            Err(e) => {
                self.connect_failed(true);
                Err(SendError::NotSent(e, req))
            }
        }
    }

    /// Sends `req` over an idle HTTP/1.1 connection, or a new one. A request that an idle
    /// connection could not take (it closed meanwhile) goes once more on a new connection.
    /// `now`: the send time, the endpoint's last use.
    pub(super) async fn send_h1(
        self: &Arc<Self>,
        req: Box<Request<RequestBody>>,
        now: Instant,
    ) -> Result<Response<Incoming>, SendError> {
        let now = self.touch_at(now);
        let req = match self.idle_h1() {
            Some(mut sender) => {
                let sent = sender.try_send_request(*req);
                self.put_back(sender, now);
                match sent.await {
                    Ok(r) => return Ok(r),
                    Err(mut e) => match e.take_message() {
                        Some(req) => Box::new(req),
                        None => return Err(SendError::Failed(upstream_error(e.error()))),
                    },
                }
            }
            None => req,
        };
        // Boxed: a new connection is the rare case, and its connect's state would otherwise
        // be copied with every request's future.
        Box::pin(self.send_h1_new(req, now)).await
    }

    /// Sends `req` on a new HTTP/1.1 connection, then pooled (used at `now`).
    async fn send_h1_new(
        self: &Arc<Self>,
        req: Box<Request<RequestBody>>,
        now: u64,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = match self.connect_h1().await {
            Ok(s) => s,
            Err(e) => {
                self.connect_failed(false);
                return Err(SendError::NotSent(e, req));
            }
        };
        if let Err(e) = sender.ready().await {
            return Err(SendError::NotSent(upstream_error(&e), req));
        }
        let sent = sender.send_request(*req);
        self.put_back(sender, now);
        sent.await
            .map_err(|e| SendError::Failed(upstream_error(&e)))
    }

    /// Closes the HTTP/1.1 connections idle for [`IDLE_TIMEOUT`] and forgets closed ones.
    pub(super) fn expire_h1(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut idle = self.h1.lock().unwrap_or_else(|e| e.into_inner());
        expire(&mut idle, now);
    }

    /// A connection that can take a request now (closed and stale ones are left to the
    /// sweep, so that a request reads no clock per pooled connection).
    fn idle_h1(&self) -> Option<H1Sender> {
        let mut idle = self.h1.lock().unwrap_or_else(|e| e.into_inner());
        let i = idle.iter().rposition(|(s, _)| s.is_ready())?;
        Some(idle.swap_remove(i).0)
    }

    fn put_back(&self, sender: H1Sender, now: u64) {
        let mut idle = self.h1.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE_H1 {
            expire(&mut idle, now);
        }
        if idle.len() < MAX_IDLE_H1 {
            idle.push((sender, now));
        }
    }

    async fn connect_h1(&self) -> Result<H1Sender, Refusal> {
        let Connected { io, mut leg } = self
            .connector
            .connect(&self.target, &self.endpoint, self.session(false))
            .await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(metered(io, &leg)))
            .await
            .map_err(|e| upstream_error(&e))?;
        let addr = self.endpoint.addr;
        tokio::spawn(async move {
            match conn.with_upgrades().await {
                Ok(()) => leg.succeeded(),
                Err(e) => {
                    tracing::debug!(%addr, error = %crate::refusal::error_chain(&e), "upstream HTTP/1 connection failed")
                }
            }
        });
        Ok(sender)
    }
}

/// Forgets closed connections and closes those idle for [`IDLE_TIMEOUT`] at `now` (ms).
fn expire(idle: &mut Vec<(H1Sender, u64)>, now: u64) {
    let limit = IDLE_TIMEOUT.as_millis() as u64;
    let stale = |s: &H1Sender, at: u64| s.is_ready() && now.saturating_sub(at) > limit;
    idle.retain(|(s, at)| !(s.is_closed() || stale(s, *at)));
}

fn metered(io: super::UpstreamIo, leg: &crate::metrics::Leg) -> Metered<super::UpstreamIo> {
    Metered::new(io, (leg.read.clone(), leg.write.clone()), None)
}

/// Why a request did not get a response from an endpoint.
pub(super) enum SendError {
    /// No connection could take it: nothing was sent, and here it is back.
    NotSent(Refusal, Box<Request<RequestBody>>),
    /// It was sent (or partly): only the client can decide to try again.
    Failed(Refusal),
}

/// An upstream client error as the refusal it means: the client's own malformed body (carried
/// back through hyper's error) stays the client's; anything else is the upstream's.
pub(super) fn upstream_error(e: &hyper::Error) -> Refusal {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refusal>() {
            return r.clone();
        }
        source = s.source();
    }
    Refusal::Upstream(crate::refusal::error_chain(e))
}
