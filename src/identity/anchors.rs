//! What `identity.trust_anchors` holds, judged: a leaf there is refused (it is no CA, so the
//! file is the wrong one, e.g. `tls.crt`). Anchors without a self-signed root are a warning,
//! in sharper words when one of them issued the gateway's own leaf: clients whose leaves
//! another issuer signed (another cluster's, or this one's after the issuer rotates) would be
//! refused. Not refused: Linkerd accepts an intermediate as its trust anchor, and a mesh whose
//! trust anchor is that intermediate needs it here too. Pure over the certificates' DER.

use rustls_pki_types::CertificateDer;
use std::path::Path;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The problems (refusals) and warnings about the anchors.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnchorFindings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Judges the anchors in `file` (`anchors`), and, when known, the gateway's leaf (`leaf`).
pub fn audit(file: &Path, anchors: &[CertificateDer<'_>], leaf: Option<&[u8]>) -> AnchorFindings {
    let mut out = AnchorFindings::default();
    let parsed: Vec<_> = anchors
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    let file = file.display();
    for cert in &parsed {
        if !is_ca(cert) {
            out.errors.push(format!(
                "identity.trust_anchors: {file} holds a certificate that is not a CA ({}): a \
                 leaf, so the file is not the trust anchors; point identity.trust_anchors at \
                 Linkerd's trust anchor (the root: ca.crt, or ca-bundle.crt of the \
                 linkerd-identity-trust-roots ConfigMap)",
                subject(cert)
            ));
        }
    }
    if parsed.is_empty() || parsed.iter().any(is_self_signed) || !out.errors.is_empty() {
        return out;
    }
    let leaf = leaf.and_then(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c));
    let issuer_of_leaf = leaf.as_ref().and_then(|leaf| {
        parsed
            .iter()
            .find(|a| a.subject().as_raw() == leaf.issuer().as_raw())
    });
    match issuer_of_leaf {
        Some(issuer) => out.warnings.push(format!(
            "identity.trust_anchors: {file} holds the issuer of identity.certificate ({}, \
             itself issued by {}), not a root: clients whose leaves another issuer signed (the \
             other clusters', or this cluster's after its issuer rotates) will be refused. \
             Point identity.trust_anchors at the root (Linkerd's trust anchor: ca.crt, or \
             ca-bundle.crt of the linkerd-identity-trust-roots ConfigMap), unless this issuer \
             is the mesh's trust anchor itself",
            subject(issuer),
            issuer_name(issuer)
        )),
        None => {
            let names: Vec<_> = parsed
                .iter()
                .map(|a| format!("{} (issued by {})", subject(a), issuer_name(a)))
                .collect();
            out.warnings.push(format!(
                "identity.trust_anchors: {file} holds no self-signed root, only {}: accepted \
                 as trust anchors (as Linkerd accepts an intermediate), but a client must chain \
                 to one of these, not to the root above them",
                names.join(", ")
            ));
        }
    }
    out
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

/// A CA by its basic constraints; without them (old roots, v1 certificates), anything but a
/// certificate naming a subject in a SAN, as leaves do.
fn is_ca(cert: &X509Certificate<'_>) -> bool {
    match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        Ok(None) => !matches!(cert.subject_alternative_name(), Ok(Some(_))),
        Err(_) => false,
    }
}

fn subject(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

fn issuer_name(cert: &X509Certificate<'_>) -> String {
    cert.issuer().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{GATEWAY_IDENTITY, Pki};
    use rustls_pki_types::pem::PemObject;

    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_root_passes_the_issuer_warns_a_leaf_is_refused() {
        let pki = Pki::new().unwrap();
        let leaf = pki.leaf(GATEWAY_IDENTITY).unwrap();
        let leaf_der = ders(&leaf.cert_pem).remove(0);
        let file = Path::new("ca.crt");

        let root = audit(file, &ders(&pki.anchor_pem()), Some(&leaf_der));
        assert_eq!(root, AnchorFindings::default());
        let bundle = format!("{}{}", pki.anchor_pem(), pki.issuer_pem());
        assert_eq!(
            audit(file, &ders(&bundle), Some(&leaf_der)),
            AnchorFindings::default(),
            "a root beside the issuer is enough"
        );

        let issuer = audit(file, &ders(&pki.issuer_pem()), Some(&leaf_der));
        assert!(issuer.errors.is_empty(), "{:?}", issuer.errors);
        assert_eq!(issuer.warnings.len(), 1);
        let w = &issuer.warnings[0];
        assert!(
            w.contains("holds the issuer of identity.certificate"),
            "{w}"
        );
        assert!(w.contains("CN=identity.linkerd.cluster.local"), "{w}");
        assert!(w.contains("CN=root.linkerd.cluster.local"), "{w}");

        let linkerd_mode = audit(file, &ders(&pki.issuer_pem()), None);
        assert!(linkerd_mode.warnings[0].contains("no self-signed root"));

        let leaf_file = audit(file, &ders(&leaf.cert_pem), Some(&leaf_der));
        assert_eq!(leaf_file.errors.len(), 1, "{leaf_file:?}");
        assert!(leaf_file.errors[0].contains("not a CA"), "{leaf_file:?}");
        assert!(leaf_file.warnings.is_empty(), "{leaf_file:?}");
    }
}
