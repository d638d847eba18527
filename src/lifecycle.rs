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
    /// Permits for open passthrough connections (none without the port), drained alike.
    pub passthrough: Arc<Semaphore>,
    max_passthrough: usize,
}

impl Lifecycle {
    pub fn new(max_connections: usize) -> Lifecycle {
        Lifecycle::with_passthrough(max_connections, 0)
    }

    /// With `max_passthrough` permits for the passthrough port.
    pub fn with_passthrough(max_connections: usize, max_passthrough: usize) -> Lifecycle {
        Lifecycle {
            serving: AtomicBool::new(false),
            stop: watch::channel(false).0,
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            passthrough: Arc::new(Semaphore::new(max_passthrough)),
            max_passthrough,
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
        let both = async {
            let gateway = self.connections.acquire_many(self.max_connections as u32);
            let passthrough = self.passthrough.acquire_many(self.max_passthrough as u32);
            tokio::join!(gateway, passthrough)
        };
        match tokio::time::timeout(deadline, both).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.max_connections - self.connections.available_permits()
                + self.max_passthrough
                - self.passthrough.available_permits()),
        }
    }
}

/// Raises the open-files soft limit to the hard limit and checks it against what the caps can
/// hold open: two descriptors per gateway connection (client and upstream), the admin cap, and
/// a reserve for listeners, DNS and files. Logged either way, so an operator sees the numbers;
/// the admin cap is what keeps a flood on the admin port from taking the data plane's share.
pub fn check_fd_limit(server: &crate::config::Server) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
            limit = getrlimit(Resource::Nofile);
        }
    }
    let needed = 2 * server.max_connections as u64 + server.admin_max_connections as u64 + 64;
    match limit.current {
        Some(n) if n < needed => tracing::warn!(
            fd_limit = n,
            needed,
            max_connections = server.max_connections,
            admin_max_connections = server.admin_max_connections,
            "the open-files limit is below what the connection caps can hold open; lower \
             [server] max_connections or raise the limit (ulimit -n, LimitNOFILE)"
        ),
        n => tracing::info!(
            fd_limit = n,
            needed,
            "open-files limit covers the connection caps"
        ),
    }
    limit.current
}
