//! Identities and credentials: PEM loading, a peer's identity from its leaf's SANs, and the
//! gateway's own certificate. The anchors, leaf and key are reloaded when they change or on
//! demand (SIGHUP) ([`watch`]), or come from Linkerd's identity controller ([`linkerd`]);
//! each result is reported for `identity_reloads_total`, and the leaf's end of life is logged
//! ([`Lifetime`]). Certificates chosen by SNI are in [`sni`]. Counting and serving stay with
//! the caller.

mod anchors;
mod files;
pub(crate) mod keep;
pub mod linkerd;
mod seen;
pub mod sni;
mod utc;
mod watch;
pub use anchors::AnchorFindings;
pub use seen::Identities;
pub use utc::{span, utc};
pub use watch::{Lifetime, WatchHooks, watch};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The identity of a certificate: its first DNS SAN or `spiffe://` URI SAN that parses.
/// Never the CN. `None` when the certificate has no such SAN or does not parse.
pub fn identity_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|gn| match gn {
        // In the normal form names are compared in (lower-case, no trailing dot), so that
        // `own.` is the gateway's own identity too.
        GeneralName::DNSName(name) if crate::names::is_dns_name(name) => {
            Some(crate::names::normalize(name))
        }
        GeneralName::URI(uri)
            if uri.starts_with("spiffe://") && crate::names::is_identity_syntax(uri) =>
        {
            Some((*uri).to_string())
        }
        _ => None,
    })
}

/// The validity window of a certificate, in Unix seconds.
pub fn validity_of(cert_der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Reads a PEM bundle of trust anchors (`identity.trust_anchors`).
pub fn load_anchors(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let certs = files::read_certs(path, "identity.trust_anchors")?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "identity.trust_anchors: {}: no certificate in it is usable as a trust anchor",
            path.display()
        ));
    }
    if ignored > 0 {
        tracing::warn!(path = %path.display(), ignored, "some trust anchors did not parse");
    }
    Ok(Arc::new(roots))
}

/// What `identity.trust_anchors` holds, judged against the gateway's leaf when there is one
/// ([`anchors::audit`]): refusals and warnings. Files that do not read give nothing here;
/// [`load`] names them.
pub fn audit_anchors(config: &crate::config::Identity) -> AnchorFindings {
    let Ok(anchors) = files::read_certs(&config.trust_anchors, "identity.trust_anchors") else {
        return AnchorFindings::default();
    };
    let leaf = match config.linkerd {
        Some(_) => None,
        None => files::read_certs(&config.certificate, "identity.certificate")
            .ok()
            .map(|mut chain| chain.swap_remove(0)),
    };
    anchors::audit(&config.trust_anchors, &anchors, leaf.as_deref())
}

/// The trust anchors `[identity]` names, refused when the file is not trust anchors
/// ([`audit_anchors`]).
pub fn anchors(config: &crate::config::Identity) -> Result<Arc<RootCertStore>, Vec<String>> {
    let roots = load_anchors(&config.trust_anchors).map_err(|e| vec![e])?;
    let refused = audit_anchors(config).errors;
    if refused.is_empty() {
        Ok(roots)
    } else {
        Err(refused)
    }
}

/// Loads what `[identity]` names: the trust anchors, then the gateway's credentials checked
/// against them. Errors name the key and the file and say what to do. With
/// `[identity.linkerd]` there are no files to load: an error (only `run` asks the controller,
/// [`linkerd`]).
pub fn load(
    config: &crate::config::Identity,
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<RootCertStore>, Credentials), Vec<String>> {
    if config.linkerd.is_some() {
        return Err(vec![
            "identity.linkerd: the leaf comes from Linkerd's identity controller at run time; \
             this command needs identity.certificate and identity.key"
                .into(),
        ]);
    }
    let roots = anchors(config)?;
    let creds = Credentials::load(
        &config.certificate,
        &config.key,
        config.name.as_deref(),
        &roots,
        provider,
    )?;
    Ok((roots, creds))
}

/// The gateway's own credentials, loaded and checked.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub key: Arc<CertifiedKey>,
    pub identity: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl Credentials {
    /// Loads the leaf (+ chain) and key, checks that they match, that the leaf is valid now
    /// and chains to `roots`, and that it carries `name` (or takes its first SAN). Every
    /// problem is reported, naming the key of `[identity]`, the file, and the fix.
    pub fn load(
        cert: &Path,
        key: &Path,
        name: Option<&str>,
        roots: &Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Credentials, Vec<String>> {
        let (chain, private) = match (
            files::read_certs(cert, "identity.certificate"),
            files::read_key(key),
        ) {
            (Ok(chain), Ok(private)) => (chain, private),
            (chain, private) => {
                return Err([chain.err(), private.err()].into_iter().flatten().collect());
            }
        };
        let leaf = chain[0].clone();
        let mut errors = Vec::new();
        let certified = CertifiedKey::from_der(chain.clone(), private, provider)
            .map_err(|e| errors.push(files::key_mismatch(cert, key, &e)))
            .ok();
        let (not_before, not_after) = validity_of(&leaf).unwrap_or((0, 0));
        let dated = files::dates(cert, (not_before, not_after), unix_now());
        let names = files::names_of(&leaf);
        let identity = match (name, identity_of(&leaf)) {
            (_, None) => {
                errors.push(format!(
                    "identity.certificate: {}: the leaf has no DNS or spiffe URI name (SAN); \
                     Linkerd identities are SANs, never the CN",
                    cert.display()
                ));
                None
            }
            (Some(n), Some(first)) => match files::name_on_leaf(cert, n, &names) {
                None => Some(n.to_ascii_lowercase()),
                Some(e) => {
                    errors.push(e);
                    // The chain is still checked, as a client of the name it carries would.
                    Some(first)
                }
            },
            (None, Some(first)) => Some(first),
        };
        if let Some(id) = &identity
            && let Some(e) = files::verify_chain(cert, &chain, id, roots, provider, dated.is_some())
        {
            errors.push(e);
        }
        errors.splice(0..0, dated);
        match (certified, identity) {
            (Some(certified), Some(identity)) if errors.is_empty() => Ok(Credentials {
                key: Arc::new(certified),
                identity,
                not_before,
                not_after,
            }),
            _ => Err(errors),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The gateway's current certificate, swapped in place when the files rotate or a new leaf is
/// issued. Serves every TLS handshake; the lock is held only to clone an `Arc`, never across
/// an await. Empty ([`CredentialStore::empty`]) until Linkerd's controller issues the first
/// leaf: handshakes then fail (no certificate to present) and the leaf is not valid now.
#[derive(Debug)]
pub struct CredentialStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    identity: String,
    not_before: AtomicI64,
    not_after: AtomicI64,
}

impl CredentialStore {
    pub fn new(creds: Credentials) -> CredentialStore {
        CredentialStore {
            current: RwLock::new(Some(creds.key)),
            identity: creds.identity,
            not_before: AtomicI64::new(creds.not_before),
            not_after: AtomicI64::new(creds.not_after),
        }
    }

    /// A store for `identity` with no leaf yet (validity 0..0: never valid).
    pub fn empty(identity: String) -> CredentialStore {
        CredentialStore {
            current: RwLock::new(None),
            identity,
            not_before: AtomicI64::new(0),
            not_after: AtomicI64::new(0),
        }
    }

    /// True once a leaf is in the store.
    pub fn has_leaf(&self) -> bool {
        self.key().is_some()
    }

    /// The gateway's own identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The current leaf's start of validity, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before.load(Ordering::Relaxed)
    }

    /// The current leaf's expiry, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// True when the current leaf is valid now.
    pub fn is_valid_now(&self) -> bool {
        let now = unix_now();
        self.not_before.load(Ordering::Relaxed) <= now && now < self.not_after()
    }

    /// The current leaf and key (an `Arc` clone; the lock is not held).
    fn key(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace(&self, creds: Credentials) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(creds.key);
        self.not_before.store(creds.not_before, Ordering::Relaxed);
        self.not_after.store(creds.not_after, Ordering::Relaxed);
    }
}

impl ResolvesServerCert for CredentialStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.key()
    }
}

/// The prober presents the same rotating leaf as a client certificate.
impl rustls::client::ResolvesClientCert for CredentialStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.key()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
