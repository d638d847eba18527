//! The verified-chain cache on the gateway port: a Linkerd peer's chain is verified once and
//! then found, while the proof that the client holds its key (CertificateVerify) is checked on
//! every handshake, and new anchors start from an empty cache.

mod support;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use support::*;
use tokio::io::AsyncWriteExt;

const TCPECHO: &str = "tcpecho.test.svc.cluster.local:9899";
const CALLER: &str = "web.east.serviceaccount.identity.linkerd.cluster.local";

fn cache_line(result: &str, n: u64) -> String {
    format!("inbound_tls_chain_cache_total{{result=\"{result}\"}} {n}")
}

/// One opaque connection through the gateway with `config`; true when the echo came back.
async fn echoes(gw: &TestGateway, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut tls) = crossgate::tls::connect(gw.addr, config, GATEWAY).await else {
        return false;
    };
    let _ = tls.write_all(&vector("opaque.hex")).await;
    let _ = tls.write_all(b"ping").await;
    let _ = tls.shutdown().await;
    read_all(&mut tls).await == b"ping"
}

/// Presents a fixed chain with a key of its own choosing: here, a key that is not the leaf's.
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A client presenting `chain_pem` and signing the handshake with `key_pem`.
fn client_presenting(
    anchor_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Arc<rustls::ClientConfig> {
    let provider = crossgate::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(anchor_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let key = provider.key_provider.load_private_key(key).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Presents(Arc::new(CertifiedKey::new(chain, key)))));
    config.alpn_protocols = ALPN_TRANSPORT.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[tokio::test]
async fn a_chain_is_verified_once_and_the_key_proof_every_time() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&static_route(TCPECHO, echo)).await;
    let leaf = gw.pki.leaf(CALLER).unwrap();
    let client = gw.client_with_leaf(&leaf, ALPN_TRANSPORT);
    assert!(echoes(&gw, client.clone()).await);
    gw.wait_metric(&cache_line("miss", 1)).await;
    for _ in 0..3 {
        assert!(echoes(&gw, client.clone()).await);
    }
    gw.wait_metric(&cache_line("hit", 3)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4);

    // The same chain, the handshake signed with another key: the chain is found, and the
    // handshake is refused all the same; nothing reaches the backend.
    let thief = gw.pki.leaf(CALLER).unwrap();
    let forged = client_presenting(&gw.pki.anchor_pem(), &leaf.cert_pem, &thief.key_pem);
    assert!(
        !echoes(&gw, forged).await,
        "a chain without its key was served"
    );
    gw.wait_metric(&cache_line("hit", 4)).await;
    gw.wait_metric(&handshake_failure_line("untrusted", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4);

    // New anchors (here, the same ones put in force again) start from an empty cache.
    gw.gw.tls.rebuild(gw.gw.tls.roots()).unwrap();
    assert!(echoes(&gw, client).await);
    gw.wait_metric(&cache_line("miss", 2)).await;
    gw.wait_metric(&cache_line("hit", 4)).await;
    gw.shutdown().await;
}
