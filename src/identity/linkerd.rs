//! The gateway's leaf from Linkerd's identity controller, as every linkerd2-proxy takes its
//! own (`linkerd/proxy/identity-client/src/certify.rs`): an ECDSA P-256 key made in memory at
//! start (never written anywhere) and a CSR for the own name; `Identity.Certify` with the
//! ServiceAccount token (read again at each call, as tokens rotate), over TLS to the
//! controller's identity verified against the trust anchors with no client certificate, or
//! plaintext to a loopback address. The answer is checked before it is used ([`Certifier`]),
//! then swapped into the credential store as a file reload is ([`run`]). Renewal comes at
//! 70 % of the remaining life, clamped to `[min_refresh, max_refresh]`; a failure is retried
//! with a backoff from 1 s, capped at `min_refresh`, while the current leaf serves.

use super::{CredentialStore, Credentials, Lifetime, WatchHooks, unix_now};
use crate::client_tls::ClientTls;
use crate::config::LinkerdIdentity;
use crate::discovery::ServerId;
use crate::discovery::destination::connect::Connector;
use linkerd2_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// How long one Certify may take, connect included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the connect to the controller may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first retry after a failed Certify; doubled up to `min_refresh`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Why a Certify gave no leaf to serve with.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("cannot read the token file {path}: {error}")]
    Token { path: String, error: std::io::Error },
    #[error("the controller answered gRPC status {} ({code}): {message}", *code as i32)]
    Status { code: tonic::Code, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The controller answered with a leaf the gateway does not use.
    #[error("leaf refused: {0}")]
    Refused(String),
}

impl CertifyError {
    /// The `result` label of `identity_certify_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            CertifyError::Refused(_) => "refused",
            _ => "error",
        }
    }
}

/// A leaf the controller issued, checked, and when to ask for the next one.
pub struct Issued {
    pub creds: Credentials,
    /// The earlier of `valid_until` and the leaf's `notAfter`, Unix seconds.
    pub expiry: i64,
}

/// The key, the CSR and the channel to the controller; [`Certifier::certify`] asks for a leaf.
pub struct Certifier {
    name: String,
    token_file: std::path::PathBuf,
    key_pkcs8: Vec<u8>,
    csr_der: Vec<u8>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    channel: Channel,
}

impl Certifier {
    /// Makes the key and the CSR for `name`, and a lazy channel to the controller (no
    /// connection until the first call). Call inside the runtime.
    pub fn new(
        name: &str,
        config: &LinkerdIdentity,
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Certifier, String> {
        let (key_pkcs8, csr_der) = key_and_csr(name).map_err(|e| format!("CSR for {name}: {e}"))?;
        let tls = config.server_name.as_deref().map(|sn| {
            let anonymous = ClientTls::without_client_cert(roots.clone(), provider.clone());
            let id = ServerId {
                id: sn.into(),
                server_name: sn.into(),
            };
            (Arc::new(anonymous), id)
        });
        let uri: http::Uri = format!("http://{}", config.addr)
            .parse()
            .map_err(|e| format!("identity.linkerd.addr {}: {e}", config.addr))?;
        let connector = Connector {
            addr: config.addr.as_str().into(),
            tls,
            timeout: CONNECT_TIMEOUT,
        };
        let channel = tonic::transport::Endpoint::from(uri).connect_with_connector_lazy(connector);
        Ok(Certifier {
            name: name.to_string(),
            token_file: config.token_file.clone(),
            key_pkcs8,
            csr_der,
            roots,
            provider,
            channel,
        })
    }

    /// One Certify: reads the token, asks, and checks the answer ([`Certifier::check`]).
    pub async fn certify(&self) -> Result<Issued, CertifyError> {
        let path = self.token_file.clone();
        let token = tokio::fs::read(&path)
            .await
            .map_err(|error| CertifyError::Token {
                path: path.display().to_string(),
                error,
            })?;
        let request = CertifyRequest {
            identity: self.name.clone(),
            token,
            certificate_signing_request: self.csr_der.clone(),
        };
        let mut client = IdentityClient::new(self.channel.clone());
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.certify(request))
            .await
            .map_err(|_| CertifyError::Timeout(CALL_TIMEOUT))?
            .map_err(|s| CertifyError::Status {
                code: s.code(),
                message: s.message().to_string(),
            })?
            .into_inner();
        let valid_until = answer.valid_until.map(|t| t.seconds);
        let mut chain = vec![CertificateDer::from(answer.leaf_certificate)];
        chain.extend(
            answer
                .intermediate_certificates
                .into_iter()
                .map(CertificateDer::from),
        );
        self.check(chain, valid_until, unix_now())
            .map_err(CertifyError::Refused)
    }

    /// What linkerd2-proxy checks and more, since a bad leaf would refuse every client: the
    /// leaf matches the key, names the own identity, chains to the anchors through the
    /// intermediates and is valid now; `valid_until` is present and in the future.
    pub fn check(
        &self,
        chain: Vec<CertificateDer<'static>>,
        valid_until: Option<i64>,
        now: i64,
    ) -> Result<Issued, String> {
        let valid_until = valid_until.ok_or("the answer has no valid_until")?;
        if valid_until <= now {
            return Err(format!(
                "valid_until {} is not in the future",
                super::utc(valid_until)
            ));
        }
        let leaf = chain.first().cloned().ok_or("no leaf")?;
        if !crate::client_tls::names_identity(&leaf, &self.name) {
            let found = super::identity_of(&leaf).unwrap_or_else(|| "no identity".into());
            return Err(format!("the leaf is for {found}, not {}", self.name));
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let certified =
            CertifiedKey::from_der(chain.clone(), key, &self.provider).map_err(|e| {
                format!(
                    "the leaf does not match the gateway's key: {}",
                    crate::explain::tls(&e)
                )
            })?;
        super::files::verify(&chain, &self.name, &self.roots, &self.provider)
            .map_err(|e| format!("the leaf does not verify: {}", crate::explain::tls(&e)))?;
        let (not_before, not_after) = super::validity_of(&leaf).ok_or("the leaf does not parse")?;
        Ok(Issued {
            creds: Credentials {
                key: Arc::new(certified),
                identity: self.name.clone(),
                not_before,
                not_after,
            },
            expiry: valid_until.min(not_after),
        })
    }
}

/// A new P-256 key (PKCS#8 DER) and a CSR (DER) for `name`: its CN and its one SAN (a URI SAN
/// for `spiffe://`, else DNS).
fn key_and_csr(name: &str) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let ia5 = rcgen::string::Ia5String::try_from(name)?;
    params.subject_alt_names = vec![if name.starts_with("spiffe://") {
        rcgen::SanType::URI(ia5)
    } else {
        rcgen::SanType::DnsName(ia5)
    }];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_der(), csr.der().to_vec()))
}

/// When to renew a leaf with `left` of its life (`None`: expired): at 70 % of it, never
/// sooner than `min` nor later than `max`, as linkerd2-proxy does.
pub fn refresh_in(left: Option<Duration>, min: Duration, max: Duration) -> Duration {
    left.map_or(min, |left| (left * 7 / 10).clamp(min, max))
}

/// What is left of a life ending at `expiry` (Unix seconds), to the clock's precision.
fn left_until(expiry: i64) -> Option<Duration> {
    let end = std::time::UNIX_EPOCH + Duration::from_secs(expiry.max(0) as u64);
    end.duration_since(std::time::SystemTime::now()).ok()
}

/// What the renewal loop reports besides swapping the leaf.
pub struct Reports {
    /// Each Certify's `result` label: `ok`, `error`, `refused`.
    pub certified: Box<dyn Fn(&'static str) + Send>,
    /// A new leaf is in the store.
    pub changed: Box<dyn Fn(&CredentialStore) + Send>,
}

/// Asks for a leaf at once, then renews it for ever: each new leaf goes into `store`
/// (running connections keep theirs), reported to `hooks.reloaded` and `reports`. A failure
/// keeps the current leaf and is retried with backoff. `hooks.reload_now` (SIGHUP) asks
/// again at once. Every `tick` the leaf's lifetime is checked ([`Lifetime`]). Runs until
/// dropped.
pub async fn run(
    store: Arc<CredentialStore>,
    certifier: Certifier,
    config: LinkerdIdentity,
    tick: Duration,
    hooks: WatchHooks,
    reports: Reports,
) {
    let (min, max) = (config.min_refresh, config.max_refresh);
    let mut lifetime = Lifetime::default();
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = Instant::now();
    let mut backoff = FIRST_BACKOFF.min(min);
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = hooks.reload_now.notified() => {}
            _ = every.tick() => {
                lifetime.check(&store, unix_now());
                continue;
            }
        }
        match certifier.certify().await {
            Ok(issued) => {
                let now = unix_now();
                let wait = refresh_in(left_until(issued.expiry), min, max);
                tracing::info!(
                    identity = store.identity(),
                    not_after = %super::utc(issued.creds.not_after),
                    renew_in = ?wait,
                    since_start = ?started.elapsed(),
                    "new leaf from the identity controller"
                );
                store.replace(issued.creds);
                (reports.changed)(&store);
                (reports.certified)("ok");
                if let Some(f) = &hooks.reloaded {
                    f(true)
                }
                lifetime.check(&store, now);
                backoff = FIRST_BACKOFF.min(min);
                next = Instant::now() + wait;
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in = ?backoff,
                    has_leaf = store.has_leaf(),
                    "Certify failed; keeping the current leaf"
                );
                (reports.certified)(e.label());
                if let (CertifyError::Refused(_), Some(f)) = (&e, &hooks.reloaded) {
                    f(false)
                }
                next = Instant::now() + backoff;
                backoff = (backoff * 2).min(min);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_70_percent_clamped() {
        let (min, max) = (Duration::from_secs(10), Duration::from_secs(86_400));
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(refresh_in(secs(1000), min, max), Duration::from_secs(700));
        assert_eq!(refresh_in(secs(5), min, max), min, "below min_refresh");
        assert_eq!(refresh_in(None, min, max), min, "already expired");
        assert_eq!(
            refresh_in(secs(10 * 86_400), min, max),
            max,
            "above max_refresh"
        );
        assert!(left_until(unix_now() - 1).is_none());
    }

    #[test]
    fn csr_names_the_identity() {
        let (key, csr) =
            key_and_csr("gw.ns.serviceaccount.identity.linkerd.cluster.local").unwrap();
        assert!(!key.is_empty());
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr);
        let params = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
        assert_eq!(params.params.subject_alt_names.len(), 1);
    }
}
