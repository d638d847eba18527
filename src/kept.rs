//! Values already made, kept by key so that a hot path finds them instead of making them
//! again: bounded to `MAX` entries, past which the table starts over (what is lost is only
//! the shortcut). The lock is held to look up or to insert, never while a value is made.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

pub struct Kept<K, V, const MAX: usize>(Mutex<HashMap<K, V>>);

impl<K, V, const MAX: usize> Default for Kept<K, V, MAX> {
    fn default() -> Self {
        Kept(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone, const MAX: usize> Kept<K, V, MAX> {
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

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Kept;

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
