//! TLS: the rustls configurations (TLS 1.3 only, aws-lc-rs, client certificates required
//! against the trust anchors), and the naming of handshake failures for metrics and logs.

use crate::identity::CredentialStore;
use crate::identity::sni::{SniCertificates, SniResolver};
use crate::verified_chains::{CachedChains, ChainCounters};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::server::{
    NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::{CertificateError, ClientConfig, Error, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// ALPN ids offered by the gateway port, in preference order.
pub const GATEWAY_ALPN: &[&[u8]] = &[crate::transport_header::ALPN, b"h2", b"http/1.1"];
/// ALPN ids offered by the admin port.
pub const ADMIN_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// aws-lc-rs restricted to the TLS 1.3 suites Linkerd speaks.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// A server configuration presenting the certificate `certs` resolves (the gateway's own
/// store, or [`SniResolver`]) and requiring a client certificate that chains to `roots`
/// (chains already verified are remembered, counted in `chains`).
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    alpn: &[&[u8]],
    resumption: bool,
    chains: &ChainCounters,
) -> Result<Arc<ServerConfig>, Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Error::General(e.to_string()))?;
    let verifier = Arc::new(CachedChains::new(verifier, chains.clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if resumption {
        config.session_storage = ServerSessionMemoryCache::new(4096);
        config.ticketer = aws_lc_rs::Ticketer::new()?;
    } else {
        // Linkerd peers never resume, and a resumed session skips the client-certificate check.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// A client configuration as a Linkerd source proxy has: its own leaf, the anchors, no
/// resumption. Used by the demo, the prober and tests.
pub fn client_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The `reason` label of `inbound_tls_handshake_failures_total` for a failed accept.
pub fn failure_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return "protocol";
    };
    match tls {
        Error::NoCertificatesPresented => "no client certificate",
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "expired",
        Error::InvalidCertificate(_) => "untrusted",
        Error::AlertReceived(alert) if rejects_certificate(*alert) => "rejected by client",
        _ => "protocol",
    }
}

/// True for the alerts a TLS client sends when it refuses the certificate it was shown: the
/// gateway's own leaf has expired, or does not chain to the client's anchors.
fn rejects_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::UnknownCA
            | A::UnsupportedCertificate
    )
}

/// Builds a client configuration from PEM text (anchors, leaf + chain, key).
pub fn client_config_from_pem(
    anchors_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Error> {
    use rustls_pki_types::pem::PemObject;
    let bad = |e: rustls_pki_types::pem::Error| Error::General(e.to_string());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(anchors_pem.as_bytes()) {
        roots.add(c.map_err(bad)?)?;
    }
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(bad)?;
    client_config(Arc::new(roots), chain, key, alpn)
}

/// Connects to `addr` over mTLS, sending SNI `server_name` and checking the server's leaf
/// names it, as a Linkerd source proxy does with the gateway identity.
pub async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// An accepted client connection. Boxed: it is 1.2 KB, and it passes through several
/// futures that would each reserve room for it.
pub type Accepted = Box<tokio_rustls::server::TlsStream<crate::wire::Wire>>;

/// Waits until the client has sent something past the handshake: plaintext rustls already
/// holds, a close, or bytes on the socket (peeked, not read). An idle connection then costs
/// its TLS state alone, not the read buffers of whatever protocol serves it next.
pub async fn until_readable(tls: &mut Accepted) {
    let (tcp, conn) = tls.get_mut();
    match conn.process_new_packets() {
        Ok(io) if io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed() => {
            // An error here surfaces again on the first read.
            let _ = tcp.readable().await;
        }
        // Data, a close, or a TLS error (sticky in rustls: the first read reports it).
        _ => {}
    }
}

/// The acceptors of the gateway port (two: with the gateway's ALPN ids, and with none for
/// clients that offer only others) and of the admin port.
struct Acceptors {
    gateway: tokio_rustls::TlsAcceptor,
    gateway_no_alpn: tokio_rustls::TlsAcceptor,
    admin: tokio_rustls::TlsAcceptor,
}

/// The gateway port's and the admin port's acceptors over the gateway's credentials (and on
/// the gateway port, the certificates chosen by SNI), rebuilt whole when the trust anchors
/// rotate. Readers take an `Arc` clone; no lock is held.
pub struct TlsState {
    acceptors: std::sync::RwLock<Acceptors>,
    /// The anchors in force.
    roots: std::sync::RwLock<Arc<RootCertStore>>,
    pub store: Arc<CredentialStore>,
    /// `[[sni.certificate]]`, shown on the gateway port to the SNI they name.
    pub sni: Arc<SniCertificates>,
    provider: Arc<CryptoProvider>,
    resumption: bool,
    chains: ChainCounters,
    /// The identities of the client leaves seen, so that a leaf is parsed once.
    pub identities: crate::identity::Identities,
}

impl TlsState {
    pub fn new(
        store: Arc<CredentialStore>,
        sni: Arc<SniCertificates>,
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        resumption: bool,
        chains: ChainCounters,
    ) -> Result<TlsState, Error> {
        let acceptors = Self::build(&store, &sni, &roots, &provider, resumption, &chains)?;
        Ok(TlsState {
            acceptors: std::sync::RwLock::new(acceptors),
            roots: std::sync::RwLock::new(roots),
            store,
            sni,
            provider,
            resumption,
            chains,
            identities: Default::default(),
        })
    }

    /// The acceptors over `roots`, each with a fresh cache of verified chains: new anchors
    /// never meet a chain that only the old ones verified.
    fn build(
        store: &Arc<CredentialStore>,
        sni: &Arc<SniCertificates>,
        roots: &Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
        resumption: bool,
        chains: &ChainCounters,
    ) -> Result<Acceptors, Error> {
        let resolver: Arc<dyn ResolvesServerCert> = if sni.is_empty() {
            store.clone()
        } else {
            Arc::new(SniResolver {
                own: store.clone(),
                sni: sni.clone(),
            })
        };
        let config = |certs: &Arc<dyn ResolvesServerCert>, alpn, resumption| {
            let (certs, roots, provider) = (certs.clone(), roots.clone(), provider.clone());
            server_config(certs, roots, provider, alpn, resumption, chains)
        };
        let own: Arc<dyn ResolvesServerCert> = store.clone();
        Ok(Acceptors {
            gateway: config(&resolver, GATEWAY_ALPN, resumption)?.into(),
            gateway_no_alpn: config(&resolver, &[], resumption)?.into(),
            admin: config(&own, ADMIN_ALPN, false)?.into(),
        })
    }

    /// Rebuilds the acceptors with new anchors; on error the current ones stay.
    pub fn rebuild(&self, roots: Arc<RootCertStore>) -> Result<(), Error> {
        let built = Self::build(
            &self.store,
            &self.sni,
            &roots,
            &self.provider,
            self.resumption,
            &self.chains,
        )?;
        *self.acceptors.write().unwrap_or_else(|e| e.into_inner()) = built;
        *self.roots.write().unwrap_or_else(|e| e.into_inner()) = roots;
        Ok(())
    }

    /// The anchors in force.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    fn acceptors(&self) -> std::sync::RwLockReadGuard<'_, Acceptors> {
        self.acceptors.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The gateway port's acceptor.
    pub fn gateway(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptors().gateway.clone()
    }

    /// The gateway port's configuration for a client whose SNI names a target and that
    /// offered ALPN ids but none of [`GATEWAY_ALPN`]: it negotiates none, rather than failing
    /// the handshake, and the plan serves it opaque TCP.
    pub fn gateway_no_alpn(&self) -> Arc<ServerConfig> {
        self.acceptors().gateway_no_alpn.config().clone()
    }

    /// The admin port's acceptor.
    pub fn admin(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptors().admin.clone()
    }
}

/// How long, and how much, a refused client is read after its alert, so that what it sent
/// after its Finished does not turn the close into a reset that destroys the alert.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Closes a connection whose handshake was refused as a careful TLS server does: the alert
/// was written by the failed accept; then shut down writing, read and discard what the
/// client still sends (at most [`LINGER`] and 64 KiB), and close.
pub async fn linger<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = io.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
