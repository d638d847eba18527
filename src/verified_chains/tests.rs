//! The cache against a real WebPKI verifier and rcgen chains: what it remembers, for how long,
//! and that it never remembers a refusal.

use super::*;
use crate::certs::{LeafSpec, Pki};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;

const CALLER: &str = "web.east.serviceaccount.identity.linkerd.cluster.local";

fn verifier(pki: &Pki) -> (CachedChains, ChainCounters) {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.anchor_pem().as_bytes()).unwrap())
        .unwrap();
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .unwrap();
    let counters = ChainCounters::default();
    (CachedChains::new(inner, counters.clone()), counters)
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn verify(v: &CachedChains, chain: &[CertificateDer<'static>], now: u64) -> Result<(), Error> {
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now));
    v.verify_client_cert(&chain[0], &chain[1..], now)
        .map(|_| ())
}

fn now() -> u64 {
    UnixTime::now().as_secs()
}

fn counts(c: &ChainCounters) -> (u64, u64) {
    (c.hits.get(), c.misses.get())
}

#[test]
fn a_chain_is_verified_once_then_found() {
    let pki = Pki::new().unwrap();
    let (v, c) = verifier(&pki);
    let leaf = chain(&pki.leaf(CALLER).unwrap().cert_pem);
    assert_eq!(leaf.len(), 2, "leaf and issuer");
    verify(&v, &leaf, now()).unwrap();
    assert_eq!(counts(&c), (0, 1));
    verify(&v, &leaf, now()).unwrap();
    verify(&v, &leaf, now()).unwrap();
    assert_eq!(counts(&c), (2, 1));
    // Another leaf from the same issuer is its own chain.
    let other = chain(&pki.leaf(CALLER).unwrap().cert_pem);
    verify(&v, &other, now()).unwrap();
    assert_eq!(counts(&c), (2, 2));
}

#[test]
fn the_same_leaf_with_other_intermediates_is_verified_again() {
    let pki = Pki::new().unwrap();
    let (v, c) = verifier(&pki);
    let full = chain(&pki.leaf(CALLER).unwrap().cert_pem);
    verify(&v, &full, now()).unwrap();
    // The leaf alone does not chain to the anchor: a remembered chain must not vouch for it.
    let err = verify(&v, &full[..1], now()).unwrap_err();
    assert!(matches!(err, Error::InvalidCertificate(_)), "{err}");
    assert_eq!(counts(&c), (0, 2));
}

#[test]
fn a_refused_chain_is_never_remembered() {
    let pki = Pki::new().unwrap();
    let stranger = Pki::new().unwrap();
    let (v, c) = verifier(&pki);
    let foreign = chain(&stranger.leaf(CALLER).unwrap().cert_pem);
    for _ in 0..3 {
        assert!(verify(&v, &foreign, now()).is_err());
    }
    assert_eq!(counts(&c), (0, 3));
}

#[test]
fn a_chain_is_found_only_until_its_leaf_expires() {
    let pki = Pki::new().unwrap();
    let (v, c) = verifier(&pki);
    let mut spec = LeafSpec::identity(CALLER);
    let t = time::OffsetDateTime::now_utc();
    spec.not_after = t + time::Duration::hours(1);
    let leaf = chain(&pki.leaf_with(spec).unwrap().cert_pem);
    verify(&v, &leaf, now()).unwrap();
    verify(&v, &leaf, now() + 3000).unwrap();
    assert_eq!(counts(&c), (1, 1));
    // Past notAfter the chain is verified in full again, and refused as expired.
    let err = verify(&v, &leaf, now() + 7200).unwrap_err();
    assert!(
        matches!(err, Error::InvalidCertificate(ref e) if format!("{e:?}").contains("Expired")),
        "{err}"
    );
    assert_eq!(counts(&c), (1, 2));
}

#[test]
fn the_cache_holds_at_most_its_bound() {
    let pki = Pki::new().unwrap();
    let leaf = chain(&pki.leaf(CALLER).unwrap().cert_pem);
    let mut chains = Chains::default();
    let t = now();
    for i in 0..(MAX_CHAINS as u64 + 10) {
        // Distinct keys standing for distinct chains; expired ones go first.
        let expires = if i % 2 == 0 { t - 1 } else { t + 3600 };
        chains.insert(i, leaf.clone().into(), expires, t);
        assert!(chains.entries.len() <= MAX_CHAINS);
    }
    assert!(chains.entries.len() <= MAX_CHAINS);
}
