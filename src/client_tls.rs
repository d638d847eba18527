//! The gateway as a TLS client, as a linkerd2-proxy outbound client is: TLS 1.3, the gateway's
//! own leaf (and issuer) as client certificate, no resumption, the peer's chain verified to
//! the trust anchors and then one of its SANs required to equal the *server id* the caller
//! expects, which may differ from the SNI sent. Used to dial meshed pods and the control
//! plane. The anchors follow rotations ([`ClientTls::set_roots`]); the client certificate
//! follows the credential store.

use crate::discovery::ServerId;
use crate::identity::CredentialStore;
use crate::kept::Kept;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, Resumption, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Client configurations kept per (server id, ALPN); a bound on what the table can hold.
const MAX_CONFIGS: usize = 4096;

/// A server id and the ALPN offered.
type ConfigKey = (Arc<str>, Option<&'static [u8]>);

/// A TLS stream the gateway opened.
pub type ClientStream = tokio_rustls::client::TlsStream<crate::wire::Wire>;

/// Builds and caches client configurations over the gateway's credentials and anchors.
pub struct ClientTls {
    /// `None`: no client certificate ([`ClientTls::without_client_cert`]).
    store: Option<Arc<CredentialStore>>,
    provider: Arc<CryptoProvider>,
    roots: RwLock<Arc<RootCertStore>>,
    /// Configurations by (server id, ALPN offered), valid for the anchors in `roots`.
    configs: Kept<ConfigKey, Arc<ClientConfig>, MAX_CONFIGS>,
}

impl ClientTls {
    pub fn new(
        store: Arc<CredentialStore>,
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> ClientTls {
        ClientTls {
            store: Some(store),
            provider,
            roots: RwLock::new(roots),
            configs: Kept::default(),
        }
    }

    /// The same verification of the server, but presenting no certificate: for Linkerd's
    /// identity controller, called before the gateway has a leaf of its own.
    pub fn without_client_cert(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> ClientTls {
        ClientTls {
            store: None,
            provider,
            roots: RwLock::new(roots),
            configs: Kept::default(),
        }
    }

    /// New anchors: every connection opened from now on verifies against them.
    pub fn set_roots(&self, roots: Arc<RootCertStore>) {
        *self.roots.write().unwrap_or_else(|e| e.into_inner()) = roots;
        self.configs.clear();
    }

    /// The configuration for a peer that must prove `id`, offering `alpn` (or none).
    pub fn config(&self, id: &Arc<str>, alpn: Option<&'static [u8]>) -> Arc<ClientConfig> {
        let key = (id.clone(), alpn);
        if let Some(c) = self.configs.get(&key) {
            return c;
        }
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner()).clone();
        let verifier = Arc::new(IdentityVerifier {
            roots,
            expected: id.clone(),
            provider: self.provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.store {
            Some(store) => builder.with_client_cert_resolver(store.clone()),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        // Linkerd's clients never resume; neither does the gateway.
        config.resumption = Resumption::disabled();
        let config = Arc::new(config);
        self.configs.insert(key, config.clone());
        config
    }

    /// A TLS handshake over `tcp` with SNI `server.server_name`, requiring the peer to prove
    /// `server.id`. Nothing is written past the handshake when the peer is refused. A TLS
    /// failure's text is in words ([`crate::explain::tls`]).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        server: &ServerId,
        alpn: Option<&'static [u8]>,
    ) -> std::io::Result<ClientStream> {
        let name = ServerName::try_from(server.server_name.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let config = self.config(&server.id, alpn);
        tokio_rustls::TlsConnector::from(config)
            .connect(name, crate::wire::Wire::new(tcp))
            .await
            // rustls's own text is partly its `Debug` form (`UnknownIssuer`): in words.
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(_) => io::Error::new(e.kind(), crate::explain::io(&e)),
                    None => e,
                },
            )
    }
}

/// A connection the gateway opened: plaintext TCP (loopback controllers, unmeshed
/// endpoints) or TLS.
pub enum ClientIo {
    Tcp(TcpStream),
    Tls(Box<ClientStream>),
}

impl ClientIo {
    /// A TLS connection reads ahead `size` bytes per system call from now on
    /// ([`crate::wire`]); plaintext TCP is read straight into the caller's buffer already.
    pub fn read_ahead(&mut self, size: usize) {
        if let ClientIo::Tls(s) = self {
            s.get_mut().0.read_ahead(size);
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_write(cx, b),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Tcp(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Verifies the chain to the anchors, then that the leaf carries the expected identity as a
/// DNS or URI SAN; the SNI sent plays no part in the check.
#[derive(Debug)]
struct IdentityVerifier {
    roots: Arc<RootCertStore>,
    expected: Arc<str>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if names_identity(end_entity, &self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// True when one of the leaf's SANs is `id`: a DNS SAN compared case-insensitively without a
/// trailing dot, or a URI SAN compared exactly.
pub fn names_identity(cert_der: &[u8], id: &str) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let want = crate::names::normalize(id);
    san.value.general_names.iter().any(|gn| match gn {
        GeneralName::DNSName(name) => crate::names::normalize(name) == want,
        GeneralName::URI(uri) => *uri == id,
        _ => false,
    })
}
