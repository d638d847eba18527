//! Worker threads for the gateway port: with `threads = N` (N > 1), N − 1 threads besides the
//! main one, each running a current-thread runtime with its own upstream (per-endpoint
//! connections), so that a connection and the upstream connections it uses live on one thread,
//! as nginx's and HAProxy's workers do, without the work-stealing scheduler's cross-thread
//! wake-ups. Shared across workers: the rules, identity, metrics, discovery (one Destination
//! stream per target) and the connection limit, so `max_connections` and the drain hold for
//! the whole process.
//!
//! The main thread accepts every connection and serves it itself unless it is busy: a worker
//! takes the connection when the main thread holds more than [`SLACK`] connections beyond the
//! least-loaded worker, or (the main thread busy over [`BUSY`] of the last [`WINDOW`]) any
//! more than that worker. Threads that share the work while it fits on one each sleep and wake
//! for their part of it: with the kernel spreading connections over a socket per worker
//! (`SO_REUSEPORT`), two threads spent 1.10× the CPU per request of one on the no-hint path
//! (3.8 context switches per request instead of 2.7), for load that one core carried at half
//! its time. A connection handed over leaves the main thread's epoll for the worker's (two
//! `epoll_ctl`s), and wakes the worker if it sleeps.

use crate::Gateway;
use crate::server::{GatewayPort, spawn_connection};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;

/// Connections the main thread may hold beyond the least-loaded worker before it hands one
/// over, while it is not busy: short connections arriving a few at a time stay on one thread.
pub const SLACK: usize = 4;
/// The share of its time the main thread may spend running tasks before new connections go
/// to whichever thread holds the fewest.
pub const BUSY: f64 = 0.75;
/// How often the main thread's busy share is measured.
pub const WINDOW: Duration = Duration::from_millis(10);

/// The worker threads, until [`Workers::finish`].
pub struct Workers {
    finished: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A connection on its way to a worker, with its permit of the port's connection limit.
struct Handed {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// One of a thread's connections: counted while it lives.
pub struct Active(Arc<AtomicUsize>);

impl Active {
    fn of(count: &Arc<AtomicUsize>) -> Active {
        count.fetch_add(1, Ordering::Relaxed);
        Active(count.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker as the main thread's accept loop sees it.
struct Link {
    to: mpsc::UnboundedSender<Handed>,
    active: Arc<AtomicUsize>,
}

/// Where the main thread's accept loop places each connection: here or on a worker.
pub struct Spread {
    links: Vec<Link>,
    here: Arc<AtomicUsize>,
    /// The current window: its start, the runtime's busy time then, and the last verdict.
    window: (Instant, Duration, bool),
}

/// What [`Spread::place`] did with a connection.
pub enum Placed {
    Handed,
    /// Served here, counted by the [`Active`].
    Here(TcpStream, OwnedSemaphorePermit, Active),
}

impl Spread {
    /// Hands `tcp` to a worker when [`hand_over`] says so; else it stays with the caller.
    pub fn place(
        &mut self,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Placed {
        let least = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.active.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n);
        let here = self.here.load(Ordering::Relaxed);
        let Some((i, _)) = least.filter(|&(_, n)| hand_over(here, n, self.busy())) else {
            return Placed::Here(tcp, permit, Active::of(&self.here));
        };
        let link = &self.links[i];
        // Out of this thread's epoll, to be registered with the worker's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be handed to a worker");
                return Placed::Handed;
            }
        };
        link.active.fetch_add(1, Ordering::Relaxed);
        let Err(mpsc::error::SendError(h)) = link.to.send(Handed { tcp, peer, permit }) else {
            return Placed::Handed;
        };
        // The worker has ended (its runtime did not start): it gets no more, and this
        // connection is served here after all.
        self.links.swap_remove(i);
        match TcpStream::from_std(h.tcp) {
            Ok(tcp) => Placed::Here(tcp, h.permit, Active::of(&self.here)),
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be served");
                Placed::Handed
            }
        }
    }

    /// Whether this runtime spent more than [`BUSY`] of the last window running tasks.
    fn busy(&mut self) -> bool {
        let now = Instant::now();
        let (start, before, verdict) = self.window;
        if now.duration_since(start) < WINDOW {
            return verdict;
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let workers = metrics.num_workers().max(1);
        let busy: Duration = (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum();
        let share = busy.saturating_sub(before).as_secs_f64()
            / (now.duration_since(start).as_secs_f64() * workers as f64);
        self.window = (now, busy, share > BUSY);
        self.window.2
    }
}

/// Whether a new connection goes to the least-loaded worker, holding `least` connections,
/// rather than staying on the main thread, holding `here`: beyond [`SLACK`] more, or when the
/// main thread is `busy`, any more.
pub fn hand_over(here: usize, least: usize, busy: bool) -> bool {
    let slack = if busy { 0 } else { SLACK };
    here > least + slack
}

impl Workers {
    /// Starts `n` worker threads for the gateway port, and the [`Spread`] with which the main
    /// thread's accept loop hands them connections; `None` with no workers.
    pub fn on_gateway_port(gw: &Arc<Gateway>, n: usize) -> Option<(Workers, Spread)> {
        if n == 0 {
            return None;
        }
        let (finished, done) = watch::channel(false);
        let (threads, links) = (1..=n)
            .filter_map(|i| {
                let (to, from) = mpsc::unbounded_channel();
                let active = Arc::new(AtomicUsize::new(0));
                let (gw, done, count) = (gw.clone(), done.clone(), active.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("crossgate-worker-{i}"))
                    .spawn(move || worker(gw, from, count, done))
                    .map_err(|e| tracing::error!(error = %e, "worker {i} did not start"))
                    .ok()?;
                Some((thread, Link { to, active }))
            })
            .unzip();
        let spread = Spread {
            links,
            here: Arc::new(AtomicUsize::new(0)),
            window: (Instant::now(), Duration::ZERO, false),
        };
        Some((Workers { finished, threads }, spread))
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

/// One worker: its runtime, the connections handed to it, its upstream and the upstream's
/// idle sweep, until `done`.
fn worker(
    gw: Arc<Gateway>,
    mut handed: mpsc::UnboundedReceiver<Handed>,
    active: Arc<AtomicUsize>,
    mut done: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "worker runtime did not start"),
    };
    runtime.block_on(async move {
        let upstream = Arc::new(gw.upstream.sibling());
        let port = Arc::new(GatewayPort::with_upstream(gw.clone(), upstream.clone()));
        tokio::spawn(async move {
            while let Some(h) = handed.recv().await {
                // Counted by the main thread when it handed the connection over.
                let counted = Active(active.clone());
                match TcpStream::from_std(h.tcp) {
                    Ok(tcp) => spawn_connection(&port, tcp, h.peer, h.permit, Some(counted)),
                    Err(e) => tracing::warn!(error = %e, "a handed connection could not be served"),
                }
            }
        });
        let sweeper = tokio::spawn(upstream.sweep_forever());
        let _ = done.wait_for(|d| *d).await;
        sweeper.abort();
    });
}

#[cfg(test)]
mod tests {
    use super::{SLACK, hand_over};

    /// A few connections stay on the main thread; beyond the slack, or when it is busy, the
    /// least-loaded thread takes the next, the main thread when tied.
    #[test]
    fn the_main_thread_keeps_what_it_can_carry() {
        assert!(!hand_over(0, 0, false));
        assert!(!hand_over(SLACK, 0, false));
        assert!(hand_over(SLACK + 1, 0, false));
        assert!(!hand_over(SLACK + 3, 3, false));
        assert!(hand_over(1, 0, true));
        assert!(!hand_over(2, 2, true));
        assert!(!hand_over(0, 0, true));
    }
}
