//! Worker threads for the gateway port: with `threads = N` (N > 1), N − 1 threads besides the
//! main one, each running a current-thread runtime with its own upstream (per-endpoint
//! connections), so that a connection and the upstream connections it uses live on one thread,
//! as nginx's and HAProxy's workers do, without the work-stealing scheduler's cross-thread
//! wake-ups. Shared across workers: the rules, identity, metrics, discovery (one Destination
//! stream per target) and the connection limit, so `max_connections` and the drain hold for
//! the whole process.
//!
//! The main thread accepts every connection and serves it itself unless it is busy: a worker
//! takes the connection when the main thread holds more than its slack of connections beyond
//! the least-loaded worker, or (the main thread busy over [`BUSY`] of the last [`WINDOW`]) any
//! more than that worker. The slack is [`SLACK`], or more while connections come and go: as
//! many as ended on the main thread in the last [`TURNOVER`], up to [`MAX_SLACK`]. Balancing by
//! count is for connections that stay (a Linkerd source's HTTP/2 connection lives for hours);
//! connections that end within a few milliseconds never pile up on one thread, and splitting
//! them cost two threads 1.07× one's CPU per full handshake (2.3 context switches each instead
//! of 1.2) at a load one thread carried at 60 % of its time. Threads that share the work while
//! it fits on one each sleep and wake for their part of it: with the kernel spreading
//! connections over a socket per worker (`SO_REUSEPORT`), two threads spent 1.10× the CPU per
//! request of one on the no-hint path (3.8 context switches per request instead of 2.7), for
//! load that one core carried at half its time. A connection handed over leaves the main
//! thread's epoll for the worker's (two `epoll_ctl`s), and wakes the worker if it sleeps.

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
/// The span over which connections that ended on the main thread widen its slack.
pub const TURNOVER: Duration = Duration::from_millis(100);
/// The widest the slack gets: which connections will stay cannot be told at accept, so a
/// burst of long-lived ones amid short ones lands at most this many beyond the least-loaded
/// worker on the main thread (and none once it is busy).
pub const MAX_SLACK: usize = 64;

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
    /// The current window: its start, the runtime's busy time then, and the main thread's
    /// connections then.
    window: (Instant, Duration, usize),
    /// Connections kept here since the window began.
    kept: usize,
    /// The last window's verdict: how many connections the main thread may hold beyond the
    /// least-loaded worker.
    slack: usize,
}

/// What [`Spread::place`] did with a connection.
pub enum Placed {
    Handed,
    /// Served here, counted by the [`Active`].
    Here(TcpStream, OwnedSemaphorePermit, Active),
}

impl Spread {
    /// Hands `tcp` to the least-loaded worker when the main thread holds more than its
    /// [`slack`] beyond it; else it stays with the caller.
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
        let slack = self.slack();
        let here = self.here.load(Ordering::Relaxed);
        let Some((i, _)) = least.filter(|&(_, n)| here > n + slack) else {
            return Placed::Here(tcp, permit, self.keep());
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
            Ok(tcp) => Placed::Here(tcp, h.permit, self.keep()),
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be served");
                Placed::Handed
            }
        }
    }

    /// A connection served here, counted while it lives.
    fn keep(&mut self) -> Active {
        self.kept += 1;
        Active::of(&self.here)
    }

    /// The main thread's slack, measured again once a [`WINDOW`] has passed: the runtime's
    /// busy share of it, and how many of the main thread's connections ended in it.
    fn slack(&mut self) -> usize {
        let now = Instant::now();
        let (start, before, held) = self.window;
        let elapsed = now.duration_since(start);
        if elapsed < WINDOW {
            return self.slack;
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let workers = metrics.num_workers().max(1);
        let busy: Duration = (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum();
        let share =
            busy.saturating_sub(before).as_secs_f64() / (elapsed.as_secs_f64() * workers as f64);
        let here = self.here.load(Ordering::Relaxed);
        let ended = (held + self.kept).saturating_sub(here);
        self.window = (now, busy, here);
        self.kept = 0;
        self.slack = slack(share > BUSY, ended, elapsed);
        self.slack
    }
}

/// How many connections the main thread may hold beyond the least-loaded worker: none when it
/// is `busy`, else [`SLACK`], or as many as end in a [`TURNOVER`] at the rate that `ended` of
/// them did in `elapsed`, up to [`MAX_SLACK`].
pub fn slack(busy: bool, ended: usize, elapsed: Duration) -> usize {
    if busy {
        return 0;
    }
    let per_turnover = ended as f64 * TURNOVER.as_secs_f64() / elapsed.as_secs_f64().max(1e-3);
    (per_turnover as usize).clamp(SLACK, MAX_SLACK)
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
            window: (Instant::now(), Duration::ZERO, 0),
            kept: 0,
            slack: SLACK,
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
    use super::{MAX_SLACK, SLACK, TURNOVER, WINDOW, slack};
    use std::time::Duration;

    /// A few connections stay on the main thread while it is not busy, and more while they
    /// come and go; none beyond the least-loaded worker's when it is busy.
    #[test]
    fn the_main_thread_keeps_what_it_can_carry() {
        // Connections that stay (none ended): balanced by count beyond the slack.
        assert_eq!(slack(false, 0, WINDOW), SLACK);
        assert_eq!(slack(false, 0, Duration::from_secs(60)), SLACK);
        // 2,000 short connections a second: 200 end in a turnover; up to the widest slack
        // stay here.
        assert_eq!(slack(false, 20, WINDOW), MAX_SLACK);
        assert_eq!(slack(false, 3, WINDOW), 30);
        // The same count over a long quiet spell is a slow rate: the slack is the floor.
        assert_eq!(slack(false, 20, Duration::from_secs(10)), SLACK);
        assert_eq!(slack(false, 40, TURNOVER), 40);
        // Busy: any more than the least-loaded worker go to it, however short they are.
        assert_eq!(slack(true, 0, WINDOW), 0);
        assert_eq!(slack(true, 20, WINDOW), 0);
    }
}
