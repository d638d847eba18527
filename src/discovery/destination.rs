//! Linkerd's Destination API as a source of endpoints: one `Get` stream per target, shared by
//! every caller on every worker thread, each keeping the target's set as the controller last
//! said it. It owns the watches and their streams; what an update means is the pure
//! [`update`] module, the transport to the controller is `connect`. It never dials an
//! endpoint, and does not decide what a caller does without an answer (`[discovery] fallback`).
//!
//! The table of watches is bounded, since a client can invent target names: a watch nobody
//! resolved for [`IDLE`] ends, and when [`MAX_TARGETS`] are watched a new target is answered
//! [`Answer::Unavailable`]. A stream that fails is opened again with backoff while the last
//! known set keeps serving; the new stream's first update replaces the set.

pub(crate) mod connect;
mod stream;
mod update;

pub use crate::metrics::discovery::DestinationMetrics;
/// The controller streams' backoff and status text, shared with the policy watches.
pub(crate) use stream::{Backoff, describe};

use crate::client_tls::ClientTls;
use crate::config::Discovery;
use crate::discovery::EndpointSet;
use crate::route::Target;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use stream::Stream;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Targets watched at once.
pub const MAX_TARGETS: usize = 10_000;
/// A watch nobody resolved for this long ends.
pub const IDLE: Duration = Duration::from_secs(600);
/// How long a final answer (`InvalidArgument`, `FailedPrecondition`: the stream is not opened
/// again) stands; then the next resolve asks afresh.
const FINAL_ANSWER_TTL: Duration = Duration::from_secs(300);

/// What the controller says of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The target's endpoints; empty: the service exists with no endpoints now (no fallback).
    Endpoints(EndpointSet),
    /// The service does not exist.
    NoSuchService,
    /// No answer: the controller was not reached in time, or too many targets are watched.
    Unavailable(String),
}

/// The Destination API client: a table of per-target watches over one gRPC channel.
pub struct Destination {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: tonic::transport::Endpoint,
    connector: connect::Connector,
    /// Built at the first resolve, inside the runtime (the channel spawns its worker).
    channel: OnceLock<Channel>,
    context_token: Arc<str>,
    initial_timeout: Duration,
    metrics: DestinationMetrics,
    /// [`MAX_TARGETS`]; smaller in tests.
    max_targets: usize,
    watches: Mutex<HashMap<Target, Arc<Watch>>>,
    next_id: AtomicU64,
    /// The origin of `Watch::last_used`.
    epoch: Instant,
}

/// One target's watch: what is known, published by its task.
struct Watch {
    id: u64,
    started: Instant,
    known: watch::Receiver<Known>,
    /// Milliseconds from `Shared::epoch` to the last resolve.
    last_used: Arc<AtomicU64>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watch publishes.
#[derive(Clone, Debug, Default)]
struct Known {
    /// `None` until the controller has answered.
    answer: Option<Answer>,
    /// Why there is no answer yet.
    last_error: Option<String>,
}

impl Destination {
    pub fn new(
        config: &Discovery,
        tls: Arc<ClientTls>,
        metrics: DestinationMetrics,
    ) -> Destination {
        let (endpoint, connector) = connect::Connector::controller(
            &config.destination_addr,
            config.destination_name.as_deref(),
            tls,
            config.stream_initial_timeout,
            "http://linkerd-destination",
        );
        let shared = Shared {
            endpoint,
            connector,
            channel: OnceLock::new(),
            context_token: config.context_token.as_str().into(),
            initial_timeout: config.stream_initial_timeout,
            metrics,
            max_targets: MAX_TARGETS,
            watches: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        Destination {
            shared: Arc::new(shared),
        }
    }

    /// `target`'s endpoints as the controller last said, when it has said anything; starts
    /// the target's watch if none. No wait: [`Destination::resolve`] waits for a first answer.
    pub fn answered(&self, target: &Target) -> Option<Answer> {
        match self.watch(target) {
            Ok(watch) => watch.known.borrow().answer.clone(),
            Err(answer) => Some(answer),
        }
    }

    /// `target`'s endpoints as the controller last said; starts the target's watch if none,
    /// and waits for its first answer until `stream_initial_timeout` after the watch started.
    pub async fn resolve(&self, target: &Target) -> Answer {
        let watch = match self.watch(target) {
            Ok(w) => w,
            Err(answer) => return answer,
        };
        let mut known = watch.known.clone();
        let deadline = watch.started + self.shared.initial_timeout;
        let waited = tokio::time::timeout_at(deadline, known.wait_for(|k| k.answer.is_some()))
            .await
            .map(|r| r.map(|k| k.answer.clone()));
        match waited {
            Ok(Ok(Some(answer))) => answer,
            Ok(_) => Answer::Unavailable("the target's watch ended".into()),
            Err(_) => {
                let why = known.borrow().last_error.clone();
                let why = why.unwrap_or_else(|| "no answer yet".into());
                Answer::Unavailable(format!(
                    "Destination API, after {:?}: {why}",
                    self.shared.initial_timeout
                ))
            }
        }
    }

    /// Targets watched now.
    pub fn watched(&self) -> usize {
        self.shared.lock().len()
    }

    /// The target's watch, started if none; `Err` when the table is full.
    fn watch(&self, target: &Target) -> Result<Arc<Watch>, Answer> {
        let shared = &self.shared;
        let now = shared.now_ms();
        if let Some(w) = shared.lock().get(target) {
            w.last_used.store(now, Ordering::Relaxed);
            return Ok(w.clone());
        }
        let channel = shared.channel();
        let mut watches = shared.lock();
        if let Some(w) = watches.get(target) {
            return Ok(w.clone());
        }
        let limit = shared.max_targets;
        if watches.len() >= limit {
            tracing::debug!(%target, limit, "too many targets watched");
            return Err(Answer::Unavailable(format!(
                "{limit} targets watched already"
            )));
        }
        let (tx, known) = watch::channel(Known::default());
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let last_used = Arc::new(AtomicU64::new(now));
        let stream = Stream {
            channel,
            target: target.clone(),
            context_token: shared.context_token.clone(),
            metrics: shared.metrics.clone(),
        };
        let idle = idle(last_used.clone(), shared.epoch);
        let task = tokio::spawn(run(Arc::downgrade(shared), id, stream, tx, idle));
        let w = Arc::new(Watch {
            id,
            started: Instant::now(),
            known,
            last_used,
            task: task.abort_handle(),
        });
        watches.insert(target.clone(), w.clone());
        Ok(w)
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Arc<Watch>>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| {
                self.endpoint
                    .connect_with_connector_lazy(self.connector.clone())
            })
            .clone()
    }
}

/// A watch's task: follows the target until nobody resolves it for [`IDLE`], then leaves the
/// table. A final answer (no stream again) stands for [`FINAL_ANSWER_TTL`] at most.
async fn run(
    shared: Weak<Shared>,
    id: u64,
    stream: Stream,
    tx: watch::Sender<Known>,
    idle: impl Future<Output = ()>,
) {
    tokio::pin!(idle);
    tokio::select! {
        () = stream.follow(&tx) => {
            tokio::select! {
                () = tokio::time::sleep(FINAL_ANSWER_TTL) => {}
                () = &mut idle => {}
            }
        }
        () = &mut idle => {}
    }
    tracing::debug!(target = %stream.target, "destination watch ended");
    if let Some(shared) = shared.upgrade() {
        let mut watches = shared.lock();
        if watches.get(&stream.target).is_some_and(|w| w.id == id) {
            watches.remove(&stream.target);
        }
    }
}

/// Completes once nobody has resolved the target for [`IDLE`].
async fn idle(last_used: Arc<AtomicU64>, epoch: Instant) {
    loop {
        let last = epoch + Duration::from_millis(last_used.load(Ordering::Relaxed));
        if Instant::now() >= last + IDLE {
            return;
        }
        tokio::time::sleep_until(last + IDLE).await;
    }
}

#[cfg(test)]
mod tests;
