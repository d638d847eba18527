//! A server's `HTTPLocalRateLimitPolicy` applied at the gateway, keyed by the *caller's*
//! identity, as linkerd2-proxy's `LocalRateLimit` applies it to its direct clients: `total`
//! for every request, then an override's limit for the identities it lists, else
//! `identity`'s limit per identity. Each limit is a bucket of `rps` requests refilled at `rps`
//! per second (GCRA, as the `governor` crate the proxy uses: a burst of `rps`). A request the
//! total admits uses a cell of it even when a later limit refuses it, as in the proxy. The
//! buckets are this gateway's own: replicas do not share them. Pure arithmetic over the
//! instant given; the per-identity table is bounded.

use super::{Labels, Meta};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identities with a bucket of their own; past it, new ones share one overflow bucket until
/// full buckets (idle callers) are dropped.
pub const MAX_IDENTITIES: usize = 10_000;

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Total,
    PerIdentity,
    Override,
}

impl LimitKind {
    /// The `ratelimit_scope` label: `total`, or `identity` (an override is one too).
    pub fn scope(self) -> &'static str {
        match self {
            LimitKind::Total => "total",
            LimitKind::PerIdentity | LimitKind::Override => "identity",
        }
    }
}

/// A request over a limit: what the caller is told and what is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub labels: Labels,
    /// The `HTTPLocalRateLimitPolicy`, when the controller named it.
    pub limit: Option<Arc<Meta>>,
    pub kind: LimitKind,
    pub rps: u32,
    /// When the bucket will take the request.
    pub retry_after: Duration,
}

impl RateLimited {
    /// The proxy's words: `per-identity rate limit exceeded: 5rps`.
    pub fn message(&self) -> String {
        let which = match self.kind {
            LimitKind::Total => "total",
            LimitKind::PerIdentity => "per-identity",
            LimitKind::Override => "override",
        };
        format!("{which} rate limit exceeded: {}rps", self.rps)
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// One bucket: its theoretical arrival time, in nanoseconds since the limit's epoch.
#[derive(Debug)]
struct Gcra {
    rps: u32,
    /// Nanoseconds per cell.
    period: u64,
    /// Cells beyond the first, in nanoseconds.
    tau: u64,
    tat: AtomicU64,
}

impl Gcra {
    fn new(rps: u32) -> Gcra {
        let period = (1_000_000_000 / u64::from(rps.max(1))).max(1);
        Gcra {
            rps,
            period,
            tau: period * u64::from(rps.max(1) - 1),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a cell at `now`, or says how long until one is free.
    fn check(&self, now: u64) -> Result<(), u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (next, wait) = step(tat, now, self.period, self.tau);
            if let Some(wait) = wait {
                return Err(wait);
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

/// GCRA: the bucket's next `tat`, or how long to wait.
fn step(tat: u64, now: u64, period: u64, tau: u64) -> (u64, Option<u64>) {
    let earliest = tat.saturating_sub(tau);
    if now < earliest {
        return (tat, Some(earliest - now));
    }
    (tat.max(now) + period, None)
}

/// A bucket per identity, bounded.
#[derive(Debug)]
struct Keyed {
    rps: u32,
    period: u64,
    tau: u64,
    tats: Mutex<HashMap<Arc<str>, u64>>,
}

impl Keyed {
    fn check(&self, id: &str, now: u64) -> Result<(), u64> {
        let take = |tat: &mut u64| {
            let (next, wait) = step(*tat, now, self.period, self.tau);
            match wait {
                Some(wait) => Err(wait),
                None => {
                    *tat = next;
                    Ok(())
                }
            }
        };
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = tats.get_mut(id) {
            return take(tat);
        }
        if tats.len() >= MAX_IDENTITIES {
            // A bucket whose tat has passed is full: dropping it changes nothing.
            tats.retain(|_, tat| *tat > now);
        }
        // Still full: the overflow bucket (the empty key; no identity is empty).
        let key = if tats.len() < MAX_IDENTITIES { id } else { "" };
        if let Some(tat) = tats.get_mut(key) {
            return take(tat);
        }
        let mut tat = 0;
        let taken = take(&mut tat);
        tats.insert(key.into(), tat);
        taken
    }
}

/// The server's limits and their buckets.
#[derive(Debug)]
pub struct LocalRateLimit {
    meta: Option<Arc<Meta>>,
    epoch: Instant,
    total: Option<Gcra>,
    per_identity: Option<Keyed>,
    /// Identity -> the override's bucket (shared by the identities it lists).
    overrides: HashMap<Arc<str>, Arc<Gcra>>,
}

impl LocalRateLimit {
    /// No limit.
    pub fn none() -> LocalRateLimit {
        LocalRateLimit::new(None, Instant::now(), None, None, Vec::new())
    }

    /// Limits in requests per second (0 or `None`: no such limit); `overrides` pairs a limit
    /// with the identities it applies to (DNS-like ones in normal form). Buckets start full at
    /// `epoch`.
    pub fn new(
        meta: Option<Arc<Meta>>,
        epoch: Instant,
        total: Option<u32>,
        per_identity: Option<u32>,
        overrides: Vec<(u32, Vec<Arc<str>>)>,
    ) -> LocalRateLimit {
        let per_identity = per_identity.filter(|r| *r > 0).map(|rps| {
            let g = Gcra::new(rps);
            Keyed {
                rps,
                period: g.period,
                tau: g.tau,
                tats: Mutex::new(HashMap::new()),
            }
        });
        let mut table = HashMap::new();
        for (rps, ids) in overrides.into_iter().filter(|(r, _)| *r > 0) {
            let bucket = Arc::new(Gcra::new(rps));
            for id in ids {
                table.entry(id).or_insert_with(|| bucket.clone());
            }
        }
        LocalRateLimit {
            meta,
            epoch,
            total: total.filter(|r| *r > 0).map(Gcra::new),
            per_identity,
            overrides: table,
        }
    }

    /// The `HTTPLocalRateLimitPolicy` named by the controller, if any.
    pub fn meta(&self) -> Option<Arc<Meta>> {
        self.meta.clone()
    }

    /// True when some limit is set.
    pub fn is_limited(&self) -> bool {
        self.total.is_some() || self.per_identity.is_some() || !self.overrides.is_empty()
    }

    /// Takes a request of caller `id` at `now`: which limit refused it, its rate, and when
    /// the bucket will take one.
    pub fn check(&self, id: &str, now: Instant) -> Result<(), (LimitKind, u32, Duration)> {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let refused = |kind, rps, wait| (kind, rps, Duration::from_nanos(wait));
        if let Some(total) = &self.total {
            total
                .check(now)
                .map_err(|w| refused(LimitKind::Total, total.rps, w))?;
        }
        if let Some(limit) = self.overrides.get(id) {
            return limit
                .check(now)
                .map_err(|w| refused(LimitKind::Override, limit.rps, w));
        }
        if let Some(keyed) = &self.per_identity {
            keyed
                .check(id, now)
                .map_err(|w| refused(LimitKind::PerIdentity, keyed.rps, w))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
