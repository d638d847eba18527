//! Worker threads for the gateway port: with `threads = N` (N > 1), N − 1 threads besides the
//! main one, each running a current-thread runtime with its own accept loop on the same
//! listening socket and its own upstream (per-endpoint connections), so that a connection and
//! the upstream connections it uses live on one thread, as nginx's and HAProxy's workers do,
//! without the work-stealing scheduler's cross-thread wake-ups. Shared across workers: the
//! rules, identity, metrics, discovery (one Destination stream per target) and the connection
//! limit, so `max_connections` and the drain hold for the whole process.
//!
//! The threads accept from one listening socket (a duplicate of its descriptor each): the
//! kernel hands each connection to whichever worker accepts first, which is the least busy.

use crate::server::{GatewayPort, accept_loop};
use crate::{Gateway, Listeners, Port};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The worker threads, until [`Workers::finish`].
pub struct Workers {
    finished: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads on the gateway port's socket, which this thread keeps accepting
    /// on too; `None` with no workers (or when the socket cannot be shared: this thread alone).
    pub fn on_gateway_port(
        gw: &Arc<Gateway>,
        listeners: &mut Listeners,
        n: usize,
    ) -> Option<Workers> {
        if n == 0 {
            return None;
        }
        let at = listeners
            .ports
            .iter()
            .position(|(p, _)| *p == Port::Gateway)?;
        let (port, listener) = listeners.ports.swap_remove(at);
        let shared = listener.into_std().and_then(|std| {
            let workers = Workers::start(gw, &std, n);
            TcpListener::from_std(std).map(|l| (workers, l))
        });
        match shared {
            Ok((workers, listener)) => {
                listeners.ports.push((port, listener));
                Some(workers)
            }
            Err(e) => {
                tracing::error!(error = %e, "the gateway port's socket cannot be shared: not serving");
                None
            }
        }
    }

    /// Starts `n` worker threads accepting on `listener` (non-blocking, as tokio's
    /// `into_std` leaves it). A thread that cannot start is logged; the others serve.
    pub fn start(gw: &Arc<Gateway>, listener: &std::net::TcpListener, n: usize) -> Workers {
        let (finished, done) = watch::channel(false);
        let threads = (1..=n)
            .filter_map(|i| {
                let socket = listener
                    .try_clone()
                    .map_err(|e| tracing::error!(error = %e, "worker {i}: no listener"))
                    .ok()?;
                let (gw, done) = (gw.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("crossgate-worker-{i}"))
                    .spawn(move || worker(gw, socket, done))
                    .map_err(|e| tracing::error!(error = %e, "worker {i} did not start"))
                    .ok()
            })
            .collect();
        Workers { finished, threads }
    }

    /// Ends the workers once the drain is over (their connections closed or cut), and waits
    /// for their threads.
    pub async fn finish(self) {
        let _ = self.finished.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// One worker: its runtime, accept loop, upstream and the upstream's idle sweep, until `done`.
fn worker(gw: Arc<Gateway>, socket: std::net::TcpListener, mut done: watch::Receiver<bool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "worker runtime did not start"),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "worker listener"),
        };
        let upstream = Arc::new(gw.upstream.sibling());
        let port = Arc::new(GatewayPort::with_upstream(gw.clone(), upstream.clone()));
        let permits = gw.lifecycle.connections.clone();
        tokio::spawn(accept_loop(
            listener,
            port,
            permits,
            gw.lifecycle.stopping(),
        ));
        let sweeper = tokio::spawn(upstream.sweep_forever());
        let _ = done.wait_for(|d| *d).await;
        sweeper.abort();
    });
}
