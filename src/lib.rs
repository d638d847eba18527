//! crossgate: an mTLS gateway for Linkerd's hierarchical multicluster mode.
//!
//! A connection meets the modules in this order:
//! - [`config`]: the TOML file and flags, validated as a whole before any port is bound;
//! - [`identity`] and [`tls`]: the gateway's credentials, the TLS 1.3 handshake that requires a
//!   client certificate, and the client's identity from its leaf's SAN;
//! - [`server`]: the accept loop and one connection's life, read as a sequence: handshake,
//!   first bytes ([`transport_header`]), [`plan`], then a `match` on the plan;
//! - [`plan`]: the pure decision, built on [`route`], [`authz`] and [`names`], answered as a
//!   plan or a [`refusal`], under the [`rules`] in force (swapped whole by [`reload`]);
//! - [`discovery`]: the target's endpoints ([`endpoint`]): static, Linkerd's Destination API,
//!   or DNS; it never dials; with `[policy]`, the target pods' inbound policies too, which
//!   [`policy`] decides for each caller once the endpoint is chosen;
//! - [`upstream`]: per target, the endpoint chosen, its HTTP connections (one HTTP/2
//!   connection and an HTTP/1.1 pool per endpoint) and the one connect path (TCP, or mTLS as
//!   the gateway through [`client_tls`], a transport header when the pod's proxy wants one);
//!   [`metered`] counts the bytes of both sides;
//! - [`proxy`]: opaque TCP or HTTP forwarding;
//! - [`metrics`], [`access`]: what is counted and logged; [`admin`]: `/live`, `/ready`,
//!   `/metrics`; [`lifecycle`]: serving, draining.
//!
//! [`probe`] is the source side: it probes linked gateways and prints the `gateways` table.
//! [`certs`] makes a Linkerd-style development PKI; [`demo`] runs everything on one machine.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod authz;
pub mod certs;
pub mod check;
pub mod client_hello;
pub mod client_tls;
pub mod config;
pub mod demo;
pub mod discovery;
pub(crate) mod due;
pub mod endpoint;
pub mod explain;
pub mod identity;
pub(crate) mod kept;
pub mod lifecycle;
mod listeners;
pub mod metered;
pub mod metrics;
pub mod names;
pub mod passthrough;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod problems;
pub mod proxy;
pub mod refusal;
pub mod reload;
pub mod route;
pub mod rules;
pub mod server;
pub mod sni;
pub mod tls;
pub mod transport_header;
pub mod upstream;
pub mod verified_chains;
pub mod wire;
pub mod workers;

use crate::config::Config;
use crate::identity::CredentialStore;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::rules::{Rules, RulesHandle};
use crate::tls::TlsState;
use crate::upstream::Upstream;
use crate::workers::Workers;
pub use listeners::{BindError, Listeners, Port};
use std::{future::Future, sync::Arc};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The gateway's parts, each a narrow handle that the modules take on their own: the rules
/// (swapped on reload), the upstream side, telemetry, TLS and lifecycle. Built once from the
/// configuration; nothing here is a global.
pub struct Gateway {
    /// `[server]` as started: listeners, deadlines, limits.
    pub settings: Arc<config::Server>,
    pub rules: Arc<RulesHandle>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<TlsState>,
    /// The gateway as a TLS client (meshed pods, the control plane).
    pub client_tls: Arc<client_tls::ClientTls>,
    pub lifecycle: Arc<Lifecycle>,
    /// Permits for HTTP requests in flight; none left means load shedding.
    pub in_flight: Arc<Semaphore>,
    pub access: access::AccessLog,
    /// Notified by [`Gateway::reload`]: the identity watch reads its files again now.
    identity_reload: Arc<tokio::sync::Notify>,
    /// Notified by [`Gateway::reload`]: the `[[sni.certificate]]` watch reads its files now.
    sni_reload: Arc<tokio::sync::Notify>,
    /// The configuration as started, for reloads to compare with.
    config: Config,
    source: Option<config::Source>,
    /// The modification time of the configuration file as last read.
    config_stamp: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl Gateway {
    /// Loads the credentials and builds the parts. Errors name the files.
    pub fn build(config: &Config) -> Result<Arc<Gateway>, Vec<String>> {
        let provider = tls::provider();
        let (roots, store) = match (&config.identity.linkerd, &config.identity.name) {
            // The leaf comes from the controller once running ([`identity::linkerd`]).
            (Some(_), Some(name)) => {
                let roots = identity::anchors(&config.identity)?;
                let name = names::normalize(name);
                (roots, CredentialStore::empty(name))
            }
            _ => {
                let (roots, creds) = identity::load(&config.identity, &provider)?;
                (roots, CredentialStore::new(creds))
            }
        };
        let store = Arc::new(store);
        let sni = identity::sni::SniCertificates::load(&config.sni.certificates, &provider)?;
        let metrics = Arc::new(Metrics::with_target_cap(config.server.max_metric_targets));
        let chains = metrics.tls.chain_counters();
        let resumption = config.server.tls_resumption;
        let tls = TlsState::new(
            store.clone(),
            Arc::new(sni),
            roots,
            provider,
            resumption,
            chains,
        )
        .map_err(|e| vec![format!("TLS configuration: {}", crate::explain::tls(&e))])?;
        // Configured targets are real: their names are labels from the start.
        for (name, port) in config.routing.statics.keys() {
            let name = names::normalize(name).into();
            metrics
                .targets
                .reached(&route::Target { name, port: *port });
        }
        if store.has_leaf() {
            metrics.tls.cert_refreshed(store.not_after());
        }
        let rules = Arc::new(RulesHandle::new(Rules::from_config(
            config,
            store.identity(),
        )));
        let client_tls = Arc::new(client_tls::ClientTls::new(
            store.clone(),
            tls.roots(),
            tls.provider().clone(),
        ));
        let mut discovery = discovery::Discovery::new(&config.routing.dns_servers);
        if let Some(d) = &config.discovery {
            let destination = discovery::destination::Destination::new(
                d,
                client_tls.clone(),
                metrics.discovery.clone(),
            );
            discovery = discovery.with_destination(destination, d.fallback);
        }
        let discovery = Arc::new(discovery);
        let mut upstream = Upstream::new(
            discovery,
            Some(client_tls.clone()),
            metrics.clone(),
            config.server.connect_timeout,
            config.balancer,
        );
        if let Some(p) = &config.policy {
            let policies =
                discovery::policy::Policies::new(p, client_tls.clone(), metrics.policy.clone());
            upstream = upstream.with_policies(Arc::new(policies));
        }
        Ok(Arc::new(Gateway {
            settings: Arc::new(config.server.clone()),
            rules,
            upstream: Arc::new(upstream),
            metrics,
            tls: Arc::new(tls),
            client_tls,
            lifecycle: Arc::new(Lifecycle::with_passthrough(
                config.server.max_connections,
                config.passthrough.as_ref().map_or(0, |p| p.max_connections),
            )),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            access: config.log.access,
            identity_reload: Arc::new(tokio::sync::Notify::new()),
            sni_reload: Arc::new(tokio::sync::Notify::new()),
            source: config.source.clone(),
            config: config.clone(),
            config_stamp: std::sync::Mutex::new(None),
        }))
    }

    /// Serving, and the credentials valid now.
    pub fn is_ready(&self) -> bool {
        self.lifecycle.is_serving() && self.tls.store.is_valid_now()
    }

    /// The gateway's own identity.
    pub fn identity(&self) -> &str {
        self.tls.store.identity()
    }

    /// Reads the configuration file again and swaps the rules (SIGHUP), and has the identity
    /// watch read the credentials again at once. See [`reload`] and [`identity::watch`].
    pub async fn reload(&self) -> bool {
        self.identity_reload.notify_one();
        self.sni_reload.notify_one();
        reload::reload(self).await
    }
}

/// Completes on SIGTERM or SIGINT: the signal to stop, or (a second one) not to wait out
/// `drain_delay`. SIGTERM is listened to from the call on, before the returned future is first
/// polled; pending forever where signals cannot be listened to. Call it inside the runtime.
pub fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => std::future::pending().await,
        }
    }
}

/// Serves until `shutdown` completes, then shuts down in steps: `/ready` answers 503 while
/// connections are still accepted and served for `drain_delay` (a load balancer stops sending;
/// a second SIGTERM or SIGINT cuts it short), then stop accepting, HTTP connections shut down
/// gracefully, TCP streams may finish, all within `drain_timeout`. The last log line says whether every connection closed or how many
/// the deadline cut.
pub async fn run(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    run_workers(gw, listeners, shutdown, 1).await
}

/// [`run`] with the gateway port served by `workers` threads: this one, and `workers − 1`
/// [`workers::Workers`] of their own runtime.
pub async fn run_workers(
    gw: Arc<Gateway>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    workers: usize,
) {
    let (extra, mut spread) = match Workers::on_gateway_port(&gw, workers.saturating_sub(1)) {
        Some((w, s)) => (Some(w), Some(s)),
        None => (None, None),
    };
    let bound = |l: Option<&TcpListener>| {
        l.and_then(|l| l.local_addr().ok())
            .map_or("none".to_string(), |a| a.to_string())
    };
    let port = |p: Port| listeners.ports.iter().find(|(q, _)| *q == p).map(|x| &x.1);
    let addrs = (
        bound(port(Port::Gateway)),
        bound(Some(&listeners.admin)),
        bound(listeners.metrics.as_ref()),
        bound(port(Port::Passthrough)),
    );
    let gateway_port = Arc::new(server::GatewayPort::new(gw.clone()));
    let passthrough_port = Arc::new(passthrough::PassthroughPort::new(gw.clone()));
    let accepts: Vec<_> = listeners
        .ports
        .into_iter()
        .map(|(port, listener)| {
            let stopping = gw.lifecycle.stopping();
            match port {
                Port::Gateway => tokio::spawn(server::accept_loop(
                    listener,
                    gateway_port.clone(),
                    gw.lifecycle.connections.clone(),
                    stopping,
                    spread.take(),
                )),
                Port::Passthrough => tokio::spawn(server::accept_loop(
                    listener,
                    passthrough_port.clone(),
                    gw.lifecycle.passthrough.clone(),
                    stopping,
                    None,
                )),
            }
        })
        .collect();
    // Serving from here on, before the admin port answers: its first `/ready` is true.
    gw.lifecycle.start_serving();
    // The admin port takes narrow handles: readiness, the registry, the TLS acceptor.
    let (lifecycle, store) = (gw.lifecycle.clone(), gw.tls.store.clone());
    let (metrics, tls) = (gw.metrics.clone(), gw.tls.clone());
    let ready: Arc<dyn Fn() -> bool + Send + Sync> =
        Arc::new(move || lifecycle.is_serving() && store.is_valid_now());
    let encode: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || metrics.encode());
    let admin_state = Arc::new(admin::AdminState {
        ready: ready.clone(),
        metrics: encode.clone(),
        serve_metrics: listeners.metrics.is_none(),
        tls: Some(Arc::new(move || tls.admin())),
        handshake_timeout: gw.settings.handshake_timeout,
        header_timeout: gw.settings.header_timeout,
        max_connections: gw.settings.admin_max_connections,
        idle_timeout: gw.settings.admin_idle_timeout,
    });
    let admin = admin::serve_dedicated(admin_state, listeners.admin)
        .map_err(|e| tracing::error!(error = %e, "cannot start the admin thread; no admin port"))
        .ok();
    // The private metrics port: plaintext, for a scraper inside the cluster; it never sits
    // behind the LoadBalancer. Scrapes are not latency-critical, so the shared runtime serves it.
    let metrics_port = listeners.metrics.map(|listener| {
        let state = Arc::new(admin::AdminState {
            ready,
            metrics: encode,
            serve_metrics: true,
            tls: None,
            handshake_timeout: gw.settings.handshake_timeout,
            header_timeout: gw.settings.header_timeout,
            max_connections: gw.settings.admin_max_connections,
            idle_timeout: gw.settings.admin_idle_timeout,
        });
        tokio::spawn(admin::serve(state, listener))
    });
    let watcher = identity::keep::spawn(&gw);
    let sni_watcher = (!gw.tls.sni.is_empty()).then(|| {
        tokio::spawn(gw.tls.sni.clone().watch(
            gw.tls.provider().clone(),
            gw.config.identity.reload_interval,
            gw.sni_reload.clone(),
        ))
    });
    let upstream = gw.upstream.clone();
    let sweeper = tokio::spawn(upstream.sweep_forever());
    let config_watcher = gw
        .source
        .clone()
        .map(|source| tokio::spawn(reload::watch(gw.clone(), source)));
    let state = if gw.tls.store.has_leaf() {
        "gateway ready"
    } else {
        "gateway serving; /ready answers 503 until the identity controller issues a leaf"
    };
    tracing::info!(
        identity = gw.identity(),
        listen = %addrs.0,
        admin = %addrs.1,
        metrics = %addrs.2,
        passthrough = %addrs.3,
        "{state}"
    );
    shutdown.await;
    let delay = gw.settings.drain_delay;
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "shutting down: /ready answers 503, still accepting for drain_delay"
        );
        let second = stop_signal();
        gw.lifecycle.stop_serving();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = second => {
                tracing::info!("second stop signal: drain_delay cut short");
            }
        }
    }
    tracing::info!("draining: no longer accepting");
    gw.lifecycle.begin_drain();
    for accept in accepts {
        let _ = accept.await;
    }
    let deadline = gw.settings.drain_timeout;
    let drained = gw.lifecycle.drained(deadline).await;
    if let Some(extra) = extra {
        extra.finish().await;
    }
    watcher.abort();
    if let Some(w) = sni_watcher {
        w.abort();
    }
    sweeper.abort();
    if let Some(w) = config_watcher {
        w.abort();
    }
    if let Some(m) = metrics_port {
        m.abort();
    }
    if let Some(admin) = admin {
        admin.stop().await;
    }
    // Last, so that it is the process's last line.
    match drained {
        Ok(()) => tracing::info!("drained: all connections closed"),
        Err(open) => tracing::warn!(?deadline, "drain deadline passed: {open} connections cut"),
    }
}
