//! A cache of client certificate chains already verified against the trust anchors in force.
//!
//! A Linkerd peer presents the same leaf on every connection for its 24-hour life, and each
//! full handshake would verify that chain again (two ECDSA P-256 verifications). The cache
//! remembers chains that verified, keyed by their exact bytes, until the earliest `notAfter`
//! in the chain; it lives inside one verifier, which is rebuilt with new anchors when they
//! rotate, so an anchor change drops it. The CertificateVerify signature, the proof that the
//! client holds the leaf's key, is checked on every handshake by the inner verifier: only the
//! chain's verification is remembered, never the handshake's.
//!
//! Bounded: at most [`MAX_CHAINS`] chains; a full cache first drops expired ones, then one
//! arbitrary chain (a miss costs one verification, nothing else). The lock is a plain mutex
//! held for a hash lookup, never across an await (verification is synchronous).

use prometheus_client::metrics::counter::Counter;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// The most chains remembered: one per calling workload's leaf, a few hundred KiB at most.
pub const MAX_CHAINS: usize = 2048;

/// What the cache counts: chains found (`hit`) and chains verified in full (`miss`).
#[derive(Clone, Default)]
pub struct ChainCounters {
    pub hits: Counter,
    pub misses: Counter,
}

/// A client-certificate verifier that remembers the chains its inner verifier accepted.
pub struct CachedChains {
    inner: Arc<dyn ClientCertVerifier>,
    chains: Mutex<Chains>,
    counters: ChainCounters,
}

/// A remembered chain: its exact certificates, and until when its verification holds.
struct Entry {
    chain: Box<[CertificateDer<'static>]>,
    not_after: u64,
}

#[derive(Default)]
struct Chains {
    // Keyed by a keyed hash of the chain's certificates, each by its length and its end (its
    // signature: `SignatureHash`); the stored bytes are compared in full before an entry counts.
    hasher: crate::kept::SignatureHash,
    entries: HashMap<u64, Entry>,
}

impl std::fmt::Debug for CachedChains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedChains").finish_non_exhaustive()
    }
}

impl CachedChains {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, counters: ChainCounters) -> CachedChains {
        CachedChains {
            inner,
            chains: Mutex::default(),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chains> {
        self.chains.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Chains {
    fn key(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for cert in std::iter::once(end_entity).chain(intermediates) {
            cert[..].hash(&mut h);
        }
        h.finish()
    }

    /// True when this exact chain verified before and is within its validity at `now`.
    fn holds(
        &self,
        key: u64,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: u64,
    ) -> bool {
        let Some(entry) = self.entries.get(&key) else {
            return false;
        };
        now < entry.not_after
            && entry.chain.len() == intermediates.len() + 1
            && entry.chain[0] == *end_entity
            && entry.chain[1..] == *intermediates
    }

    fn insert(
        &mut self,
        key: u64,
        chain: Box<[CertificateDer<'static>]>,
        not_after: u64,
        now: u64,
    ) {
        if self.entries.len() >= MAX_CHAINS && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| now < e.not_after);
            if self.entries.len() >= MAX_CHAINS
                && let Some(&any) = self.entries.keys().next()
            {
                self.entries.remove(&any);
            }
        }
        self.entries.insert(key, Entry { chain, not_after });
    }
}

/// The earliest `notAfter` of the chain, Unix seconds; `None` if a certificate does not parse
/// (then the chain is not remembered).
fn earliest_not_after(chain: &[CertificateDer<'static>]) -> Option<u64> {
    chain
        .iter()
        .map(|c| {
            let (_, not_after) = crate::identity::validity_of(c)?;
            u64::try_from(not_after).ok()
        })
        .try_fold(u64::MAX, |min, t| Some(min.min(t?)))
}

impl ClientCertVerifier for CachedChains {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let secs = now.as_secs();
        let key = {
            let chains = self.lock();
            let key = chains.key(end_entity, intermediates);
            if chains.holds(key, end_entity, intermediates, secs) {
                self.counters.hits.inc();
                return Ok(ClientCertVerified::assertion());
            }
            key
        };
        self.counters.misses.inc();
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let chain: Box<[CertificateDer<'static>]> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        if let Some(not_after) = earliest_not_after(&chain) {
            self.lock().insert(key, chain, not_after, secs);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
