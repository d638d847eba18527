//! A Linkerd-style dev PKI: trust anchor (self-signed) -> issuer (CN identity.linkerd.cluster.local)
//! -> leaves (DNS SAN = identity, 24 h). ECDSA P-256 / SHA-256, keys PKCS#8.

use crate::{Args, Error, GATEWAY_ID, MESHED_ID, SOURCE_ID};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

pub const ISSUER_CN: &str = "identity.linkerd.cluster.local";
pub const LEAF_LIFETIME: Duration = Duration::hours(24);

fn ca_params(cn: &str, path_len: Option<u8>) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = match path_len {
        None => IsCa::Ca(BasicConstraints::Unconstrained),
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    Ok(p)
}

/// Makes a leaf's parameters valid for 24 h from now, usable as TLS server and client.
pub fn leaf_params(p: &mut CertificateParams, id: &str) {
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, id);
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(1);
    p.not_after = now + LEAF_LIFETIME;
}

fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<(), Error> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, data)?;
    Ok(())
}

pub fn init(args: &Args) -> Result<(), Error> {
    let state = std::path::PathBuf::from(args.get("state", "/tmp/l5d-interop"));
    let gw_id = args.get("gateway-id", GATEWAY_ID);
    let src_id = args.get("source-id", SOURCE_ID);
    let meshed_id = args.get("meshed-id", MESHED_ID);

    // Trust anchor and issuer.
    let ta_key = KeyPair::generate()?;
    let ta_params = ca_params("root.linkerd.cluster.local", None)?;
    let ta_cert = ta_params.self_signed(&ta_key)?;
    let ta = Issuer::new(ta_params, ta_key);

    let iss_key = KeyPair::generate()?;
    let iss_params = ca_params(ISSUER_CN, Some(0))?;
    let iss_cert = iss_params.signed_by(&iss_key, &ta)?;
    let pki = state.join("pki");
    write(&pki.join("ca.crt"), ta_cert.pem())?;
    write(&pki.join("ca.key"), ta.key().serialize_pem())?;
    write(&pki.join("issuer.crt"), iss_cert.pem())?;
    write(&pki.join("issuer.key"), iss_key.serialize_pem())?;
    let issuer = Issuer::new(iss_params, iss_key);

    // The gateway's identity as PEM files, for any gateway under test (crossgate layout).
    let gw_key = KeyPair::generate()?;
    let mut gw_params = CertificateParams::new(vec![gw_id.clone()])?;
    leaf_params(&mut gw_params, &gw_id);
    let gw_cert = gw_params.signed_by(&gw_key, &issuer)?;
    let gwdir = state.join("gateway/identity");
    write(&gwdir.join("ca.crt"), ta_cert.pem())?;
    write(
        &gwdir.join("tls.crt"),
        format!("{}{}", gw_cert.pem(), iss_cert.pem()),
    )?;
    write(&gwdir.join("tls.key"), gw_key.serialize_pem())?;

    // A client identity as PEM files too (for tools that want to talk to the gateway directly).
    let cl_key = KeyPair::generate()?;
    let mut cl_params = CertificateParams::new(vec![src_id.clone()])?;
    leaf_params(&mut cl_params, &src_id);
    let cl_cert = cl_params.signed_by(&cl_key, &issuer)?;
    let cldir = state.join("client/identity");
    write(&cldir.join("ca.crt"), ta_cert.pem())?;
    write(
        &cldir.join("tls.crt"),
        format!("{}{}", cl_cert.pem(), iss_cert.pem()),
    )?;
    write(&cldir.join("tls.key"), cl_key.serialize_pem())?;

    // Identity dirs for linkerd2-proxy: key.p8 (PKCS#8 DER), csr.der, token.
    for (sub, id) in [("src", &src_id), ("gw", &gw_id), ("meshed", &meshed_id)] {
        let dir = state.join("id").join(sub);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![id.clone()])?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, id.as_str());
        let csr = p.serialize_request(&key)?;
        write(&dir.join("key.p8"), key.serialize_der())?;
        write(&dir.join("csr.der"), csr.der())?;
        write(&dir.join("token"), format!("stub-token-{sub}"))?;
        write(&dir.join("identity"), id.as_str())?;
    }
    println!(
        "stubcp init: PKI written under {} (gateway id {gw_id}, source id {src_id})",
        state.display()
    );
    Ok(())
}

/// Signs proxies' CSRs with the issuer from `stubcp init`.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    pub issuer_der: Vec<u8>,
}

impl Signer {
    pub fn load(state: &Path) -> Result<Self, Error> {
        let pem = std::fs::read_to_string(state.join("pki/issuer.crt"))?;
        let key = KeyPair::from_pem(&std::fs::read_to_string(state.join("pki/issuer.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key)?;
        let issuer_der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("issuer pem: {e}"))?
            .1
            .contents;
        Ok(Signer { issuer, issuer_der })
    }

    /// Returns (leaf DER, not_after).
    pub fn sign_csr(&self, csr_der: &[u8], id: &str) -> Result<(Vec<u8>, OffsetDateTime), Error> {
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())?;
        leaf_params(&mut csr.params, id);
        csr.params.subject_alt_names = vec![rcgen::SanType::DnsName(id.try_into()?)];
        let not_after = csr.params.not_after;
        let cert = csr.signed_by(&self.issuer)?;
        Ok((cert.der().to_vec(), not_after))
    }
}
