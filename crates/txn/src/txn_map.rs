//! A map keyed by transaction handle, stored by the handle's slot in the layer.
//!
//! The layer's transactions live in a slab whose slots are dense and reused, so a user's
//! per-transaction state (the proxy's call and branch of each client transaction) can sit
//! in a vector at the same index: a look-up reads one element, where a hash map reads its
//! control bytes and then a bucket. Under load these tables are far larger than the
//! caches, so each read is a cache miss; a profile of a proxy at 2,000 calls/s had its
//! per-transaction hash maps among the costliest code per instruction executed
//! (`docs/performance.md`, "Where user space waits").
//!
//! The vector grows to the highest slot used and keeps its length, as the slab does. The
//! layer reuses a slot only after the user has polled the `Terminated` event of the
//! transaction that held it, so a user that removes its value on that event never loses
//! one; a value left behind anyway is replaced when the slot is reused (the generation
//! tells them apart), never returned for the new transaction.

use std::marker::PhantomData;

use crate::layer::{ClientTxn, ServerTxn};

/// A transaction handle as a slot and a generation (see [`TxnMap`]).
pub trait TxnKey: Copy {
    /// The slot and the generation.
    fn slot_gen(self) -> (u32, u32);
}

impl TxnKey for ClientTxn {
    fn slot_gen(self) -> (u32, u32) {
        self.slot_gen_raw()
    }
}

impl TxnKey for ServerTxn {
    fn slot_gen(self) -> (u32, u32) {
        self.slot_gen_raw()
    }
}

/// Values by transaction handle, one vector element per slot of the layer (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct TxnMap<K, V> {
    slots: Vec<Option<(u32, V)>>,
    len: usize,
    key: PhantomData<K>,
}

impl<K: TxnKey, V> Default for TxnMap<K, V> {
    fn default() -> Self {
        TxnMap {
            slots: Vec::new(),
            len: 0,
            key: PhantomData,
        }
    }
}

impl<K: TxnKey, V> TxnMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value of `key`; the value it had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (slot, gen) = key.slot_gen();
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let cell = self.slots.get_mut(i)?;
        let before = cell.replace((gen, value));
        match before {
            Some((g, v)) if g == gen => Some(v),
            // A transaction that ended in this slot: its value goes, this one comes.
            Some(_) => None,
            None => {
                self.len += 1;
                None
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        let (slot, gen) = key.slot_gen();
        match self.slots.get(slot as usize)? {
            Some((g, v)) if *g == gen => Some(v),
            _ => None,
        }
    }

    /// Takes the value of `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (slot, gen) = key.slot_gen();
        let cell = self.slots.get_mut(slot as usize)?;
        if !matches!(cell, Some((g, _)) if *g == gen) {
            return None;
        }
        self.len -= 1;
        cell.take().map(|(_, v)| v)
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
