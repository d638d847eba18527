//! Values already made, kept by key so that a hot path finds them instead of making them
//! again: bounded to `MAX` entries, past which the table starts over (what is lost is only
//! the shortcut). The lock is held to look up or to insert, never while a value is made.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard};

pub struct Kept<K, V, const MAX: usize, S = RandomState>(Mutex<HashMap<K, V, S>>);

impl<K, V, const MAX: usize, S: Default> Default for Kept<K, V, MAX, S> {
    fn default() -> Self {
        Kept(Mutex::new(HashMap::default()))
    }
}

/// Hashes certificates by their ends: of each byte string written, its last [`TAIL`] bytes
/// (keyed, as `RandomState`). A DER certificate ends in its signature, which no two
/// certificates share, so the tail tells them apart as well as the whole does, at a fraction
/// of the cost (a leaf is about a kilobyte, hashed on every handshake). Equality still
/// compares the whole, so a collision only costs a miss; and only verified certificates are
/// kept, which a peer cannot make up to collide.
#[derive(Clone, Default)]
pub struct SignatureHash(RandomState);

/// How many bytes of a certificate's end are hashed: more than a P-256 signature's `s`.
pub const TAIL: usize = 48;

impl BuildHasher for SignatureHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(std::hash::DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
    }
    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl<K: Hash + Eq, V: Clone, const MAX: usize, S: BuildHasher> Kept<K, V, MAX, S> {
    /// The value kept for `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).cloned()
    }

    /// Keeps `value` for `key`, starting over first when `MAX` are kept.
    pub fn insert(&self, key: K, value: V) {
        let mut kept = self.lock();
        if kept.len() >= MAX {
            kept.clear();
        }
        kept.insert(key, value);
    }

    /// Forgets every value (what they were made from has changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V, S>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::{Kept, SignatureHash, TAIL};
    use std::hash::BuildHasher;

    #[test]
    fn certificates_are_hashed_by_their_end_and_compared_whole() {
        let s = SignatureHash::default();
        let a = vec![1u8; 1000];
        let mut same_end = a.clone();
        same_end[0] = 2;
        let mut other_end = a.clone();
        other_end[999] = 2;
        assert_eq!(s.hash_one(&a[..]), s.hash_one(&same_end[..]));
        assert_ne!(s.hash_one(&a[..]), s.hash_one(&other_end[..]));
        // The length is hashed too, and a string shorter than the tail whole.
        assert_ne!(s.hash_one(&a[..]), s.hash_one(&a[1..]));
        assert_ne!(s.hash_one(&[1u8; TAIL - 1][..]), s.hash_one(&[1u8, 2][..]));
        // Equal hashes, distinct keys: equality decides.
        let kept: Kept<Box<[u8]>, u32, 8, SignatureHash> = Kept::default();
        kept.insert(a.clone().into(), 1);
        kept.insert(same_end.clone().into(), 2);
        assert_eq!(kept.get(&a[..]), Some(1));
        assert_eq!(kept.get(&same_end[..]), Some(2));
        assert_eq!(kept.get(&other_end[..]), None);
    }

    #[test]
    fn values_are_found_and_the_table_is_bounded() {
        let kept: Kept<String, u32, 3> = Kept::default();
        kept.insert("a".into(), 1);
        assert_eq!(kept.get("a"), Some(1));
        assert_eq!(kept.get("b"), None);
        for (i, k) in ["b", "c", "d"].into_iter().enumerate() {
            kept.insert(k.into(), i as u32);
        }
        // The fourth started the table over.
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.get("d"), Some(2));
        kept.clear();
        assert_eq!(kept.len(), 0);
    }
}
