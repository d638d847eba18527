//! Reading `[identity]`'s files and saying what is wrong with them: the key of `[identity]`,
//! the file, and what to do (append the issuer, fix the Secret volume's mode, take the key
//! from the same Secret). Used by `check`, `run`, reloads and the prober alike, so each
//! problem reads the same everywhere. The words for TLS and I/O errors are [`crate::explain`].

use crate::explain::{self, PemKind};
use rustls::CertificateError;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The certificates of a PEM file; `key` names it in `[identity]`.
pub(super) fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e| format!("{key}: {}", explain::pem(path, PemKind::Certificates, &e));
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(bad(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The private key of `identity.key`.
pub(super) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "identity.key: {}",
            explain::pem(path, PemKind::PrivateKey, &e)
        )
    })
}

/// The key does not match the leaf: both files named.
pub(super) fn key_mismatch(cert: &Path, key: &Path, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
            "identity.key: the key in {} does not match the certificate in {}: take both from \
             the same issuance (tls.key and tls.crt of one Secret)",
            key.display(),
            cert.display()
        ),
        other => format!(
            "identity.key: {} cannot serve with {}: {}",
            key.display(),
            cert.display(),
            explain::tls(other)
        ),
    }
}

/// The leaf's dates against `now`: expired or not yet valid, as RFC 3339 dates.
pub(super) fn dates(cert: &Path, (not_before, not_after): (i64, i64), now: i64) -> Option<String> {
    let file = cert.display();
    let (utc, span) = (super::utc, super::utc::span);
    if now >= not_after {
        Some(format!(
            "identity.certificate: {file}: the leaf expired at {} ({} ago): issue a new one",
            utc(not_after),
            span(now - not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "identity.certificate: {file}: the leaf is not valid before {} (in {}): check the \
             clock of the machine that issued it",
            utc(not_before),
            span(not_before - now)
        ))
    } else {
        None
    }
}

/// Every DNS and URI name of a certificate, as written.
pub(super) fn names_of(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|gn| match gn {
            GeneralName::DNSName(n) => Some((*n).to_string()),
            GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}

/// `identity.name` is one of the leaf's names (DNS names compared in normal form).
pub(super) fn name_on_leaf(cert: &Path, name: &str, names: &[String]) -> Option<String> {
    let wanted = crate::names::normalize(name);
    if names.iter().any(|n| crate::names::normalize(n) == wanted) {
        return None;
    }
    let carried = if names.is_empty() {
        "no DNS or spiffe URI name".to_string()
    } else {
        names.join(", ")
    };
    Some(format!(
        "identity.name: {name} is not a name of the leaf in {}: it carries {carried}; set \
         identity.name to one of them, or remove it to take the first",
        cert.display()
    ))
}

/// Verifies the chain to the anchors and its validity now, as a source proxy will when it
/// connects to `identity` (a DNS name: as a server; a `spiffe://` URI: as a client).
pub(super) fn verify(
    chain: &[CertificateDer<'static>],
    identity: &str,
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    let now = UnixTime::now();
    let general = |e: &dyn std::fmt::Display| rustls::Error::General(e.to_string());
    if let Ok(server_name) = ServerName::try_from(identity.to_string()) {
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| general(&e))?
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
            .map(|_| ())
    } else {
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| general(&e))?
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map(|_| ())
    }
}

/// [`verify`] for `identity.certificate`, its failure in words with the fix. `dated`: the
/// leaf's dates were reported already ([`dates`]), so webpki's words for them are left out.
pub(super) fn verify_chain(
    cert: &Path,
    chain: &[CertificateDer<'static>],
    identity: &str,
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    dated: bool,
) -> Option<String> {
    let verified = verify(chain, identity, roots, provider);
    let file = cert.display();
    match verified {
        Ok(()) => None,
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            CertificateError::UnknownIssuer if chain.len() == 1 => Some(format!(
                "identity.certificate: {file} holds only the leaf: append the issuer \
                 certificate (the leaf first, then its issuer, as Linkerd's identity Secrets \
                 hold them) so that it chains to identity.trust_anchors"
            )),
            CertificateError::UnknownIssuer => Some(format!(
                "identity.certificate: {file} does not chain to identity.trust_anchors: the \
                 issuer after the leaf was not signed by any trust anchor (anchors of another \
                 PKI, or another issuer appended)"
            )),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
                if dated =>
            {
                None
            }
            other => Some(format!(
                "identity.certificate: {file} does not verify: {}",
                explain::certificate(&other)
            )),
        },
        Err(other) => Some(format!(
            "identity.certificate: {file} does not verify: {}",
            explain::tls(&other)
        )),
    }
}
