//! The development PKI on disk, as `crossgate certs` writes it and `crossgate certs issue`
//! reads it back:
//! ```text
//! DIR/ca.crt  issuer.crt                 trust anchor, issuer (public)
//!     gateway.crt gateway.key            gateway leaf (+ issuer), its key (0600)
//!     client.crt  client.key             client leaf (+ issuer), its key (0600)
//!     crossgate.toml                     binds 127.0.0.1:4143 and 127.0.0.1:4191
//!     secret/ca.key  secret/issuer.key   the CA keys (folder 0700, files 0600)
//! ```
//! The CA keys sit in their own folder so that copying the PKI's files (`cp DIR/*`, or
//! `kubectl create secret --from-file=DIR`, which skips folders) never ships them.
//! Nothing is written over without `force`; every refusal is reported at once.

use super::{GATEWAY_IDENTITY, LeafSpec, Pki};
use rcgen::{Issuer, KeyPair};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder under a PKI that holds the trust anchor's and issuer's private keys.
pub const SECRET_DIR: &str = "secret";

/// Why `crossgate certs` wrote nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// Bad arguments or a refusal to write over files: every problem, one per line (exit 64).
    #[error("{}", .0.join("\n"))]
    Usage(Vec<String>),
    /// Writing failed (exit 1).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// rcgen could not make a key or certificate (exit 1).
    #[error("cannot make a certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// Writes a development PKI and a matching `crossgate.toml` into `dir` (see the module
/// docs). Refuses an identity that is not one, and a `dir` that exists and is not empty
/// unless `force`. Returns the files written.
pub fn write_dev_pki(
    dir: &Path,
    client_identity: &str,
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    let mut problems = Vec::new();
    let client_spec = LeafSpec::for_identity(client_identity)
        .map_err(|e| problems.push(format!("--client-identity: {e}")))
        .ok();
    if !force && let Some(why) = occupied(dir) {
        problems.push(format!(
            "{}: {why}; pass --force to write over it",
            dir.display()
        ));
    }
    let Some(client_spec) = client_spec.filter(|_| problems.is_empty()) else {
        return Err(CertsError::Usage(problems));
    };
    let pki = Pki::new()?;
    let gateway = pki.leaf(GATEWAY_IDENTITY)?;
    let client = pki.leaf_with(client_spec)?;
    let config = "# A development PKI written by `crossgate certs`: loopback only.\n\
                  # secret/ holds the trust anchor's and issuer's keys (`crossgate certs issue`).\n\
                  [server]\nlisten = \"127.0.0.1:4143\"\nadmin = \"127.0.0.1:4191\"\n\n\
                  [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"gateway.crt\"\nkey = \"gateway.key\"\n\n\
                  [routing]\ncluster_domain = \"cluster.local\"\n";
    let secret = dir.join(SECRET_DIR);
    create_dir(dir, None)?;
    create_dir(&secret, Some(0o700))?;
    let files = [
        (dir.join("ca.crt"), pki.anchor_pem(), 0o644),
        (dir.join("issuer.crt"), pki.issuer_pem(), 0o644),
        (dir.join("gateway.crt"), gateway.cert_pem, 0o644),
        (dir.join("gateway.key"), gateway.key_pem, 0o600),
        (dir.join("client.crt"), client.cert_pem, 0o644),
        (dir.join("client.key"), client.key_pem, 0o600),
        (dir.join("crossgate.toml"), config.to_string(), 0o644),
        (secret.join("ca.key"), pki.anchor_key_pem(), 0o600),
        (secret.join("issuer.key"), pki.issuer_key_pem(), 0o600),
    ];
    write_all(files)
}

/// Issues a leaf for `identity` from the PKI in `from` (its `issuer.crt` and
/// `secret/issuer.key`) into `out`: `tls.crt` (leaf, then issuer), `tls.key` (PKCS#8, 0600)
/// and a copy of `ca.crt`, the three keys of a Kubernetes identity Secret. Refuses to write
/// over any of them unless `force`. Returns the files written.
pub fn issue(
    from: &Path,
    out: &Path,
    identity: &str,
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    let mut problems = Vec::new();
    let spec = LeafSpec::for_identity(identity)
        .map_err(|e| problems.push(format!("--name: {e}")))
        .ok();
    let kept = KeptIssuer::load(from).map_err(|e| problems.extend(e)).ok();
    let anchor = read(&from.join("ca.crt"))
        .map_err(|e| problems.push(e))
        .ok();
    let targets = ["ca.crt", "tls.crt", "tls.key"].map(|f| out.join(f));
    if !force {
        let existing: Vec<_> = targets
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            problems.push(format!(
                "{} already exist(s); pass --force to write over",
                existing.join(", ")
            ));
        }
    }
    let (Some(spec), Some(kept), Some(anchor)) = (spec, kept, anchor) else {
        return Err(CertsError::Usage(problems));
    };
    if !problems.is_empty() {
        return Err(CertsError::Usage(problems));
    }
    let leaf = super::sign_leaf(spec, &kept.issuer, &kept.cert_pem)?;
    create_dir(out, None)?;
    let [ca, crt, key] = targets;
    write_all([
        (ca, anchor, 0o644),
        (crt, leaf.cert_pem, 0o644),
        (key, leaf.key_pem, 0o600),
    ])
}

/// An issuer read back from a PKI folder: its certificate and its key, checked to match.
struct KeptIssuer {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl KeptIssuer {
    fn load(dir: &Path) -> Result<KeptIssuer, Vec<String>> {
        let cert_path = dir.join("issuer.crt");
        let key_path = dir.join(SECRET_DIR).join("issuer.key");
        let cert_pem = read(&cert_path);
        let key_pem = read(&key_path).map_err(|e| {
            format!("{e} (the issuer key `crossgate certs --out` keeps; --from names its folder)")
        });
        let (cert_pem, key_pem) = match (cert_pem, key_pem) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| vec![format!("{}: not a private key: {e}", key_path.display())])?;
        let named = |e| vec![format!("{}: {e}", cert_path.display())];
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e: rustls_pki_types::pem::Error| named(e.to_string()))?;
        let der: rustls_pki_types::CertificateDer<'static> = der;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| named(format!("not a certificate: {e}")))?;
        if !x509.is_ca() {
            return Err(named("not a CA certificate".into()));
        }
        let now = crate::identity::unix_now();
        let not_after = x509.validity().not_after.timestamp();
        if not_after <= now {
            return Err(named(format!(
                "the issuer expired at {}",
                crate::identity::utc(not_after)
            )));
        }
        let public = &x509.tbs_certificate.subject_pki.subject_public_key.data;
        if public.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(vec![format!(
                "{} does not match {}: not the key of that issuer",
                key_path.display(),
                cert_path.display()
            )]);
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| named(e.to_string()))?;
        Ok(KeptIssuer { issuer, cert_pem })
    }
}

/// Why `dir` is no place for a new PKI, if it is not.
fn occupied(dir: &Path) -> Option<String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries
            .next()
            .is_some()
            .then(|| "exists and is not empty".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) if dir.exists() => Some("exists and is not an empty folder".to_string()),
        Err(e) => Some(format!("cannot read: {e}")),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn create_dir(dir: &Path, mode: Option<u32>) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

/// Writes each file anew with its mode: an existing file (or symlink) is removed first, so
/// the mode is the one asked for and no link is followed.
fn write_all<const N: usize>(
    files: [(PathBuf, String, u32); N],
) -> Result<Vec<PathBuf>, CertsError> {
    let mut written = Vec::with_capacity(N);
    for (path, body, mode) in files {
        let io = |source| CertsError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io)?;
        f.write_all(body.as_bytes()).map_err(io)?;
        // The umask may have taken bits away; the mode is part of the contract.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
        written.push(path);
    }
    Ok(written)
}
