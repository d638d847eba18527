//! Linkerd's policy controller as the source of target pods' inbound policies: one
//! `InboundServerPolicies.WatchPort` stream per workload and port (the pod, as its own proxy
//! names itself: `{"ns":…,"pod":…}`), shared by every connection and worker through a
//! [`PortWatch`] handle. The upstream takes a handle when it first sees an endpoint with a
//! workload and holds it while it keeps the endpoint; the stream ends with the last handle.
//! The table is bounded ([`MAX_WATCHES`]): past it, a pod's policy is unknown and `[policy]
//! unknown` decides. A stream that breaks is opened again with backoff (100 ms doubling to
//! 10 s) while the last policy stays in force. What a policy decides is [`crate::policy`]; the
//! transport (mTLS as the gateway, or plaintext to loopback) is the Destination client's.
//! Never dials an endpoint, never imports the proxy or the server.

use super::destination::connect::Connector;
use super::destination::{Backoff, describe};
use crate::client_tls::ClientTls;
use crate::config::{self, Unknown};
use crate::metrics::policy::PolicyMetrics;
use crate::policy::{ServerPolicy, proto};
use linkerd2_proxy_api::inbound as api;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Workload and port pairs watched at once.
pub const MAX_WATCHES: usize = 10_000;

type Key = (Arc<str>, u16);

/// The policy watches: a table of [`PortWatch`]es over one gRPC channel.
pub struct Policies {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: tonic::transport::Endpoint,
    connector: Connector,
    /// Built at the first watch, inside the runtime (the channel spawns its worker).
    channel: OnceLock<Channel>,
    initial_timeout: Duration,
    unknown: Unknown,
    metrics: PolicyMetrics,
    /// [`MAX_WATCHES`]; smaller in tests.
    max: usize,
    watches: Mutex<HashMap<Key, Weak<PortWatch>>>,
}

/// One workload and port's watch; dropping the last handle ends its stream.
pub struct PortWatch {
    key: Key,
    started: Instant,
    known: watch::Receiver<Known>,
    task: tokio::task::AbortHandle,
    shared: Weak<Shared>,
}

/// What a watch publishes.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The last policy the controller sent; `None` until the first.
    policy: Option<Arc<ServerPolicy>>,
    /// Why the stream is not open, while it is not.
    error: Option<String>,
}

impl Policies {
    pub fn new(config: &config::Policy, tls: Arc<ClientTls>, metrics: PolicyMetrics) -> Policies {
        let (endpoint, connector) = Connector::controller(
            &config.policy_addr,
            config.policy_name.as_deref(),
            tls,
            config.initial_timeout,
            "http://linkerd-policy",
        );
        let shared = Shared {
            endpoint,
            connector,
            channel: OnceLock::new(),
            initial_timeout: config.initial_timeout,
            unknown: config.unknown,
            metrics,
            max: MAX_WATCHES,
            watches: Mutex::new(HashMap::new()),
        };
        Policies {
            shared: Arc::new(shared),
        }
    }

    /// What a request gets while a pod's policy is unknown.
    pub fn unknown(&self) -> Unknown {
        self.shared.unknown
    }

    /// Watches now.
    pub fn watched(&self) -> usize {
        self.shared.lock().len()
    }

    /// The watch of `workload`'s `port`, started if none; `None` when [`MAX_WATCHES`] are
    /// held already (then the policy is unknown).
    pub fn watch(&self, workload: &Arc<str>, port: u16) -> Option<Arc<PortWatch>> {
        let shared = &self.shared;
        let key = (workload.clone(), port);
        if let Some(w) = shared.lock().get(&key).and_then(Weak::upgrade) {
            return Some(w);
        }
        let channel = shared.channel();
        let mut watches = shared.lock();
        if let Some(w) = watches.get(&key).and_then(Weak::upgrade) {
            return Some(w);
        }
        if watches.len() >= shared.max {
            watches.retain(|_, w| w.strong_count() > 0);
            if watches.len() >= shared.max {
                tracing::warn!(%workload, port, limit = shared.max, "too many pod policies watched: policy unknown");
                return None;
            }
        }
        let (tx, known) = watch::channel(Known::default());
        let follow = follow(channel, key.clone(), tx, shared.metrics.clone());
        let task = tokio::spawn(follow).abort_handle();
        let w = Arc::new(PortWatch {
            key: key.clone(),
            started: Instant::now(),
            known,
            task,
            shared: Arc::downgrade(shared),
        });
        watches.insert(key, Arc::downgrade(&w));
        Some(w)
    }
}

impl PortWatch {
    /// The pod's policy: the last the controller sent, waiting for the first until
    /// `initial_timeout` after the watch started; `Err` says why there is none.
    pub async fn current(&self) -> Result<Arc<ServerPolicy>, String> {
        let mut known = self.known.clone();
        if let Some(p) = known.borrow().policy.clone() {
            return Ok(p);
        }
        let deadline = self.started + self.timeout();
        let waited = tokio::time::timeout_at(deadline, known.wait_for(|k| k.policy.is_some()))
            .await
            .map(|r| r.map(|k| k.policy.clone()));
        match waited {
            Ok(Ok(Some(policy))) => Ok(policy),
            Ok(_) => Err("the policy watch ended".into()),
            Err(_) => {
                let why = known.borrow().error.clone();
                Err(format!(
                    "no policy from the controller after {:?}: {}",
                    self.timeout(),
                    why.unwrap_or_else(|| "no answer yet".into())
                ))
            }
        }
    }

    /// The policies the controller sends from now on.
    pub fn updates(&self) -> Updates {
        let mut known = self.known.clone();
        let last = known.borrow_and_update().policy.clone();
        Updates { known, last }
    }

    fn timeout(&self) -> Duration {
        self.shared
            .upgrade()
            .map_or(Duration::ZERO, |s| s.initial_timeout)
    }
}

/// A pod's policies as they change ([`PortWatch::updates`]).
pub struct Updates {
    known: watch::Receiver<Known>,
    last: Option<Arc<ServerPolicy>>,
}

impl Updates {
    /// The next policy the controller sends; pending forever once the watch has ended.
    pub async fn next(&mut self) -> Arc<ServerPolicy> {
        loop {
            if self.known.changed().await.is_err() {
                return std::future::pending().await;
            }
            let policy = self.known.borrow_and_update().policy.clone();
            if let Some(p) = policy
                && !self.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &p))
            {
                self.last = Some(p.clone());
                return p;
            }
        }
    }
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(shared) = self.shared.upgrade() {
            let mut watches = shared.lock();
            if watches
                .get(&self.key)
                .is_some_and(|w| w.strong_count() == 0)
            {
                watches.remove(&self.key);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Weak<PortWatch>>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
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

/// A watch's task: `WatchPort` for its workload and port, each policy read and published,
/// the stream opened again with backoff whenever it ends, the last policy kept meanwhile.
async fn follow(channel: Channel, key: Key, tx: watch::Sender<Known>, metrics: PolicyMetrics) {
    let (workload, port) = (&key.0, key.1);
    let mut backoff = Backoff::default();
    let mut state = StateGauge(None);
    let mut failures = 0u32;
    loop {
        state.set(Some(&metrics.reconnecting));
        let status = match open(&channel, &key).await {
            Err(status) => status,
            Ok(mut stream) => {
                state.set(Some(&metrics.active));
                loop {
                    let pb = match stream.message().await {
                        Ok(Some(pb)) => pb,
                        Ok(None) => break tonic::Status::unavailable("stream ended"),
                        Err(status) => break status,
                    };
                    backoff.reset();
                    failures = 0;
                    let epoch = Instant::now().into_std();
                    let policy = match proto::server_policy(pb, epoch) {
                        Ok(policy) => {
                            metrics.read.inc();
                            policy
                        }
                        Err(why) => {
                            tracing::warn!(%workload, port, error = %why, "pod policy not readable: requests to the port are refused");
                            metrics.invalid.inc();
                            ServerPolicy::invalid(why)
                        }
                    };
                    tracing::debug!(%workload, port, server = %policy.meta.name, "pod policy");
                    tx.send_replace(Known {
                        policy: Some(Arc::new(policy)),
                        error: None,
                    });
                }
            }
        };
        let why = describe(&status);
        failures += 1;
        if failures == 1 {
            tracing::warn!(%workload, port, error = %why, "policy stream failed; the last policy stays in force");
        } else {
            tracing::debug!(%workload, port, error = %why, failures, "policy stream failed again");
        }
        tx.send_modify(|k| k.error = Some(why));
        state.set(Some(&metrics.reconnecting));
        tokio::time::sleep(backoff.next()).await;
    }
}

async fn open(
    channel: &Channel,
    key: &Key,
) -> Result<tonic::Streaming<api::Server>, tonic::Status> {
    use api::inbound_server_policies_client::InboundServerPoliciesClient;
    let mut client = InboundServerPoliciesClient::new(channel.clone());
    let spec = api::PortSpec {
        workload: key.0.to_string(),
        port: u32::from(key.1),
    };
    Ok(client.watch_port(spec).await?.into_inner())
}

/// The watch's place in `policy_watches`, given back when its task ends or is aborted.
struct StateGauge<'a>(Option<&'a Gauge>);

impl<'a> StateGauge<'a> {
    fn set(&mut self, next: Option<&'a Gauge>) {
        if let (Some(a), Some(b)) = (self.0, next)
            && std::ptr::eq(a, b)
        {
            return;
        }
        if let Some(old) = std::mem::replace(&mut self.0, next) {
            old.dec();
        }
        if let Some(new) = next {
            new.inc();
        }
    }
}

impl Drop for StateGauge<'_> {
    fn drop(&mut self) {
        self.set(None);
    }
}
