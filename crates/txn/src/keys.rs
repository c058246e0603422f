//! The layer's index from matching key (RFC 3261 §17.1.3, §17.2.3) to transaction.
//!
//! A bucket holds the key's hash and the transaction's slot, 16 bytes; the key itself is
//! kept once, in the transaction. A look-up compares hashes in the table and confirms the
//! key in the transaction it is about to use anyway; removing a transaction that ended
//! finds its bucket by its stored hash and slot, without reading its key again, and a
//! table that grows or shrinks moves buckets by their stored hashes. Under load the table
//! and the transactions are far larger than the caches and an ended transaction's key is
//! long cold: a profile at 2,000 calls/s had removal among the costliest code per
//! instruction (`docs/performance.md`, "Where user space waits").
//!
//! Branches are chosen by peers: the hash has a per-process random key (ahash), so they
//! cannot aim at one bucket.

use hashbrown::HashTable;

/// See the module documentation. `I` is the transaction's handle (its slot).
pub(crate) struct KeyTable<I> {
    table: HashTable<(u64, I)>,
    hasher: ahash::RandomState,
}

impl<I> std::fmt::Debug for KeyTable<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("len", &self.table.len())
            .finish()
    }
}

impl<I: Copy + PartialEq> KeyTable<I> {
    pub(crate) fn new() -> KeyTable<I> {
        KeyTable {
            table: HashTable::new(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// The hash `key` is filed under.
    pub(crate) fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The transaction filed under `hash` for which `is_key` says its key is the one
    /// looked for.
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(I) -> bool) -> Option<I> {
        self.table
            .find(hash, |&(h, id)| h == hash && is_key(id))
            .map(|&(_, id)| id)
    }

    /// Files `id` under `hash` (its key's; the caller checked it is not filed yet).
    pub(crate) fn insert(&mut self, hash: u64, id: I) {
        self.table.insert_unique(hash, (hash, id), |&(h, _)| h);
    }

    /// Takes `id`, filed under `hash`, out.
    pub(crate) fn remove(&mut self, hash: u64, id: I) {
        if let Ok(bucket) = self.table.find_entry(hash, |&(h, i)| h == hash && i == id) {
            bucket.remove();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.table.capacity()
    }

    pub(crate) fn shrink_to(&mut self, min_capacity: usize) {
        self.table.shrink_to(min_capacity, |&(h, _)| h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys under one hash (a collision): each is found by its own key only, and
    /// removing one leaves the other.
    #[test]
    fn one_hash_two_keys() {
        let mut t = KeyTable::new();
        let (a, b) = (1u32, 2u32);
        let keys = |id: u32| {
            if id == a {
                "z9hG4bKa;INVITE"
            } else {
                "z9hG4bKb;INVITE"
            }
        };
        let hash = t.hash("z9hG4bKa;INVITE");
        t.insert(hash, a);
        t.insert(hash, b);
        assert_eq!(t.len(), 2);
        assert_eq!(t.find(hash, |id| keys(id) == "z9hG4bKb;INVITE"), Some(b));
        assert_eq!(t.find(hash, |id| keys(id) == "z9hG4bKa;INVITE"), Some(a));
        assert_eq!(t.find(hash, |_| false), None);
        assert_eq!(
            t.find(hash ^ 1, |_| true),
            None,
            "another hash is not looked at"
        );
        t.remove(hash, a);
        assert_eq!(t.len(), 1);
        assert_eq!(t.find(hash, |id| keys(id) == "z9hG4bKa;INVITE"), None);
        assert_eq!(t.find(hash, |id| keys(id) == "z9hG4bKb;INVITE"), Some(b));
        t.remove(hash, a);
        assert_eq!(t.len(), 1, "removing what is not there changes nothing");
        for n in 0..10_000u32 {
            t.insert(u64::from(n) << 7, n + 10);
        }
        t.shrink_to(0);
        assert_eq!(
            t.find(hash, |id| id == b),
            Some(b),
            "kept through growth and shrinking"
        );
        assert_eq!(t.find(9_999 << 7, |_| true), Some(10_009));
    }
}
