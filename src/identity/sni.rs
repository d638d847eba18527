//! Certificates chosen by SNI (`[[sni.certificate]]`), for clients that check the server name
//! against the target they asked for (a plain TLS client, or one given a wildcard for
//! `*.ns.svc.cluster.local`), and the gateway port's certificate resolver: the entry whose
//! names match the ClientHello's SNI (the service name of Istio's form), else the gateway's
//! own leaf. Each entry's files are read again when they change or on SIGHUP ([`watch`]);
//! files that do not load leave the entry's current certificate in force.

use super::CredentialStore;
use super::files::read_certs;
use crate::authz::Pattern;
use crate::config::SniCertificate;
use crate::explain::{self, PemKind};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The `[[sni.certificate]]` entries, each with the certificate in force.
#[derive(Debug, Default)]
pub struct SniCertificates {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    names: Vec<Pattern>,
    files: SniCertificate,
    key: RwLock<Arc<CertifiedKey>>,
}

impl SniCertificates {
    /// Loads every entry; the errors name the files.
    pub fn load(
        config: &[SniCertificate],
        provider: &Arc<CryptoProvider>,
    ) -> Result<SniCertificates, Vec<String>> {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for files in config {
            match load_one(files, provider) {
                Ok(key) => entries.push(Entry {
                    names: files.names.clone(),
                    files: files.clone(),
                    key: RwLock::new(Arc::new(key)),
                }),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(SniCertificates { entries })
        } else {
            Err(errors)
        }
    }

    /// No `[[sni.certificate]]`: every handshake gets the gateway's own leaf.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The certificate of the first entry with a name matching the host `sni` names.
    pub fn for_sni(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let host = crate::sni::host_of(sni);
        let entry = self
            .entries
            .iter()
            .find(|e| e.names.iter().any(|p| p.matches(host)))?;
        Some(entry.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Reads each entry's files again when their modification times change (checked every
    /// `interval`) or when `reload_now` is notified; a set that does not load is logged once
    /// and the entry keeps its certificate. Runs until dropped.
    pub async fn watch(
        self: Arc<Self>,
        provider: Arc<CryptoProvider>,
        interval: std::time::Duration,
        reload_now: Arc<tokio::sync::Notify>,
    ) {
        let stamps = {
            let me = self.clone();
            move || {
                me.entries
                    .iter()
                    .map(|e| stamps(&e.files))
                    .collect::<Vec<_>>()
            }
        };
        let Ok(mut last) = tokio::task::spawn_blocking(stamps.clone()).await else {
            return;
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = reload_now.notified() => true,
            };
            let Ok(now) = tokio::task::spawn_blocking(stamps.clone()).await else {
                continue;
            };
            for (i, entry) in self.entries.iter().enumerate() {
                if !forced && now[i] == last[i] {
                    continue;
                }
                let (files, p) = (entry.files.clone(), provider.clone());
                match tokio::task::spawn_blocking(move || load_one(&files, &p)).await {
                    Ok(Ok(key)) => {
                        *entry.key.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                        tracing::info!(certificate = %entry.files.certificate.display(), forced, "SNI certificate reloaded");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "SNI certificate files do not load; keeping the current one");
                    }
                    Err(e) => tracing::warn!(error = %e, "reload task failed"),
                }
            }
            last = now;
        }
    }
}

fn stamps(files: &SniCertificate) -> [Option<SystemTime>; 2] {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [stamp(&files.certificate), stamp(&files.key)]
}

/// One entry's leaf (+ chain) and key, checked to match.
fn load_one(
    files: &SniCertificate,
    provider: &Arc<CryptoProvider>,
) -> Result<CertifiedKey, String> {
    let chain = read_certs(&files.certificate, "sni.certificate.certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "sni.certificate.key: {}",
            explain::pem(&files.key, PemKind::PrivateKey, &e)
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "sni.certificate: the key in {} does not match the leaf in {}: {}",
            files.key.display(),
            files.certificate.display(),
            explain::tls(&e)
        )
    })
}

/// The gateway port's certificates: by SNI when an entry names it, else the gateway's own.
#[derive(Debug)]
pub struct SniResolver {
    pub own: Arc<CredentialStore>,
    pub sni: Arc<SniCertificates>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.sni.for_sni(name))
            .or_else(|| self.own.key())
    }
}
