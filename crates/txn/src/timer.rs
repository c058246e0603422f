//! Per-transaction timer slots. Each transaction uses at most four timers at once, so the
//! RFC's A–M are mapped onto four slots by role; the layer keeps one timer wheel of
//! deadlines and checks a popped entry against the slot (lazy invalidation).

use std::time::Instant;

/// A timer slot, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// Retransmission: Timer A (INVITE client), E (non-INVITE client), G (INVITE server).
    Retransmit = 0,
    /// Giving up: Timer B, F (client), H (server waiting for ACK), L (server Accepted).
    Timeout = 1,
    /// Lingering to absorb retransmissions: Timer D, K, I, J, M.
    Linger = 2,
    /// The 200 ms after which an INVITE server transaction sends 100 Trying (§17.2.1).
    Trying = 3,
}

/// The deadlines of one transaction's slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timers {
    at: [Option<Instant>; 4],
    /// Slots set since the layer last looked (bit per slot).
    dirty: u8,
}

impl Timers {
    pub(crate) fn set(&mut self, slot: Slot, at: Instant) {
        if let Some(s) = self.at.get_mut(slot as usize) {
            *s = Some(at);
            self.dirty |= 1 << slot as u8;
        }
    }

    pub(crate) fn clear(&mut self, slot: Slot) {
        if let Some(s) = self.at.get_mut(slot as usize) {
            *s = None;
        }
    }

    pub(crate) fn clear_all(&mut self) {
        self.at = [None; 4];
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<Instant> {
        self.at.get(slot as usize).copied().flatten()
    }

    /// Takes the slots set since the last call, with their deadlines.
    pub(crate) fn take_dirty(&mut self) -> impl Iterator<Item = (Slot, Instant)> + '_ {
        let dirty = std::mem::take(&mut self.dirty);
        [Slot::Retransmit, Slot::Timeout, Slot::Linger, Slot::Trying]
            .into_iter()
            .filter(move |s| dirty & (1 << *s as u8) != 0)
            .filter_map(|s| self.get(s).map(|at| (s, at)))
    }
}
