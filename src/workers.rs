//! Worker threads for the gateway port: with `threads = N` (N > 1), N − 1 threads besides the
//! main one, each running a current-thread runtime with its own accept loop on the same
//! listening socket and its own upstream (per-endpoint connections), so that a connection and
//! the upstream connections it uses live on one thread, as nginx's and HAProxy's workers do,
//! without the work-stealing scheduler's cross-thread wake-ups. Shared across workers: the
//! rules, identity, metrics, discovery (one Destination stream per target) and the connection
//! limit, so `max_connections` and the drain hold for the whole process.
//!
//! Each worker listens on a socket of its own, bound to the gateway port with `SO_REUSEPORT`
//! beside the main thread's (which gets the option once bound, so that another program cannot
//! join the port before crossgate chooses to): the kernel hands each new connection to one
//! socket by its address hash, so a connection wakes one thread. One socket shared by all
//! (a duplicate descriptor each) woke every thread's epoll per connection, and all but one
//! found nothing to accept: 4.0 context switches per request instead of 2.6 on the
//! no-hint path (BENCHMARKS.md). A worker whose socket cannot be bound shares the main one.

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
        if let Err(e) = socket2::SockRef::from(&listener).set_reuse_port(true) {
            tracing::debug!(error = %e, "SO_REUSEPORT: the workers share the gateway port's socket");
        }
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
                let socket = own_socket(listener)
                    .inspect_err(|e| tracing::debug!(error = %e, "worker {i}: sharing the socket"))
                    .or_else(|_| listener.try_clone())
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

/// A listening socket of the worker's own on `listener`'s address, beside it in the port's
/// `SO_REUSEPORT` group.
fn own_socket(listener: &std::net::TcpListener) -> std::io::Result<std::net::TcpListener> {
    crate::listeners::listening_socket(listener.local_addr()?, true)
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

#[cfg(test)]
mod tests {
    use super::own_socket;

    /// A worker's socket joins the main one's port, and the kernel spreads new connections
    /// over both (with one shared socket every worker would be woken for each); a socket
    /// that does not ask to join cannot bind the port.
    #[test]
    fn a_workers_socket_takes_its_share_of_the_port() {
        let primary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&primary)
            .set_reuse_port(true)
            .unwrap();
        let own = own_socket(&primary).unwrap();
        let addr = primary.local_addr().unwrap();
        assert_eq!(own.local_addr().unwrap(), addr);
        // Anything that does not ask for SO_REUSEPORT (a second crossgate) is still refused.
        let other = std::net::TcpListener::bind(addr).map(drop);
        assert_eq!(
            other.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AddrInUse)
        );
        primary.set_nonblocking(true).unwrap();
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let accepted = |l: &std::net::TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
        let (mut a, mut b) = (0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while a + b < clients.len() && std::time::Instant::now() < deadline {
            a += accepted(&primary);
            b += accepted(&own);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(a + b, clients.len());
        assert!(a > 0 && b > 0, "main socket {a}, worker's {b}");
    }
}
