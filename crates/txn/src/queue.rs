//! Taking from a queue that may have grown in a burst.
//!
//! A `VecDeque` is a ring: taking from the front and putting at the back walks round its
//! whole capacity, one slot further each time, even when it never holds more than one or
//! two entries. A queue that grew in a burst (hundreds of transactions ending on one
//! timer tick, thousands of datagrams read ahead under overload) is then walked through
//! hundreds of kilobytes of memory that is no longer in the caches, a few cache lines per
//! entry. Emptied, it starts over at its first slot instead (`VecDeque::clear` puts the
//! ring's head back there), so a queue that holds a few entries at a time keeps using the
//! same few cache lines.

use std::collections::VecDeque;

/// The front entry of `queue`; once it is empty, the ring starts over at its first slot
/// (see the module documentation).
#[inline]
pub fn take_front<T>(queue: &mut VecDeque<T>) -> Option<T> {
    if queue.is_empty() {
        queue.clear();
        return None;
    }
    queue.pop_front()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a burst, an emptied queue puts its next entry where the burst's first went.
    #[test]
    fn an_emptied_queue_starts_over_at_its_first_slot() {
        let mut q: VecDeque<u64> = VecDeque::with_capacity(4);
        q.push_back(0);
        for i in 1..1000 {
            q.push_back(i);
        }
        let start = q.as_slices().0.as_ptr();
        let mut n = 0;
        while take_front(&mut q).is_some() {
            n += 1;
            // A few at a time, as between bursts: the ring would move on each time.
            if n % 100 == 0 {
                q.push_back(n);
            }
        }
        q.push_back(7);
        assert_eq!(q.as_slices().0.as_ptr(), start, "back at the first slot");
    }
}
