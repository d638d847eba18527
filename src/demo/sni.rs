//! The demo's SNI step: one connection routed by its server name on the mTLS port (TLS ends
//! at the gateway, which shows the certificate `[[sni.certificate]]` gives that name), and
//! one spliced by its server name on the passthrough port (the workload's own TLS, end to
//! end: the gateway holds neither its key nor its anchor).

use crate::certs::{LeafSpec, Pki};
use anyhow::{Context, ensure};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reached by its bare name as SNI on the mTLS port (`[sni] default_port`).
pub const ECHO: &str = "echo.demo.svc.cluster.local";
/// A TLS workload reached through the passthrough port.
pub const SECURE: &str = "secure.demo.svc.cluster.local";

/// The step's configuration tables (`[sni]`, `[[sni.certificate]]`, `[passthrough]`); the
/// certificate for [`ECHO`] is written into `dir`.
pub fn tables(pki: &Pki, dir: &Path) -> anyhow::Result<String> {
    let leaf = pki.leaf_with(LeafSpec::identity(ECHO))?;
    std::fs::write(dir.join("echo.crt"), &leaf.cert_pem)?;
    std::fs::write(dir.join("echo.key"), &leaf.key_pem)?;
    Ok(format!(
        "[sni]\ndefault_port = 7000\n\
         [[sni.certificate]]\nnames = [\"{ECHO}\"]\ncertificate = \"echo.crt\"\nkey = \"echo.key\"\n\
         [passthrough]\nlisten = \"127.0.0.1:0\"\nallow = [\"{SECURE}\"]\n"
    ))
}

/// A TLS echo server for [`SECURE`] under its own PKI; its address and that PKI's anchor.
pub async fn spawn_secure_backend() -> anyhow::Result<(SocketAddr, String)> {
    let pki = Pki::new()?;
    let leaf = pki.leaf_with(LeafSpec::identity(SECURE))?;
    let chain =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    Ok((addr, pki.anchor_pem()))
}

/// Writes `payload` on a fresh TLS connection to `addr` with SNI `name` and reads until EOF;
/// the server's leaf and what came back.
async fn echo_through(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
    payload: &[u8],
) -> anyhow::Result<(String, Vec<u8>)> {
    let mut tls = crate::tls::connect(addr, config, name).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::identity::identity_of(c))
        .unwrap_or_default();
    tls.write_all(payload).await?;
    tls.shutdown().await?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .context("no answer in 5s")??;
    Ok((leaf, out))
}

/// The step: `client` is the source workload's mTLS client (no ALPN), `secure_anchor` what a
/// client of [`SECURE`] trusts.
pub async fn step(
    gateway: SocketAddr,
    passthrough: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    secure_anchor: &str,
) -> anyhow::Result<()> {
    println!("   mTLS port, SNI {ECHO} (no transport header, no ALPN: opaque TCP)");
    let (leaf, reply) = echo_through(gateway, client, ECHO, b"routed by its name").await?;
    println!(
        "     the gateway showed the certificate for {leaf}; echoed {:?}",
        String::from_utf8_lossy(&reply)
    );
    ensure!(reply == b"routed by its name", "SNI-routed echo mismatch");

    println!("   passthrough port {passthrough}, SNI {SECURE} (TLS not terminated)");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(secure_anchor.as_bytes()) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (leaf, reply) = echo_through(passthrough, Arc::new(config), SECURE, b"end to end").await?;
    println!(
        "     the handshake was with {leaf} itself; echoed {:?}",
        String::from_utf8_lossy(&reply)
    );
    ensure!(reply == b"end to end", "passthrough echo mismatch");
    Ok(())
}
