//! crossgate: an mTLS gateway for Linkerd's hierarchical multicluster mode.
//!
//! A connection meets the modules in this order:
//! - [`config`]: the TOML file and flags, validated as a whole before any port is bound;
//! - [`identity`] and [`tls`]: the gateway's credentials, the TLS 1.3 handshake that requires a
//!   client certificate, and the client's identity from its leaf's SAN;
//! - [`server`]: the accept loop and one connection's life;
//! - [`transport_header`]: the Linkerd header that names the target and the protocol;
//! - [`route`] and [`authz`]: pure decisions, target or refusal ([`refusal`]);
//! - [`discovery`]: the target's endpoints (static or DNS) and the upstream connection;
//! - [`proxy`]: opaque TCP or HTTP forwarding;
//! - [`admin`] and [`metrics`]: `/live`, `/ready`, `/metrics`.
//!
//! [`probe`] is the source side: it probes linked gateways and prints the `gateways` table.
//! [`certs`] makes a Linkerd-style development PKI; [`demo`] runs everything on one machine.
#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod certs;
pub mod check;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod identity;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod refusal;
pub mod route;
pub mod server;
pub mod tls;
pub mod transport_header;

use crate::config::Config;
use crate::identity::CredentialStore;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// Everything a connection needs, shared by all of them.
pub struct Gateway {
    pub server: config::Server,
    /// The TLS configurations, rebuilt when the trust anchors rotate.
    tls: RwLock<Acceptors>,
    pub routes: Arc<route::Routes>,
    pub policy: authz::Policy,
    pub discovery: Arc<discovery::Discovery>,
    pub upstream: proxy::upstream::Upstream,
    /// Permits for HTTP requests in flight; none left means load shedding.
    pub in_flight: Arc<Semaphore>,
    pub metrics: Arc<metrics::Metrics>,
    pub store: Arc<CredentialStore>,
    /// Permits for open gateway connections; all returned means drained.
    pub connections: Arc<Semaphore>,
    ready: AtomicBool,
    stop: watch::Sender<bool>,
    identity_files: config::Identity,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// The gateway port's and the admin port's TLS acceptors.
#[derive(Clone)]
struct Acceptors {
    gateway: TlsAcceptor,
    admin: TlsAcceptor,
}

impl Acceptors {
    fn build(
        store: &Arc<CredentialStore>,
        roots: Arc<rustls::RootCertStore>,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        resumption: bool,
    ) -> Result<Acceptors, rustls::Error> {
        let gateway = tls::server_config(
            store.clone(),
            roots.clone(),
            provider.clone(),
            tls::GATEWAY_ALPN,
            resumption,
        )?;
        let admin = tls::server_config(
            store.clone(),
            roots,
            provider.clone(),
            tls::ADMIN_ALPN,
            false,
        )?;
        Ok(Acceptors {
            gateway: TlsAcceptor::from(gateway),
            admin: TlsAcceptor::from(admin),
        })
    }
}

impl Gateway {
    /// Loads the credentials and builds the shared state. Errors name the files.
    pub fn build(config: &Config) -> Result<Arc<Gateway>, Vec<String>> {
        let provider = tls::provider();
        let (roots, creds) = identity::load(&config.identity, &provider)?;
        let store = Arc::new(CredentialStore::new(creds));
        let acceptors = Acceptors::build(&store, roots, &provider, config.server.tls_resumption)
            .map_err(|e| vec![format!("TLS configuration: {e}")])?;
        let routes = Arc::new(route::Routes::new(
            &config.routing.cluster_domain,
            config.routing.statics.clone(),
        ));
        let metrics = Arc::new(metrics::Metrics::new());
        metrics.cert_expiration.set(store.not_after() as f64);
        let discovery = Arc::new(discovery::Discovery::new(
            routes.clone(),
            &config.routing.dns_servers,
            config.server.connect_timeout,
        ));
        Ok(Arc::new(Gateway {
            server: config.server.clone(),
            tls: RwLock::new(acceptors),
            upstream: proxy::upstream::Upstream::new(discovery.clone(), metrics.clone()),
            discovery,
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            routes,
            policy: authz::Policy {
                own_identity: store.identity().to_string(),
                rules: config.authorization.clone(),
            },
            metrics,
            connections: Arc::new(Semaphore::new(config.server.max_connections)),
            ready: AtomicBool::new(false),
            stop: watch::channel(false).0,
            identity_files: config.identity.clone(),
            provider,
            store,
        }))
    }

    /// Serving, and the credentials valid now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.store.is_valid_now()
    }

    /// The gateway's own identity.
    pub fn identity(&self) -> &str {
        self.store.identity()
    }

    /// The gateway port's TLS acceptor (an `Arc` clone; the lock is not held).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .gateway
            .clone()
    }

    /// The admin port's TLS acceptor.
    pub fn admin_acceptor(&self) -> TlsAcceptor {
        self.tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .admin
            .clone()
    }

    /// A receiver that turns true when the gateway begins to drain.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// The bound sockets; tests bind `127.0.0.1:0`.
pub struct Listeners {
    pub gateway: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(server: &config::Server) -> std::io::Result<Listeners> {
        Ok(Listeners {
            gateway: bind(server.listen).await?,
            admin: bind(server.admin).await?,
        })
    }

    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.gateway.local_addr()?, self.admin.local_addr()?))
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves until `shutdown` completes, then drains: stop accepting, `/ready` answers 503,
/// HTTP connections shut down gracefully, TCP streams may finish, all within the drain deadline.
pub async fn run(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let accept = tokio::spawn(server::accept_loop(
        gw.clone(),
        listeners.gateway,
        gw.stopping(),
    ));
    let (ready, encode, acceptor) = (gw.clone(), gw.clone(), gw.clone());
    let admin_state = Arc::new(admin::AdminState {
        ready: Arc::new(move || ready.is_ready()),
        metrics: Arc::new(move || encode.metrics.encode()),
        tls: Some(Arc::new(move || acceptor.admin_acceptor())),
        handshake_timeout: gw.server.handshake_timeout,
        header_timeout: gw.server.header_timeout,
    });
    let admin = admin::serve_dedicated(admin_state, listeners.admin)
        .map_err(|e| tracing::error!(error = %e, "cannot start the admin thread; no admin port"))
        .ok();
    let reloaded = gw.clone();
    let watcher = tokio::spawn(identity::watch(
        gw.store.clone(),
        gw.identity_files.clone(),
        gw.provider.clone(),
        move |store, roots| {
            let g = &reloaded;
            g.metrics.cert_expiration.set(store.not_after() as f64);
            match Acceptors::build(&g.store, roots, &g.provider, g.server.tls_resumption) {
                Ok(a) => *g.tls.write().unwrap_or_else(|e| e.into_inner()) = a,
                Err(e) => tracing::warn!(error = %e, "cannot rebuild TLS with the new anchors"),
            }
        },
    ));
    gw.ready.store(true, Ordering::Relaxed);
    tracing::info!(identity = gw.identity(), "gateway ready");
    shutdown.await;
    tracing::info!("draining");
    gw.ready.store(false, Ordering::Relaxed);
    let _ = gw.stop.send(true);
    let _ = accept.await;
    let all = gw.server.max_connections as u32;
    match tokio::time::timeout(gw.server.drain_timeout, gw.connections.acquire_many(all)).await {
        Ok(_) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!(deadline = ?gw.server.drain_timeout, "drain deadline passed; closing remaining connections")
        }
    }
    watcher.abort();
    if let Some(admin) = admin {
        admin.stop().await;
    }
}
