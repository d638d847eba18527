//! The source side of a link: `crossgate probe` probes each linked gateway's `/ready`, as
//! Linkerd's service-mirror does, and exports the `gateway_*` families on its own admin port;
//! `crossgate gateways` reads them back as a table.
//!
//! - [`config`]: the `[[link]]` file, validated as a whole;
//! - [`prober`]: one link's loop and one probe (resolve, connect, mTLS, `GET`);
//! - [`metrics`]: the families, labelled `target_cluster_name`;
//! - [`openmetrics`] and [`table`]: `crossgate gateways`, from the metrics text to the table.
//!
//! The prober's admin port is plaintext only (`AdminState::tls` is `None`): its readers are
//! kubelet, Prometheus and `crossgate gateways` beside it, and its certificate is a client
//! identity that no meshed caller would expect a server to present.

pub mod config;
pub mod metrics;
pub mod openmetrics;
pub mod prober;
pub mod table;

pub use config::{Link, ProbeConfig};
pub use table::{Format, gateways};

use crate::admin::{self, AdminState};
use crate::identity::{self, CredentialStore};
use hickory_resolver::TokioResolver;
use metrics::ProbeMetrics;
use prober::ProbeContext;
use rustls::{ClientConfig, RootCertStore};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// A prober ready to run: links, metrics, resolver and credentials.
pub struct Prober {
    config: ProbeConfig,
    metrics: Arc<ProbeMetrics>,
    credentials: Option<Credentials>,
    resolver: Result<TokioResolver, String>,
    running: AtomicBool,
}

/// The prober's client identity and the TLS configuration built from it.
struct Credentials {
    store: Arc<CredentialStore>,
    client: Arc<RwLock<Arc<ClientConfig>>>,
    files: crate::config::Identity,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Prober {
    /// Loads the identity files (when configured) and builds the resolver. Errors name the files.
    pub fn build(config: &ProbeConfig) -> Result<Arc<Prober>, Vec<String>> {
        let credentials = match &config.identity {
            None => None,
            Some(files) => {
                let provider = crate::tls::provider();
                warm_up(&provider);
                let (roots, creds) = identity::load(files, &provider)?;
                let store = Arc::new(CredentialStore::new(creds));
                let client = client_config(&store, roots, &provider)
                    .map_err(|e| vec![format!("TLS configuration: {}", crate::explain::tls(&e))])?;
                Some(Credentials {
                    store,
                    client: Arc::new(RwLock::new(client)),
                    files: files.clone(),
                    provider,
                })
            }
        };
        let resolver = build_resolver(&config.dns_servers);
        if let Err(e) = &resolver {
            tracing::warn!(error = %e, "no DNS resolver; only IP addresses will be probed");
        }
        Ok(Arc::new(Prober {
            config: config.clone(),
            metrics: Arc::new(ProbeMetrics::new()),
            credentials,
            resolver,
            running: AtomicBool::new(false),
        }))
    }

    /// Running, and the client certificate (if any) valid now.
    pub fn is_ready(&self) -> bool {
        self.running.load(Ordering::Relaxed)
            && self
                .credentials
                .as_ref()
                .is_none_or(|c| c.store.is_valid_now())
    }

    /// The OpenMetrics text of the `gateway_*` families.
    pub fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// Starts one key exchange of each group, so that aws-lc's one-time set-up (measured at about
/// 100 ms on a loaded 2-core machine) is not counted as the first probe's latency.
fn warm_up(provider: &rustls::crypto::CryptoProvider) {
    for group in &provider.kx_groups {
        let _ = group.start();
    }
}

/// A client configuration presenting `store`'s current leaf: TLS 1.3, HTTP/1.1, no resumption
/// (a Linkerd proxy never resumes, so neither does its stand-in).
fn client_config(
    store: &Arc<CredentialStore>,
    roots: Arc<RootCertStore>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_cert_resolver(store.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A resolver without a cache, so every probe asks again. `dns_servers` empty: resolv.conf.
fn build_resolver(dns_servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = crate::discovery::resolver_builder(dns_servers)?;
    let opts = builder.options_mut();
    // Load-balancer addresses change (linkerd2 #10635): nothing is kept between probes.
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    builder.build().map_err(|e| e.to_string())
}

/// Probes every link and serves the admin port until `shutdown` completes.
pub async fn run(prober: Arc<Prober>, admin: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut tasks = tokio::task::JoinSet::new();
    let (ready, encode) = (prober.clone(), prober.clone());
    let state = Arc::new(AdminState {
        ready: Arc::new(move || ready.is_ready()),
        metrics: Arc::new(move || encode.encode_metrics()),
        serve_metrics: true,
        tls: None,
        handshake_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(10),
        max_connections: 100,
        idle_timeout: Duration::from_secs(10),
    });
    tasks.spawn(admin::serve(state, admin));
    let tls = prober.credentials.as_ref().map(|c| {
        let client = c.client.clone();
        tasks.spawn(watch_identity(c));
        Arc::new(move || client.read().unwrap_or_else(|e| e.into_inner()).clone())
            as Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>
    });
    let ctx = Arc::new(ProbeContext {
        resolver: prober.resolver.clone(),
        tls,
    });
    for link in &prober.config.links {
        tracing::info!(
            link = %link.name,
            address = %link.address,
            port = link.port,
            path = %link.path,
            identity = link.identity.as_deref().unwrap_or("none (plaintext)"),
            period = ?link.period,
            failure_threshold = link.failure_threshold,
            "probing link"
        );
        let handles = prober.metrics.link(&link.name, link.services.len());
        tasks.spawn(prober::run(link.clone(), ctx.clone(), handles));
    }
    prober.running.store(true, Ordering::Relaxed);
    tracing::info!(links = prober.config.links.len(), "prober running");
    shutdown.await;
    tracing::info!("prober shutting down");
    prober.running.store(false, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!("prober stopped");
}

/// Reloads the prober's identity when its files change; new anchors rebuild the client config.
fn watch_identity(c: &Credentials) -> impl Future<Output = ()> + Send + 'static {
    let (client, provider, store) = (c.client.clone(), c.provider.clone(), c.store.clone());
    identity::watch(
        c.store.clone(),
        c.files.clone(),
        c.provider.clone(),
        identity::WatchHooks::default(),
        // The store already holds the new leaf; only the anchors need a new configuration.
        move |_, roots| match client_config(&store, roots, &provider) {
            Ok(config) => *client.write().unwrap_or_else(|e| e.into_inner()) = config,
            Err(e) => {
                tracing::warn!(error = %crate::explain::tls(&e), "cannot rebuild TLS with the new anchors")
            }
        },
    )
}
