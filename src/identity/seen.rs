//! The identities of client leaves already seen. A Linkerd proxy presents the same leaf on
//! every connection for the leaf's life, and parsing it (x509) for its identity cost ~2 % of
//! a full handshake's CPU; a leaf seen before is found by its exact bytes instead.

use crate::kept::Kept;
use std::sync::Arc;

/// Leaves remembered; past this many distinct ones the table starts over (a peer's leaf is
/// then parsed again, which is all it costs).
const MAX_LEAVES: usize = 256;

/// Leaf bytes to the identity they name (see [`super::identity_of`]).
#[derive(Default)]
pub struct Identities {
    seen: Kept<Box<[u8]>, Arc<str>, MAX_LEAVES, crate::kept::SignatureHash>,
}

impl Identities {
    /// The identity `leaf` names, `None` when it names none (not remembered: such a leaf is
    /// refused at once).
    pub fn of(&self, leaf: &[u8]) -> Option<Arc<str>> {
        if let Some(id) = self.seen.get(leaf) {
            return Some(id);
        }
        let id: Arc<str> = super::identity_of(leaf)?.into();
        self.seen.insert(leaf.into(), id.clone());
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn leaf_of(pki: &crate::certs::Pki, name: &str) -> Vec<u8> {
        let pem = pki.leaf(name).unwrap().cert_pem;
        let first = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .unwrap();
        first.unwrap().to_vec()
    }

    fn leaf(name: &str) -> Vec<u8> {
        leaf_of(&crate::certs::Pki::new().unwrap(), name)
    }

    #[test]
    fn a_leaf_is_parsed_once_and_each_leaf_keeps_its_own_identity() {
        let ids = Identities::default();
        let a = leaf("a.ns.serviceaccount.identity.linkerd.cluster.local");
        let b = leaf("b.ns.serviceaccount.identity.linkerd.cluster.local");
        let first = ids.of(&a).unwrap();
        assert_eq!(
            &*first,
            "a.ns.serviceaccount.identity.linkerd.cluster.local"
        );
        // The same allocation: found, not parsed again.
        assert!(Arc::ptr_eq(&first, &ids.of(&a).unwrap()));
        assert_eq!(
            &*ids.of(&b).unwrap(),
            "b.ns.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(ids.seen.len(), 2);
        assert_eq!(ids.of(b"not a certificate"), None);
        assert_eq!(ids.seen.len(), 2, "a leaf naming nothing is not remembered");
    }

    #[test]
    fn the_table_is_bounded() {
        let ids = Identities::default();
        let pki = crate::certs::Pki::new().unwrap();
        let names: Vec<Vec<u8>> = (0..MAX_LEAVES + 1)
            .map(|i| {
                leaf_of(
                    &pki,
                    &format!("p{i}.ns.serviceaccount.identity.linkerd.cluster.local"),
                )
            })
            .collect();
        for n in &names {
            ids.of(n).unwrap();
        }
        assert!(ids.seen.len() <= MAX_LEAVES);
        let last = ids.of(names.last().unwrap()).unwrap();
        assert_eq!(
            &*last,
            format!("p{MAX_LEAVES}.ns.serviceaccount.identity.linkerd.cluster.local")
        );
    }
}
