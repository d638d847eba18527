//! Each mapping in words, with none of the `Debug` shapes rustls and pki-types print.

use super::*;
use rustls::pki_types::ServerName;

/// The shapes no operator should read.
const DEBUG_SHAPES: &[&str] = &[
    "DnsName(",
    "UnknownIssuer",
    "KeyMismatch",
    "Os {",
    "Some(",
    "kind:",
    "BadCertificate",
    "[45, 45",
];

fn plain(text: &str) -> &str {
    for shape in DEBUG_SHAPES {
        assert!(!text.contains(shape), "{shape} in {text}");
    }
    text
}

#[test]
fn certificate_errors_in_words() {
    let unknown = certificate(&CertificateError::UnknownIssuer);
    assert!(plain(&unknown).contains("unknown issuer"), "{unknown}");
    let name = certificate(&CertificateError::NotValidForNameContext {
        expected: ServerName::try_from("other.ns.svc").unwrap(),
        presented: vec!["DnsName(\"gw.ns.serviceaccount\")".into(), "a.b".into()],
    });
    assert_eq!(
        plain(&name),
        "the certificate is not for other.ns.svc: it carries gw.ns.serviceaccount, a.b"
    );
    let expired = certificate(&CertificateError::ExpiredContext {
        time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_767_225_700,
        )),
        not_after: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_767_225_600,
        )),
    });
    assert_eq!(
        plain(&expired),
        "a certificate in the chain expired at 2026-01-01T00:00:00Z"
    );
    for e in [
        CertificateError::BadSignature,
        CertificateError::Revoked,
        CertificateError::UnknownRevocationStatus,
        CertificateError::ApplicationVerificationFailure,
    ] {
        plain(&certificate(&e));
    }
    assert_eq!(
        certificate(&CertificateError::UnknownRevocationStatus),
        "unknown revocation status"
    );
}

#[test]
fn tls_errors_in_words() {
    let mismatch = tls(&TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch));
    assert_eq!(plain(&mismatch), "the key does not match the certificate");
    let alert = tls(&TlsError::AlertReceived(AlertDescription::BadCertificate));
    assert!(plain(&alert).contains("bad_certificate"), "{alert}");
    let other = tls(&TlsError::AlertReceived(AlertDescription::DecodeError));
    assert_eq!(plain(&other), "the peer sent the TLS alert decode_error");
    let unknown = tls(&TlsError::AlertReceived(AlertDescription::Unknown(200)));
    assert_eq!(plain(&unknown), "the peer sent the TLS alert 200");
    let wrapped = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
    );
    assert!(plain(&io(&wrapped)).contains("unknown issuer"));
    plain(&tls(&TlsError::PeerMisbehaved(
        rustls::PeerMisbehaved::IllegalMiddleboxChangeCipherSpec,
    )));
}

#[test]
fn files_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    std::fs::write(&key, "").unwrap();
    let e = rustls_pki_types::pem::Error::NoItemsFound;
    let text = pem(&key, PemKind::PrivateKey, &e);
    assert!(
        plain(&text).contains("tls.key holds no PEM private key (the file is empty)"),
        "{text}"
    );
    let cut = rustls_pki_types::pem::Error::MissingSectionEnd {
        end_marker: b"-----END CERTIFICATE-----".to_vec(),
    };
    assert!(plain(&pem(&key, PemKind::Certificates, &cut)).contains("no END line"));
    let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let text = file(&key, &denied);
    assert!(plain(&text).contains("defaultMode: 0440"), "{text}");
    assert!(text.contains("fsGroup"), "{text}");
    let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
    assert!(plain(&file(&key, &missing)).ends_with("tls.key does not exist"));
}
