//! Where the core's decisions go: the statistics, the log, and (when asked) the list kept
//! for `simulate` and the tests.

use std::time::Instant;

use rollover_failover::Decision;
use tracing::{debug, info};

use super::Proxy;
use crate::policy_hooks::RoutePolicy;
use crate::stats::ProxyStats;

impl<R: RoutePolicy> Proxy<R> {
    pub(super) fn decide(&mut self, now: Instant, call_id: &str, d: Decision) {
        self.stats.note(&d);
        match &d {
            Decision::Ringing { .. } | Decision::TimerArmed { .. } => {
                debug!(call_id, "{d}")
            }
            _ => info!(call_id, "{d}"),
        }
        if self.cfg.keep_decisions {
            self.decisions.push_back((now, call_id.to_owned(), d));
        }
    }

    /// [`Proxy::decide`] for a decision whose text costs formatted addresses and copied
    /// names: built only when it is logged at info or kept. `counts` is what
    /// [`ProxyStats::note`] counts for it, so the statistics are the same either way.
    pub(super) fn decide_lazily(
        &mut self,
        now: Instant,
        call_id: &str,
        counts: fn(&mut ProxyStats),
        build: impl FnOnce() -> Decision,
    ) {
        if self.cfg.keep_decisions || tracing::enabled!(tracing::Level::INFO) {
            self.decide(now, call_id, build());
        } else {
            counts(&mut self.stats);
        }
    }
}
