//! A Linkerd-style development PKI (rcgen): a self-signed trust anchor, an issuer
//! (`identity.linkerd.cluster.local`), and ECDSA P-256 leaves valid 24 h whose identity is
//! their one SAN (DNS, or URI for `spiffe://`). For `crossgate certs`, the demo and tests;
//! production identities come from Linkerd's identity controller or cert-manager.
//! This module makes certificates in memory; [`dev`] lays them out on disk.

pub mod dev;

pub use dev::{CertsError, issue, write_dev_pki};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType,
};
use time::{Duration, OffsetDateTime};

/// The default gateway identity.
pub const GATEWAY_IDENTITY: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// A trust anchor and an issuer under it.
pub struct Pki {
    anchor: CertifiedIssuer<'static, KeyPair>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate (leaf then issuer, PEM) and its PKCS#8 key (PEM).
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How to make a leaf; [`LeafSpec::identity`] gives Linkerd's usual one.
pub struct LeafSpec {
    pub sans: Vec<SanType>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub common_name: Option<String>,
}

impl LeafSpec {
    /// One DNS SAN, valid from a minute ago for 24 hours. Panics on a name that is not
    /// ASCII; for names from users, [`LeafSpec::for_identity`].
    pub fn identity(identity: &str) -> LeafSpec {
        LeafSpec::for_identity(identity).expect("identity is a DNS name or spiffe:// URI")
    }

    /// Linkerd's usual leaf for `identity`: its one SAN (a URI SAN for `spiffe://`, else a
    /// DNS SAN), valid from a minute ago for 24 hours. Refuses what is not an identity
    /// ([`crate::names::is_identity_syntax`]).
    pub fn for_identity(identity: &str) -> Result<LeafSpec, String> {
        if !crate::names::is_identity_syntax(identity) {
            return Err(format!(
                "{identity:?} is not an identity: expected a DNS name \
                 (<sa>.<ns>.serviceaccount.identity.linkerd.<trust-domain>) or a spiffe:// URI"
            ));
        }
        let ia5 = || {
            rcgen::string::Ia5String::try_from(identity)
                .map_err(|e| format!("{identity:?} is not an identity: {e}"))
        };
        let san = if identity.starts_with("spiffe://") {
            SanType::URI(ia5()?)
        } else {
            SanType::DnsName(ia5()?)
        };
        let now = OffsetDateTime::now_utc();
        Ok(LeafSpec {
            sans: vec![san],
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::hours(24),
            common_name: Some(identity.to_string()),
        })
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(365);
    p
}

impl Pki {
    /// A new anchor (`root.linkerd.cluster.local`) and issuer (`identity.linkerd.cluster.local`).
    pub fn new() -> Result<Pki, rcgen::Error> {
        let anchor = CertifiedIssuer::self_signed(
            ca_params("root.linkerd.cluster.local"),
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        )?;
        let issuer = CertifiedIssuer::signed_by(
            ca_params("identity.linkerd.cluster.local"),
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            &anchor,
        )?;
        Ok(Pki { anchor, issuer })
    }

    /// The trust anchor, PEM.
    pub fn anchor_pem(&self) -> String {
        self.anchor.pem()
    }

    /// The issuer certificate, PEM.
    pub fn issuer_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The trust anchor's private key, PKCS#8 PEM. Secret: it can mint any identity.
    pub fn anchor_key_pem(&self) -> String {
        self.anchor.key().serialize_pem()
    }

    /// The issuer's private key, PKCS#8 PEM. Secret: it can mint any identity.
    pub fn issuer_key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A leaf for `identity`, as Linkerd's identity controller issues it.
    pub fn leaf(&self, identity: &str) -> Result<Leaf, rcgen::Error> {
        self.leaf_with(LeafSpec::identity(identity))
    }

    /// A leaf as `spec` says.
    pub fn leaf_with(&self, spec: LeafSpec) -> Result<Leaf, rcgen::Error> {
        sign_leaf(spec, &self.issuer, &self.issuer.pem())
    }
}

/// Signs a leaf as `spec` says with `issuer`; the certificate file is the leaf, then
/// `issuer_pem` (the issuer's certificate, or its chain).
pub fn sign_leaf(
    spec: LeafSpec,
    issuer: &Issuer<'_, KeyPair>,
    issuer_pem: &str,
) -> Result<Leaf, rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    p.subject_alt_names = spec.sans;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = spec.common_name {
        dn.push(DnType::CommonName, cn);
    }
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = spec.not_before;
    p.not_after = spec.not_after;
    let cert = p.signed_by(&key, issuer)?;
    let chain = issuer_pem.trim_start();
    let sep = if chain.ends_with('\n') { "" } else { "\n" };
    Ok(Leaf {
        cert_pem: format!("{}{chain}{sep}", cert.pem()),
        key_pem: key.serialize_pem(),
    })
}
