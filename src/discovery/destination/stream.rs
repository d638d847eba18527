//! One watch's stream: `Get` for its target, each update decoded and applied to the set and
//! the answer published, the stream opened again with backoff when it fails, until the
//! controller says something after which asking again is pointless. Counts updates and keeps
//! the watch's place in `discovery_streams`.

use super::update::{Set, apply, decode};
use super::{DestinationMetrics, Known};
use crate::route::Target;
use linkerd2_proxy_api::destination as api;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What one watch needs to stream its target.
pub(super) struct Stream {
    pub(super) channel: Channel,
    pub(super) target: Target,
    pub(super) context_token: Arc<str>,
    pub(super) metrics: DestinationMetrics,
}

impl Stream {
    /// Streams the target, opening the stream again with backoff, until the controller gives
    /// an answer after which asking again is pointless.
    pub(super) async fn follow(&self, tx: &watch::Sender<Known>) {
        let target = &self.target;
        let mut set = Set::default();
        let mut backoff = Backoff::default();
        let mut gauge = StreamGauge::new(&self.metrics);
        let mut first = true;
        let mut failures = 0u32;
        loop {
            gauge.set(State::Reconnecting);
            let status = match self.open().await {
                Err(status) => status,
                Ok(mut updates) => {
                    gauge.set(State::Active);
                    tracing::debug!(%target, "destination stream started");
                    set.stream_started();
                    loop {
                        let up = match updates.message().await {
                            Ok(Some(up)) => up,
                            Ok(None) => break tonic::Status::unavailable("stream ended"),
                            Err(status) => break status,
                        };
                        backoff.reset();
                        failures = 0;
                        let Some(change) = decode(up) else { continue };
                        if std::mem::take(&mut first) {
                            tracing::debug!(%target, op = change.op(), "first destination update");
                        }
                        self.count(change.op());
                        if apply(&mut set, change) {
                            tx.send_replace(Known {
                                answer: set.answer(),
                                last_error: None,
                            });
                        }
                    }
                }
            };
            let why = describe(&status);
            failures += 1;
            if failures == 1 {
                tracing::warn!(%target, grpc_status = status.code() as i32, error = %why, "destination stream failed");
            } else {
                tracing::debug!(%target, grpc_status = status.code() as i32, error = %why, failures, "destination stream failed again");
            }
            use tonic::Code;
            match status.code() {
                Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound => {
                    set.does_not_exist();
                    tx.send_replace(Known {
                        answer: set.answer(),
                        last_error: None,
                    });
                    if status.code() != Code::NotFound {
                        return;
                    }
                }
                _ => tx.send_modify(|k| k.last_error = Some(why)),
            }
            gauge.set(State::Reconnecting);
            tokio::time::sleep(backoff.next()).await;
        }
    }

    async fn open(&self) -> Result<tonic::Streaming<api::Update>, tonic::Status> {
        let mut client = api::destination_client::DestinationClient::new(self.channel.clone());
        let get = api::GetDestination {
            scheme: "k8s".into(),
            path: self.target.to_string(),
            context_token: self.context_token.to_string(),
        };
        Ok(client.get(get).await?.into_inner())
    }

    fn count(&self, op: &str) {
        let m = &self.metrics;
        match op {
            "add" => m.add.inc(),
            "remove" => m.remove.inc(),
            _ => m.no_endpoints.inc(),
        };
    }
}

/// A status as one line: code, message, and the chain of causes, each by its `Display`.
pub(crate) fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{} ({})", status.code() as i32, status.code());
    if !status.message().is_empty() {
        out.push_str(": ");
        out.push_str(status.message());
    }
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Reconnecting,
}

/// The watch's place in `discovery_streams`, given back when the watch ends or is aborted.
struct StreamGauge<'a> {
    metrics: &'a DestinationMetrics,
    state: Option<State>,
}

impl<'a> StreamGauge<'a> {
    fn new(metrics: &'a DestinationMetrics) -> StreamGauge<'a> {
        StreamGauge {
            metrics,
            state: None,
        }
    }

    fn gauge(&self, state: State) -> &prometheus_client::metrics::gauge::Gauge {
        match state {
            State::Active => &self.metrics.active,
            State::Reconnecting => &self.metrics.reconnecting,
        }
    }

    fn set(&mut self, state: State) {
        if self.state == Some(state) {
            return;
        }
        if let Some(old) = self.state.replace(state) {
            self.gauge(old).dec();
        }
        self.gauge(state).inc();
    }
}

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        if let Some(old) = self.state {
            self.gauge(old).dec();
        }
    }
}

/// 100 ms doubling to 10 s, each wait drawn between half and all of its step.
pub(crate) struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { step: BACKOFF_MIN }
    }
}

impl Backoff {
    pub(crate) fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(BACKOFF_MAX);
        let half = step / 2;
        half + Duration::from_nanos(random() % (half.as_nanos() as u64 + 1))
    }
}

/// A random number for jitter and spreading connects; not for secrets.
pub(super) fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}
