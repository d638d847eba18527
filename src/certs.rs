//! A Linkerd-style development PKI (rcgen): a self-signed trust anchor, an issuer
//! (`identity.linkerd.cluster.local`), and ECDSA P-256 leaves valid 24 h whose identity is
//! their one DNS SAN. For `crossgate certs`, the demo and tests; production identities come
//! from Linkerd's identity controller or cert-manager.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use std::path::Path;
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
    /// One DNS SAN, valid from a minute ago for 24 hours.
    pub fn identity(identity: &str) -> LeafSpec {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            sans: vec![SanType::DnsName(
                identity.try_into().expect("identity is an IA5 string"),
            )],
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::hours(24),
            common_name: Some(identity.to_string()),
        }
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

    /// A leaf for `identity`, as Linkerd's identity controller issues it.
    pub fn leaf(&self, identity: &str) -> Result<Leaf, rcgen::Error> {
        self.leaf_with(LeafSpec::identity(identity))
    }

    /// A leaf as `spec` says.
    pub fn leaf_with(&self, spec: LeafSpec) -> Result<Leaf, rcgen::Error> {
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
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a development PKI and a matching `crossgate.toml` into `dir`: `ca.crt`,
/// `issuer.crt`, `gateway.crt`/`gateway.key` (the gateway identity) and
/// `client.crt`/`client.key` (`client_identity`). Returns the files written.
pub fn write_dev_pki(dir: &Path, client_identity: &str) -> std::io::Result<Vec<String>> {
    let pki = Pki::new().map_err(std::io::Error::other)?;
    let gateway = pki.leaf(GATEWAY_IDENTITY).map_err(std::io::Error::other)?;
    let client = pki.leaf(client_identity).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let config = "[server]\nlisten = \"0.0.0.0:4143\"\nadmin = \"0.0.0.0:4191\"\n\n\
                  [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"gateway.crt\"\nkey = \"gateway.key\"\n\n\
                  [routing]\ncluster_domain = \"cluster.local\"\n";
    let files = [
        ("ca.crt", pki.anchor_pem()),
        ("issuer.crt", pki.issuer_pem()),
        ("gateway.crt", gateway.cert_pem),
        ("gateway.key", gateway.key_pem),
        ("client.crt", client.cert_pem),
        ("client.key", client.key_pem),
        ("crossgate.toml", config.to_string()),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body)?;
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        written.push(path.display().to_string());
    }
    Ok(written)
}
