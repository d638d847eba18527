//! The gateway's lifecycle: serving or not (`/ready`), draining, and the connection permits
//! whose return tells that the drain is complete.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Semaphore, watch};

pub struct Lifecycle {
    serving: AtomicBool,
    stop: watch::Sender<bool>,
    /// Permits for open gateway connections; all returned means drained.
    pub connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Lifecycle {
    pub fn new(max_connections: usize) -> Lifecycle {
        Lifecycle {
            serving: AtomicBool::new(false),
            stop: watch::channel(false).0,
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        }
    }

    /// Accepting and not draining (the credentials are checked by the caller).
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    pub fn start_serving(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }

    /// `/ready` turns 503 while connections are still accepted and served: the first step of
    /// shutdown, so that load balancers stop sending before anything is refused.
    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::Relaxed);
    }

    /// Stops serving: `/ready` turns 503 and every [`Lifecycle::stopping`] receiver sees true
    /// (the accept loop ends, HTTP connections shut down gracefully).
    pub fn begin_drain(&self) {
        self.stop_serving();
        let _ = self.stop.send(true);
    }

    /// A receiver that turns true when the gateway begins to drain.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Completes when every connection permit is back; the number still open if `deadline`
    /// passes first.
    pub async fn drained(&self, deadline: std::time::Duration) -> Result<(), usize> {
        let all = self.max_connections as u32;
        match tokio::time::timeout(deadline, self.connections.acquire_many(all)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.max_connections - self.connections.available_permits()),
        }
    }
}
