//! What the admin port knows of one connection's requests: how many are in flight and since
//! when it has waited for a complete head. The idle timeout, the head deadline and the
//! probation at the connection cap are decided from it in `admin`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Requests in flight on one admin connection, and when the last one ended (or the
/// connection was accepted): the time it has waited for a complete head.
pub(super) struct Requests {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Requests {
    pub(super) fn new(now: Instant) -> Requests {
        Requests {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(now),
        }
    }

    /// A complete head arrived: the request is in flight until the guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    pub(super) fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// No request in flight, and none ended since `last`.
    pub(super) fn idle_since(&self, last: Instant) -> bool {
        self.in_flight() == 0 && self.last() == last
    }
}

pub(super) struct RequestGuard(Arc<Requests>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
