//! What the balancer reads of one endpoint: its peak-EWMA round trip, its requests in flight,
//! and whether it is ready (its last connect succeeded) or pending (not connected yet, or
//! backing off after a failed connect: 100 ms doubling to 60 s). Changes of readiness wake the
//! target's waiting requests and move the endpoint between the target's `ready` and `pending`
//! gauges.

use super::balance::{Rtt, load};
pub use crate::config::Balancer;
use crate::metrics::Metrics;
use crate::route::Target;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first back-off after a failed connect, and the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The target's side of its endpoints' readiness: a wake-up for requests waiting for a ready
/// endpoint, and the `outbound_http_balancer_endpoints` gauges, labelled `other` until the
/// target is known to be real (then moved to its name).
pub(super) struct TargetEvents {
    pub(super) ready_changed: Notify,
    gauges: Mutex<Gauges>,
    target: Target,
    metrics: Arc<Metrics>,
}

struct Gauges {
    label: String,
    ready: (Gauge, i64),
    pending: (Gauge, i64),
}

impl TargetEvents {
    pub(super) fn new(target: Target, metrics: Arc<Metrics>) -> TargetEvents {
        let label = metrics.targets.authority(&target);
        TargetEvents {
            ready_changed: Notify::new(),
            gauges: Mutex::new(Gauges {
                ready: (metrics.balancer.endpoints(&label, "ready"), 0),
                pending: (metrics.balancer.endpoints(&label, "pending"), 0),
                label,
            }),
            target,
            metrics,
        }
    }

    /// An endpoint left state `from` for `to` (`None`: it was added, or removed); `true` is
    /// ready.
    fn moved(&self, from: Option<bool>, to: Option<bool>) {
        let mut guard = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *guard;
        if g.label == crate::metrics::OTHER && self.metrics.targets.is_known(&self.target) {
            let label = self.metrics.targets.authority(&self.target);
            for (state, (gauge, n)) in [("ready", &mut g.ready), ("pending", &mut g.pending)] {
                gauge.dec_by(*n);
                *gauge = self.metrics.balancer.endpoints(&label, state);
                gauge.inc_by(*n);
            }
            g.label = label;
        }
        for (state, delta) in [(from, -1), (to, 1)] {
            let (gauge, n) = match state {
                Some(true) => &mut g.ready,
                Some(false) => &mut g.pending,
                None => continue,
            };
            gauge.inc_by(delta);
            *n += delta;
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (i64, i64) {
        let g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        (g.ready.0.get(), g.pending.0.get())
    }
}

/// One endpoint's state as the balancer sees it.
pub(super) struct Health {
    rtt: Mutex<Rtt>,
    in_flight: AtomicU32,
    ready: AtomicBool,
    failures: AtomicU32,
    /// After a failure: when a connect is worth trying again, ms since `epoch`.
    retry_at: std::sync::atomic::AtomicU64,
    /// A connect (or a wait before one) is under way in the background.
    pub(super) warming: AtomicBool,
    epoch: Instant,
    decay_ns: f64,
    target: Arc<TargetEvents>,
}

impl Health {
    pub(super) fn new(settings: &Balancer, epoch: Instant, target: Arc<TargetEvents>) -> Health {
        target.moved(None, Some(false));
        let now = epoch.elapsed().as_nanos() as u64;
        Health {
            rtt: Mutex::new(Rtt::new(settings.default_rtt.as_nanos() as f64, now)),
            in_flight: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            retry_at: std::sync::atomic::AtomicU64::new(0),
            warming: AtomicBool::new(false),
            epoch,
            decay_ns: settings.decay.as_nanos() as f64,
            target,
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The load the balancer weighs as of `now` (one clock read for every endpoint weighed):
    /// the round-trip estimate times (requests in flight + 1).
    pub(super) fn load_at(&self, now: Instant) -> f64 {
        let at = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let rtt = self.rtt.lock().unwrap_or_else(|e| e.into_inner());
        let estimate = rtt.at(at, self.decay_ns);
        load(estimate, self.in_flight.load(Ordering::Relaxed))
    }

    /// A round trip of `rtt` ended at `now`.
    fn observe(&self, rtt: Duration, now: Instant) {
        let at = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let mut est = self.rtt.lock().unwrap_or_else(|e| e.into_inner());
        est.observe(rtt.as_nanos() as f64, at, self.decay_ns);
    }

    /// A connect succeeded: ready, and waiting requests may go.
    pub(super) fn connected(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if !self.ready.swap(true, Ordering::Relaxed) {
            self.target.moved(Some(false), Some(true));
            self.target.ready_changed.notify_waiters();
        }
    }

    /// A connect failed: pending; returns how long to wait before the next attempt, and
    /// whether this is the first failure since the endpoint was last connected.
    pub(super) fn failed(&self) -> (Duration, bool) {
        if self.ready.swap(false, Ordering::Relaxed) {
            self.target.moved(Some(true), Some(false));
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        let wait = BACKOFF_MIN.saturating_mul(1 << n.min(20)).min(BACKOFF_MAX);
        let retry = self.epoch.elapsed().saturating_add(wait).as_millis() as u64;
        self.retry_at.store(retry, Ordering::Relaxed);
        (wait, n == 0)
    }

    /// Worth a connect now: it has not failed since it last connected, or its back-off has
    /// passed (opaque TCP, which keeps no connections to warm, tries those first).
    pub(super) fn usable(&self, now: Instant) -> bool {
        self.failures.load(Ordering::Relaxed) == 0
            || now.saturating_duration_since(self.epoch).as_millis() as u64
                >= self.retry_at.load(Ordering::Relaxed)
    }

    /// A request is sent to this endpoint at `now`: counted until the guard is dropped.
    pub(super) fn start(self: &Arc<Self>, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            health: self.clone(),
            sent: now,
            measured: false,
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.target
            .moved(Some(self.ready.load(Ordering::Relaxed)), None);
    }
}

/// A request's place in its endpoint's load, from send to the end of its response body.
pub struct InFlight {
    health: Arc<Health>,
    sent: Instant,
    measured: bool,
}

impl InFlight {
    /// The first byte of the response body arrived (or it ended): the round trip.
    pub fn first_byte(&mut self) {
        if !self.measured {
            self.measured = true;
            let now = Instant::now();
            self.health.observe(now - self.sent, now);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Arc<TargetEvents> {
        let target = Target {
            name: "web.ns.svc.cluster.local".into(),
            port: 80,
        };
        Arc::new(TargetEvents::new(target, Arc::new(Metrics::new())))
    }

    #[test]
    fn readiness_moves_the_gauges_and_backs_off() {
        let target = events();
        let h = Arc::new(Health::new(
            &Balancer::default(),
            Instant::now(),
            target.clone(),
        ));
        assert_eq!(target.counts(), (0, 1));
        assert!(!h.is_ready(), "pending until connected");
        h.connected();
        assert_eq!(target.counts(), (1, 0));
        assert!(h.is_ready());
        assert_eq!(h.failed(), (Duration::from_millis(100), true));
        assert_eq!(h.failed(), (Duration::from_millis(200), false));
        assert_eq!(target.counts(), (0, 1));
        for _ in 0..30 {
            h.failed();
        }
        assert_eq!(h.failed().0, Duration::from_secs(60));
        h.connected();
        assert_eq!(
            h.failed(),
            (Duration::from_millis(100), true),
            "reset by a success"
        );
        drop(h);
        assert_eq!(target.counts(), (0, 0));
    }

    #[test]
    fn requests_in_flight_weigh_until_their_body_is_done() {
        let h = Arc::new(Health::new(&Balancer::default(), Instant::now(), events()));
        h.connected();
        let idle = h.load_at(Instant::now());
        let a = h.start(Instant::now());
        let b = h.start(Instant::now());
        let busy = h.load_at(Instant::now());
        assert!(busy > 2.9 * idle, "{busy} vs {idle}");
        drop((a, b));
        assert!(h.load_at(Instant::now()) <= idle);
    }
}
