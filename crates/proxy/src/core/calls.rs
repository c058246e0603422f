//! The calls under way, in a slab: a call's key is its slot and the slot's generation.
//!
//! Every event of a call reads its entry, often several times (the engine's steps, the
//! branch it concerns, the next deadline). Under load the table holds every call of the
//! last seconds, far more than the caches hold: a hash map reads its control bytes and then
//! a bucket before it reaches the call, a slab one pointer-sized element. Freed slots are
//! reused last-freed first, so the vector stays as short as the calls alive at the peak.
//!
//! The routing policy sees another number per call (`CallView::key`, counted from 1 and
//! never reused): the slot is this table's business.

/// A call in [`Calls`]: its slot, and the generation that tells it from the calls that
/// held the slot before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallKey {
    slot: u32,
    gen: u32,
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    call: Option<Box<T>>,
}

/// The table of calls (see the module documentation).
#[derive(Debug)]
pub(super) struct Calls<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, the last freed on top.
    free: Vec<u32>,
    len: usize,
    /// The generation a new slot starts at: above every generation of a slot dropped by
    /// [`Calls::shrink_after_peak`].
    floor: u32,
}

impl<T> Default for Calls<T> {
    fn default() -> Self {
        Calls {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            floor: 0,
        }
    }
}

impl<T> Calls<T> {
    /// Files a call; its key.
    pub(super) fn insert(&mut self, call: Box<T>) -> CallKey {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.call = Some(call);
                return CallKey { slot, gen: s.gen };
            }
        }
        // Slots are bounded by the calls alive at once, themselves bounded by memory long
        // before u32::MAX.
        let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        let gen = self.floor;
        self.slots.push(Slot {
            gen,
            call: Some(call),
        });
        CallKey { slot, gen }
    }

    fn slot(&self, key: &CallKey) -> Option<&Slot<T>> {
        self.slots
            .get(key.slot as usize)
            .filter(|s| s.gen == key.gen)
    }

    pub(super) fn get(&self, key: &CallKey) -> Option<&T> {
        self.slot(key)?.call.as_deref()
    }

    fn slot_mut(&mut self, key: &CallKey) -> Option<&mut Slot<T>> {
        self.slots
            .get_mut(key.slot as usize)
            .filter(|s| s.gen == key.gen)
    }

    pub(super) fn get_mut(&mut self, key: &CallKey) -> Option<&mut T> {
        self.slot_mut(key)?.call.as_deref_mut()
    }

    /// Takes a call out; its key then finds nothing, even once the slot holds another.
    pub(super) fn remove(&mut self, key: &CallKey) -> Option<Box<T>> {
        let s = self.slot_mut(key)?;
        let call = s.call.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(key.slot);
        self.len -= 1;
        Some(call)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.call.as_deref())
    }

    /// Gives memory back after a peak of load: a table a quarter full drops the empty
    /// slots past its last call. A dropped slot that comes back starts at a generation
    /// above every one it gave out, so no key of an ended call finds a later one.
    pub(super) fn shrink_after_peak(&mut self) {
        if self.slots.capacity() <= 4096 || self.len >= self.slots.capacity() / 4 {
            return;
        }
        let keep = self
            .slots
            .iter()
            .rposition(|s| s.call.is_some())
            .map_or(0, |i| i + 1);
        let dropped = self.slots.get(keep..).unwrap_or_default();
        // An empty slot's generation is already past the last one it gave out.
        if let Some(g) = dropped.iter().map(|s| s.gen).max() {
            self.floor = self.floor.max(g);
        }
        self.slots.truncate(keep);
        self.slots.shrink_to(keep * 2);
        self.free.retain(|&i| (i as usize) < keep);
        self.free.shrink_to(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::Calls;

    #[test]
    fn a_key_finds_only_its_own_call() {
        let mut calls = Calls::default();
        let a = calls.insert(Box::new("a"));
        let b = calls.insert(Box::new("b"));
        assert_eq!(calls.remove(&a).as_deref(), Some(&"a"));
        // The slot is reused for the next call; the old key finds nothing in it.
        let c = calls.insert(Box::new("c"));
        assert_eq!(calls.get(&a), None);
        assert_eq!(calls.get_mut(&a), None);
        assert_eq!(calls.remove(&a), None);
        assert_eq!(calls.get(&c), Some(&"c"));
        assert_eq!(calls.get(&b), Some(&"b"));
        assert_eq!(calls.len(), 2);
        let mut left: Vec<_> = calls.values().copied().collect();
        left.sort_unstable();
        assert_eq!(left, ["b", "c"]);
    }

    #[test]
    fn slots_dropped_after_a_peak_never_match_an_old_key() {
        let mut calls = Calls::default();
        let keys: Vec<_> = (0..10_000).map(|i| calls.insert(Box::new(i))).collect();
        let first = keys.first().copied();
        for k in keys.iter().skip(1) {
            calls.remove(k);
        }
        calls.shrink_after_peak();
        assert!(calls.slots.len() == 1 && calls.free.is_empty());
        // A new call goes to a slot that was dropped: the keys given out for it before
        // find nothing.
        let again = calls.insert(Box::new(-1));
        for k in keys.iter().skip(1) {
            assert_eq!(calls.get(k), None);
        }
        assert_eq!(calls.get(&again), Some(&-1));
        assert_eq!(first.and_then(|k| calls.get(&k).copied()), Some(0));
    }
}
