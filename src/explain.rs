//! Plain words for the errors an operator reads: rustls's TLS and certificate errors, and the
//! I/O and PEM errors of the files crossgate reads. rustls prints several of its errors in their
//! Rust `Debug` form (`UnknownIssuer`, `KeyMismatch`, `DnsName("…")`, `received fatal alert:
//! BadCertificate`), and `pem::Error` prints byte arrays; nothing here does. What a file means
//! to the gateway, and the fix that goes with it, is the caller's ([`crate::identity`]).

use rustls::{AlertDescription, CertificateError, Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem;
use std::io;
use std::path::Path;

/// A TLS error in words: certificate problems as [`certificate`] says them, alerts by their
/// RFC 8446 names and what they mean.
pub fn tls(e: &TlsError) -> String {
    match e {
        TlsError::InvalidCertificate(c) => certificate(c),
        TlsError::AlertReceived(alert) => alert_words(*alert),
        TlsError::NoCertificatesPresented => "the peer presented no certificate".into(),
        TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the key does not match the certificate".into()
        }
        TlsError::InconsistentKeys(_) => "the key cannot be checked against the certificate".into(),
        TlsError::InappropriateMessage { .. } | TlsError::InappropriateHandshakeMessage { .. } => {
            "unexpected TLS message (is the peer speaking TLS 1.3?)".into()
        }
        TlsError::InvalidMessage(m) => {
            format!("corrupt TLS message ({})", words(&format!("{m:?}")))
        }
        TlsError::PeerIncompatible(why) => {
            format!("the peer is incompatible: {}", words(&format!("{why:?}")))
        }
        TlsError::PeerMisbehaved(why) => {
            format!("the peer misbehaved: {}", words(&format!("{why:?}")))
        }
        TlsError::NoApplicationProtocol => "no application protocol (ALPN) in common".into(),
        TlsError::General(s) => s.clone(),
        TlsError::Other(o) => o.to_string(),
        // The rest print plain words already (`cannot decrypt peer's message`, ...).
        other => {
            let text = other.to_string();
            if text.contains('(') || text.contains('{') {
                words(&format!("{other:?}"))
            } else {
                text
            }
        }
    }
}

/// A certificate verification error in words, dates as RFC 3339.
pub fn certificate(e: &CertificateError) -> String {
    use CertificateError as C;
    let date = |t: &rustls_pki_types::UnixTime| crate::identity::utc(t.as_secs() as i64);
    match e {
        C::UnknownIssuer => "the chain does not lead to a trust anchor (unknown issuer)".into(),
        C::BadSignature => {
            "a signature in the chain does not verify (a certificate was signed by another key \
             of the same name)"
                .into()
        }
        C::ExpiredContext { not_after, .. } => {
            format!("a certificate in the chain expired at {}", date(not_after))
        }
        C::Expired => "a certificate in the chain has expired".into(),
        C::NotValidYetContext { not_before, .. } => format!(
            "a certificate in the chain is not valid before {} (check the clocks)",
            date(not_before)
        ),
        C::NotValidYet => "a certificate in the chain is not valid yet (check the clocks)".into(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<_> = presented.iter().map(|p| presented_name(p)).collect();
            let carried = if names.is_empty() {
                "no DNS or IP name".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "the certificate is not for {}: it carries {carried}",
                expected.to_str()
            )
        }
        C::NotValidForName => "the certificate is not for the name asked for".into(),
        C::InvalidPurposeContext { required, .. } => format!(
            "the certificate is not for {required} (its extended key usage lacks it; Linkerd \
             leaves carry both server and client authentication)"
        ),
        C::InvalidPurpose => "the certificate's extended key usage does not allow this use".into(),
        C::BadEncoding => "a certificate does not parse (bad DER)".into(),
        C::UnhandledCriticalExtension => "a certificate has an unknown critical extension".into(),
        C::Revoked => "a certificate in the chain is revoked".into(),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "a certificate is signed with an algorithm TLS 1.3 does not accept here (use ECDSA \
             P-256/P-384, Ed25519 or RSA of 2048 bits or more)"
                .into()
        }
        C::Other(o) => o.to_string(),
        other => words(&format!("{other:?}")),
    }
}

/// webpki's presented names are `DnsName("a.b")` or `IpAddress(..)` in its `Debug` form: the
/// name alone.
fn presented_name(p: &str) -> String {
    match (p.find('('), p.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            p[open + 1..close].trim_matches('"').to_string()
        }
        _ => p.to_string(),
    }
}

/// An alert the peer sent, by its RFC 8446 name and what it usually means here.
fn alert_words(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let meaning = match alert {
        A::BadCertificate => "bad_certificate: the peer refused our certificate",
        A::UnknownCA => "unknown_ca: our certificate does not chain to the peer's trust anchors",
        A::CertificateExpired => "certificate_expired: the peer finds our certificate expired",
        A::CertificateRequired => "certificate_required: the peer wants a client certificate",
        A::CertificateUnknown => "certificate_unknown: the peer refused our certificate",
        A::AccessDenied => "access_denied: the peer refused us",
        A::HandshakeFailure => "handshake_failure: no parameters in common",
        A::ProtocolVersion => "protocol_version: the peer does not speak TLS 1.3",
        A::NoApplicationProtocol => "no_application_protocol: no ALPN protocol in common",
        A::UnrecognisedName => "unrecognized_name: the peer does not serve that name (SNI)",
        A::Unknown(code) => return format!("the peer sent the TLS alert {code}"),
        _ => {
            return format!(
                "the peer sent the TLS alert {}",
                snake(&format!("{alert:?}"))
            );
        }
    };
    format!("the peer sent the TLS alert {meaning}")
}

/// An I/O error, with the TLS error inside it in words when there is one.
pub fn io(e: &io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) {
        return tls(inner);
    }
    e.to_string()
}

/// A file that cannot be read, with the fix for the usual causes.
pub fn file(path: &Path, e: &io::Error) -> String {
    let file = path.display();
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "{file}: permission denied: user {} cannot read it. In Kubernetes set the pod's \
             securityContext.fsGroup and the Secret (or ConfigMap) volume's defaultMode: 0440; \
             elsewhere make the file readable by that user",
            rustix::process::getuid().as_raw()
        ),
        io::ErrorKind::NotFound => format!("{file} does not exist"),
        _ => format!("{file}: cannot read: {e}"),
    }
}

/// What a PEM file was expected to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemKind {
    Certificates,
    PrivateKey,
}

/// A PEM file that does not give what it should.
pub fn pem(path: &Path, kind: PemKind, e: &pem::Error) -> String {
    let file = path.display();
    match e {
        pem::Error::Io(io) => self::file(path, io),
        pem::Error::NoItemsFound => {
            let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
            let state = if empty { " (the file is empty)" } else { "" };
            match kind {
                PemKind::PrivateKey => format!(
                    "{file} holds no PEM private key{state}: expected a \"BEGIN PRIVATE KEY\" \
                     (PKCS#8), \"BEGIN EC PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\" block"
                ),
                PemKind::Certificates => format!(
                    "{file} holds no PEM certificate{state}: expected \"BEGIN CERTIFICATE\" \
                     blocks"
                ),
            }
        }
        pem::Error::MissingSectionEnd { .. } => {
            format!("{file}: a PEM block has no END line (the file is cut short)")
        }
        pem::Error::IllegalSectionStart { .. } => {
            format!("{file}: a PEM BEGIN line is malformed")
        }
        pem::Error::Base64Decode(_) => {
            format!("{file}: a PEM block is not valid base64 (the file is damaged)")
        }
        other => format!("{file}: {other}"),
    }
}

/// `UnknownIssuer` -> `unknown issuer`: a `Debug` variant name as lower-case words, its data
/// (from the first `(` or `{`) left out.
fn words(debug: &str) -> String {
    let name = debug.split(['(', '{', ' ']).next().unwrap_or(debug);
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `DecodeError` -> `decode_error`, as RFC 8446 names alerts.
fn snake(debug: &str) -> String {
    words(debug).replace(' ', "_")
}

#[cfg(test)]
mod tests;
