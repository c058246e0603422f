//! Rate-limited logging: under a flood of refused or closed connections, one line per
//! reason and interval, carrying how many events were not logged since.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How often one reason may be logged.
const INTERVAL: Duration = Duration::from_secs(10);

/// One reason's window: the first event in each interval is logged, the rest are counted.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the last logged event was; `None` before the first.
    logged: Option<Instant>,
    /// Events since then that were not logged.
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed)` when this event is to be logged, with how many were not logged
    /// since the last line; `None` when it is only counted.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = w
            .logged
            .is_none_or(|last| now.saturating_duration_since(last) >= INTERVAL);
        if due {
            w.logged = Some(now);
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
            None
        }
    }
}

/// One limiter per reason a connection is refused, closed or dropped.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    pub(crate) incoming_limit: RateLimit,
    pub(crate) outgoing_limit: RateLimit,
    pub(crate) per_ip_limit: RateLimit,
    pub(crate) header_timeout: RateLimit,
    pub(crate) unused: RateLimit,
    pub(crate) accept_error: RateLimit,
    pub(crate) queue_full: RateLimit,
    pub(crate) no_certificate: RateLimit,
    pub(crate) shed: RateLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(limit.allow_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.allow_at(t0 + INTERVAL), Some(5));
        assert_eq!(limit.allow_at(t0 + INTERVAL), None);
        assert_eq!(limit.allow_at(t0 + INTERVAL * 3), Some(1));
    }
}
