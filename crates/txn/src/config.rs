//! Timer values (RFC 3261 §17 and Table 4).

use std::time::Duration;

/// Transaction timer configuration. Defaults are RFC 3261's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// T1: RTT estimate (500 ms).
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// T4: maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the TU's provisional before it
    /// sends 100 Trying itself (§17.2.1: 200 ms).
    pub trying_delay: Duration,
    /// Timer D on an unreliable transport (> 32 s).
    pub timer_d: Duration,
    /// At most this long a transaction that has ended stays to absorb retransmissions:
    /// caps Timers D, J, L and M (`None`: the RFC's values, 32 s with the default T1).
    /// Kamailio keeps a finished transaction 5 s (tm's `wait_timer`); a retransmitted 2xx
    /// after that is still relayed, statelessly. Memory grows with it: every call of the
    /// last `linger` seconds is held.
    pub linger: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
            timer_d: Duration::from_secs(32),
            linger: None,
        }
    }
}

impl Config {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// A lingering timer (D, J, L, M) of `rfc` by the RFC, capped by `linger`.
    pub fn lingering(&self, rfc: Duration) -> Duration {
        self.linger.map_or(rfc, |l| l.min(rfc))
    }
}
