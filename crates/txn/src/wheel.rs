//! A hashed timer wheel: deadlines in slots of 10 ms, so arming a timer and firing it cost
//! the same however many are pending.
//!
//! A binary heap of every pending deadline (what this replaced) pays a sift through
//! log₂ n levels for each timer fired, and at 2,000 calls/s n runs to hundreds of
//! thousands (most transactions arm a 32 s timer): each level a cache miss, the heap was the
//! largest single user-space cost of a loaded proxy. Here a deadline goes into the slot of
//! its 10 ms tick; the slots cover [`SPAN`] ahead of the cursor, and a deadline further
//! out (Timer C, three minutes) waits in a small heap until the cursor comes near.
//!
//! Entries are checked lazily, as the heap's were: the owner tells a live one from a stale
//! one (a timer reset or cleared since) when it looks at it, and drops stale ones in bulk
//! with [`TimerWheel::retain`] when they pile up.
//!
//! Sans-IO like the rest of the layer: time is an argument; the wheel's tick zero is the
//! first deadline it is given.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// One tick: the driver's timer grid, and the resolution of SIP's shortest timer (T1,
/// 500 ms) to 2 %.
pub const TICK: Duration = Duration::from_millis(10);

/// Slots in the wheel (a power of two). With [`TICK`], the span is 81.92 s: every RFC 3261
/// transaction timer (at most 64·T1 = 32 s) fits.
const SLOTS: usize = 8192;

/// How far ahead of the cursor the slots reach.
pub const SPAN: Duration = Duration::from_millis(10 * SLOTS as u64);

const WORDS: usize = SLOTS / 64;

/// A set of deadlines, each with an item (what to fire).
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// The instant of tick zero (the first deadline given).
    origin: Option<Instant>,
    /// Slot `t % SLOTS` holds the deadlines of tick `t`, for `t` in
    /// `cursor..cursor + SLOTS`; one in the past is put in the cursor's slot. A deadline
    /// is kept as nanoseconds from the origin (negative before it): exact, and half the
    /// size of an `Instant`, for the hundreds of thousands a loaded proxy holds.
    slots: Vec<Vec<(i64, T)>>,
    /// A bit per slot that holds anything.
    occupied: [u64; WORDS],
    /// A bit per word of `occupied` that is not zero: a wheel with few deadlines (a quiet
    /// proxy) is searched a word of words at a time.
    summary: [u64; WORDS / 64],
    /// No deadline in the slots has a tick below this.
    cursor: u64,
    /// Deadlines beyond the slots' reach, moved in as the cursor comes near.
    far: BinaryHeap<Reverse<(i64, T)>>,
    len: usize,
    /// The earliest entry of the first slot that holds any, with that slot's tick, while
    /// that slot is not touched: the owner asks for the next deadline after every batch
    /// of messages, and a slot holds hundreds of entries under load.
    earliest: Option<(u64, i64, T)>,
}

impl<T: Copy + Ord> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel::new()
    }
}

impl<T: Copy + Ord> TimerWheel<T> {
    /// An empty wheel.
    pub fn new() -> TimerWheel<T> {
        TimerWheel {
            origin: None,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            summary: [0; WORDS / 64],
            cursor: 0,
            far: BinaryHeap::new(),
            len: 0,
            earliest: None,
        }
    }

    /// Deadlines held, live or stale.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no deadline is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `at` as nanoseconds from the origin (which must be set).
    fn offset(&self, at: Instant) -> i64 {
        let Some(o) = self.origin else { return 0 };
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        if at >= o {
            nanos(at - o)
        } else {
            -nanos(o - at)
        }
    }

    fn tick_of(offset: i64) -> u64 {
        u64::try_from(offset.max(0)).unwrap_or(0) / TICK_NANOS
    }

    fn slot_mut(&mut self, tick: u64) -> Option<&mut Vec<(i64, T)>> {
        self.slots.get_mut((tick % SLOTS as u64) as usize)
    }

    fn mark(&mut self, tick: u64, on: bool) {
        let i = (tick % SLOTS as u64) as usize;
        let w = i / 64;
        let Some(word) = self.occupied.get_mut(w) else {
            return;
        };
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
        let any = *word != 0;
        if let Some(s) = self.summary.get_mut(w / 64) {
            if any {
                *s |= 1 << (w % 64);
            } else {
                *s &= !(1 << (w % 64));
            }
        }
    }

    /// Forgets the noted earliest entry when the slot of `tick` (or one before it) changes.
    fn touched(&mut self, tick: u64) {
        if self.earliest.is_some_and(|(t, _, _)| tick <= t) {
            self.earliest = None;
        }
    }

    /// Adds a deadline.
    pub fn insert(&mut self, at: Instant, item: T) {
        self.len += 1;
        self.origin.get_or_insert(at);
        let offset = self.offset(at);
        let tick = Self::tick_of(offset).max(self.cursor);
        if tick >= self.cursor + SLOTS as u64 {
            self.far.push(Reverse((offset, item)));
            return;
        }
        self.touched(tick);
        if let Some(slot) = self.slot_mut(tick) {
            slot.push((offset, item));
        }
        self.mark(tick, true);
    }

    /// Moves the far deadlines the cursor has come near into the slots.
    fn bring_near(&mut self) {
        while let Some(&Reverse((offset, item))) = self.far.peek() {
            let tick = Self::tick_of(offset).max(self.cursor);
            if tick >= self.cursor + SLOTS as u64 {
                return;
            }
            self.far.pop();
            self.touched(tick);
            if let Some(slot) = self.slot_mut(tick) {
                slot.push((offset, item));
            }
            self.mark(tick, true);
        }
    }

    /// The tick of the first slot at or after the cursor that holds anything.
    fn first_occupied(&self) -> Option<u64> {
        let start = (self.cursor % SLOTS as u64) as usize;
        let sw = start / 64;
        // The cursor's word from the cursor on; then the next word that holds anything;
        // then, round the wheel, the first one up to the cursor's (whose bits at and after
        // the cursor are known to be clear by then).
        let here = self.occupied.get(sw).copied().unwrap_or(0) & (u64::MAX << (start % 64));
        let w = if here != 0 {
            sw
        } else {
            self.next_word(sw + 1)
                .or_else(|| self.next_word(0).filter(|&w| w <= sw))?
        };
        let bits = self.occupied.get(w).copied().unwrap_or(0)
            & if w == sw && here != 0 {
                u64::MAX << (start % 64)
            } else {
                u64::MAX
            };
        if bits == 0 {
            return None;
        }
        let i = w * 64 + bits.trailing_zeros() as usize;
        let distance = (i + SLOTS - start) % SLOTS;
        Some(self.cursor + distance as u64)
    }

    /// The first word of `occupied` at or after `from` that is not zero.
    fn next_word(&self, from: usize) -> Option<usize> {
        for s in from / 64..self.summary.len() {
            let mut bits = self.summary.get(s).copied().unwrap_or(0);
            if s == from / 64 {
                bits &= u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
            }
            if bits != 0 {
                return Some(s * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }

    /// The slot of `tick` has been emptied: its bit goes, and so does its memory. Once
    /// the load stops, the slots the cursor has passed are never filled again: what they
    /// keep, they keep for good. Under load a slot grows back each round, a few
    /// reallocations per 10 ms, nothing beside the deadlines themselves.
    fn emptied(&mut self, tick: u64) {
        self.mark(tick, false);
        if let Some(slot) = self.slot_mut(tick) {
            if slot.capacity() > 16 {
                *slot = Vec::new();
            }
        }
    }

    /// Takes one deadline due at `now` (`at <= now`), earliest slot first. Deadlines of one
    /// slot (10 ms) come in no particular order.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        let origin = self.origin?;
        let now = self.offset(now);
        let now_tick = Self::tick_of(now);
        loop {
            self.bring_near();
            match self.first_occupied() {
                Some(t) if t <= now_tick => {
                    self.cursor = t;
                    let slot = self.slot_mut(t)?;
                    // Usually every entry is due (the driver wakes after the tick) and the
                    // last one is taken. When it is not, one pass puts the due ones last,
                    // so each is then taken without a search.
                    if slot.last().is_none_or(|&(at, _)| at > now) && !due_last(slot, now) {
                        return None;
                    }
                    let due = slot.pop()?;
                    let empty = slot.is_empty();
                    self.len -= 1;
                    // Taking any other entry leaves the slot's earliest where it was.
                    if self.earliest == Some((t, due.0, due.1)) {
                        self.earliest = None;
                    }
                    if empty {
                        self.emptied(t);
                    }
                    return Some((instant_from(origin, due.0), due.1));
                }
                _ if self.cursor < now_tick => {
                    // Nothing due before now: the cursor moves up to it (never past it,
                    // or a deadline set later for this very tick would wait a round).
                    self.cursor = now_tick;
                }
                _ => return None,
            }
        }
    }

    /// The earliest live deadline. `live` tells a live entry from a stale one; the stale
    /// entries found on the way are dropped.
    pub fn next_deadline(&mut self, mut live: impl FnMut(Instant, &T) -> bool) -> Option<Instant> {
        let origin = self.origin?;
        loop {
            self.bring_near();
            let Some(t) = self.first_occupied() else {
                while let Some(&Reverse((offset, item))) = self.far.peek() {
                    let at = instant_from(origin, offset);
                    if live(at, &item) {
                        return Some(at);
                    }
                    self.far.pop();
                    self.len -= 1;
                }
                return None;
            };
            let noted = self.earliest.filter(|&(tick, _, _)| tick == t);
            let (offset, item) = match noted {
                Some((_, offset, item)) => (offset, item),
                None => {
                    let slot = self.slots.get((t % SLOTS as u64) as usize)?;
                    let &(offset, item) = slot.iter().min_by_key(|e| e.0)?;
                    self.earliest = Some((t, offset, item));
                    (offset, item)
                }
            };
            let at = instant_from(origin, offset);
            if live(at, &item) {
                return Some(at);
            }
            // Stale: so may be many more of the slot (a timer cleared by a response at
            // once, as most Timer Bs are). The slot keeps only its live entries, each
            // looked at once, and its earliest is found again.
            self.touched(t);
            let slot = self.slot_mut(t)?;
            let before = slot.len();
            slot.retain(|e| live(instant_from(origin, e.0), &e.1));
            let (dropped, empty) = (before - slot.len(), slot.is_empty());
            self.len -= dropped;
            if empty {
                self.emptied(t);
            }
        }
    }

    /// Keeps only the deadlines `keep` says to (stale ones dropped in bulk).
    pub fn retain(&mut self, mut keep: impl FnMut(Instant, &T) -> bool) {
        self.earliest = None;
        let Some(origin) = self.origin else { return };
        let mut len = 0;
        for i in 0..SLOTS {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if slot.is_empty() {
                continue;
            }
            slot.retain(|(at, item)| keep(instant_from(origin, *at), item));
            len += slot.len();
            if slot.is_empty() {
                self.emptied(i as u64);
            } else if slot.capacity() > 2 * slot.len() + 16 {
                slot.shrink_to(slot.len());
            }
        }
        self.far
            .retain(|Reverse((at, item))| keep(instant_from(origin, *at), item));
        self.far.shrink_to_fit();
        self.len = len + self.far.len();
    }
}

const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// The instant `offset` nanoseconds from `origin`.
fn instant_from(origin: Instant, offset: i64) -> Instant {
    let d = Duration::from_nanos(offset.unsigned_abs());
    if offset >= 0 {
        origin.checked_add(d).unwrap_or(origin)
    } else {
        origin.checked_sub(d).unwrap_or(origin)
    }
}

/// Moves the entries due at `now` to the end of `slot`, in one pass; false when none is.
fn due_last<T>(slot: &mut [(i64, T)], now: i64) -> bool {
    let mut end = slot.len();
    let mut i = 0;
    while i < end {
        if slot.get(i).is_some_and(|&(at, _)| at <= now) {
            end -= 1;
            slot.swap(i, end);
        } else {
            i += 1;
        }
    }
    end < slot.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One arbitrary origin; everything after it is virtual.
    fn origin() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn fires_in_tick_order_and_never_early() {
        let t0 = origin();
        let mut w = TimerWheel::new();
        w.insert(t0 + ms(500), 1);
        w.insert(t0 + ms(32_000), 2);
        w.insert(t0 + ms(200), 3);
        w.insert(t0 + ms(180_000), 4); // beyond the span
        assert_eq!(w.len(), 4);
        assert_eq!(w.next_deadline(|_, _| true), Some(t0 + ms(200)));
        assert_eq!(w.pop_due(t0 + ms(199)), None);
        assert_eq!(w.pop_due(t0 + ms(200)), Some((t0 + ms(200), 3)));
        assert_eq!(w.pop_due(t0 + ms(400)), None);
        assert_eq!(w.next_deadline(|_, _| true), Some(t0 + ms(500)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), Some((t0 + ms(500), 1)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), Some((t0 + ms(32_000), 2)));
        assert_eq!(w.pop_due(t0 + ms(100_000)), None);
        assert_eq!(w.next_deadline(|_, _| true), Some(t0 + ms(180_000)));
        assert_eq!(w.pop_due(t0 + ms(180_000)), Some((t0 + ms(180_000), 4)));
        assert!(w.is_empty());
    }

    #[test]
    fn a_deadline_a_round_ahead_is_found_behind_the_cursor() {
        let t0 = origin();
        let mut w = TimerWheel::new();
        w.insert(t0, 0);
        // The cursor to tick 70, in the middle of its word.
        w.insert(t0 + ms(700), 1);
        assert_eq!(w.pop_due(t0 + ms(700)), Some((t0, 0)));
        assert_eq!(w.pop_due(t0 + ms(700)), Some((t0 + ms(700), 1)));
        // Tick 70 + 8190: the slot two below the cursor's, in the same word.
        let far = t0 + ms(700) + SPAN - ms(20);
        w.insert(far, 2);
        assert_eq!(w.next_deadline(|_, _| true), Some(far));
        assert_eq!(w.pop_due(far - ms(1)), None);
        assert_eq!(w.pop_due(far), Some((far, 2)));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(|_, _| true), None);
    }

    #[test]
    fn a_deadline_in_the_past_is_due_at_once() {
        let t0 = origin() + ms(10_000);
        let mut w = TimerWheel::new();
        w.insert(t0, 1);
        assert_eq!(w.pop_due(t0 + ms(5_000)), Some((t0, 1)));
        // Before tick zero, and before the cursor.
        w.insert(t0 - ms(3_000), 2);
        w.insert(t0 + ms(1_000), 3);
        assert_eq!(w.next_deadline(|_, _| true), Some(t0 - ms(3_000)));
        assert_eq!(w.pop_due(t0 + ms(5_000)), Some((t0 - ms(3_000), 2)));
        assert_eq!(w.pop_due(t0 + ms(5_000)), Some((t0 + ms(1_000), 3)));
    }

    #[test]
    fn stale_entries_are_skipped_and_dropped() {
        let t0 = origin();
        let mut w = TimerWheel::new();
        for i in 0..10u32 {
            w.insert(t0 + ms(100 + u64::from(i)), i);
        }
        w.insert(t0 + ms(90_000), 99);
        // Only the odd ones are live, and the far one: a stale earliest has its slot's
        // stale entries dropped with it.
        assert_eq!(w.next_deadline(|_, &i| i % 2 == 1), Some(t0 + ms(101)));
        assert_eq!(w.len(), 6);
        w.retain(|_, &i| i % 2 == 1);
        assert_eq!(w.len(), 6);
        assert_eq!(w.next_deadline(|_, &i| i > 8), Some(t0 + ms(109)));
        assert_eq!(w.next_deadline(|_, &i| i > 9), Some(t0 + ms(90_000)));
        assert_eq!(w.next_deadline(|_, _| false), None);
        assert!(w.is_empty());
    }

    #[test]
    fn a_slot_gives_its_memory_back_when_it_empties() {
        let t0 = origin();
        let mut w = TimerWheel::new();
        for i in 0..5_000u32 {
            w.insert(t0 + ms(20), i);
        }
        let i = (TimerWheel::<u32>::tick_of(w.offset(t0 + ms(20))) % SLOTS as u64) as usize;
        assert!(w.slots[i].capacity() >= 5_000);
        while w.pop_due(t0 + ms(30)).is_some() {}
        assert_eq!(w.slots[i].capacity(), 0);
        // Emptied by dropping stale entries, or in bulk: the same.
        for i in 0..5_000u32 {
            w.insert(t0 + ms(100), i);
            w.insert(t0 + ms(200), i);
        }
        assert_eq!(
            w.next_deadline(|at, _| at > t0 + ms(100)),
            Some(t0 + ms(200))
        );
        w.retain(|_, _| false);
        assert!(w.slots.iter().all(|s| s.capacity() == 0));
    }

    /// What the wheel must do, done the obvious way.
    #[derive(Default)]
    struct Model(Vec<(Instant, u32)>);

    proptest! {
        /// Against a sorted list: the same deadlines fire by `now`, none early, none lost,
        /// and the next deadline is the earliest live one.
        #[test]
        fn behaves_as_a_sorted_list(
            ops in proptest::collection::vec((0u8..4, 0u64..200_000, any::<bool>()), 1..200)
        ) {
            let t0 = origin();
            let mut w = TimerWheel::new();
            let mut m = Model::default();
            let mut now = t0;
            let mut next_id = 0u32;
            for (op, n, flag) in ops {
                match op {
                    0 | 1 => {
                        // A deadline up to 200 s ahead (or, with `flag`, up to 2 s behind).
                        let at = if flag { now.checked_sub(ms(n % 2_000)).unwrap_or(now) } else { now + ms(n) };
                        w.insert(at, next_id);
                        m.0.push((at, next_id));
                        next_id += 1;
                    }
                    2 => {
                        now += ms(n / 4);
                        let mut fired = Vec::new();
                        while let Some(e) = w.pop_due(now) {
                            prop_assert!(e.0 <= now);
                            fired.push(e);
                        }
                        let mut due: Vec<_> = m.0.iter().copied().filter(|e| e.0 <= now).collect();
                        m.0.retain(|e| e.0 > now);
                        fired.sort();
                        due.sort();
                        prop_assert_eq!(fired, due);
                    }
                    _ => {
                        // Every third id is stale from here on.
                        let live = |_: Instant, i: &u32| !(flag && i % 3 == 0);
                        let want = m.0.iter().filter(|e| live(e.0, &e.1)).map(|e| e.0).min();
                        prop_assert_eq!(w.next_deadline(live), want);
                        if flag {
                            // Whatever stale entries it dropped on the way, a bulk drop
                            // leaves both with the live ones only.
                            w.retain(|at, i| live(at, i));
                            m.0.retain(|e| live(e.0, &e.1));
                        }
                    }
                }
                prop_assert_eq!(w.len(), m.0.len());
            }
        }
    }
}
