//! The front door: who may use the proxy at all, how fast one source may send new
//! requests (after Kamailio's pike module), and when the proxy is too busy to take new
//! calls. Everything here is decided per message before a transaction exists, so a flood
//! costs a parse and a table look-up, never a transaction.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rollover_failover::Cidr;
use rollover_txn::Site;
use tracing::{info, warn};

/// `[security]`: who is trusted, who may send at all, and the flood limits.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Sources whose preloaded Routes and in-dialog requests are honoured as RFC 3261
    /// allows (upstream proxies, SBCs), and which the flood limit does not apply to.
    pub trusted: Vec<Cidr>,
    /// Sources allowed to send anything at all; empty means everyone. Others get a
    /// stateless 403 (an ACK is dropped).
    pub allow: Vec<Cidr>,
    /// New requests per second one source may send, sustained (0 turns the limit off).
    pub pike_rate: u32,
    /// How many above the rate a source may send in a burst.
    pub pike_burst: u32,
    /// How long a source over the limit is blocked (extended while it goes on).
    pub pike_block: Duration,
    /// Received messages waiting behind the current one at which the proxy counts as
    /// overloaded and refuses new requests with 503 (0 turns admission control off).
    pub overload_backlog: usize,
    /// The `Retry-After` of that 503, in seconds.
    pub retry_after: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            trusted: Vec::new(),
            allow: Vec::new(),
            pike_rate: 30,
            pike_burst: 60,
            pike_block: Duration::from_secs(30),
            // A worker's read-ahead (4,096 datagrams, about 80 ms of calls): a proxy that
            // shares its cores is off them for tens of milliseconds at a time, and the
            // burst it then finds (1,000 datagrams and more at 5,000 calls/s) is not
            // overload (docs/performance.md, "Fewer false overloads").
            overload_backlog: 4096,
            retry_after: 5,
        }
    }
}

impl SecurityConfig {
    /// Whether a source is trusted.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// Whether a source may send at all.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Sources tracked at most. A source not yet known when the table is full makes the idle
/// ones be forgotten at once (at most every `PIKE_FULL_SWEEP`); if none is idle, it is not
/// limited (a flood from that many addresses or /64s, each sending faster than
/// `flood_rate`, is admission control's to handle) and the table does not grow.
const PIKE_MAX_SOURCES: usize = 65_536;

/// How often a full table is swept for idle sources, at most.
const PIKE_FULL_SWEEP: Duration = Duration::from_secs(1);

/// How often idle sources are forgotten.
const PIKE_SWEEP: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    blocked_since: Option<Instant>,
    blocked_until: Option<Instant>,
    dropped: u64,
}

/// Per-source flood control: a token bucket per source (an IPv4 address or an IPv6 /64,
/// [`Site`]: one IPv6 host may send from any address of its /64); a source that empties its
/// bucket is blocked for `pike_block`, logged once when the block starts and once when
/// it ends, with the count of what was dropped.
#[derive(Debug)]
pub(crate) struct Pike {
    rate: f64,
    burst: f64,
    block: Duration,
    sources: HashMap<Site, Bucket>,
    next_sweep: Option<Instant>,
    /// When a full table may next be swept early.
    next_full_sweep: Option<Instant>,
}

impl Pike {
    pub fn new(cfg: &SecurityConfig) -> Pike {
        Pike {
            rate: f64::from(cfg.pike_rate),
            burst: f64::from(cfg.pike_burst.max(1)),
            block: cfg.pike_block,
            sources: HashMap::new(),
            next_sweep: None,
            next_full_sweep: None,
        }
    }

    /// Whether a flood limit is set (`flood_rate` above zero): without one, `admit` lets
    /// everything through.
    pub fn limits(&self) -> bool {
        self.rate > 0.0
    }

    /// Counts one new request from `ip`; false when it must be dropped.
    pub fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + PIKE_SWEEP);
        }
        let site = Site::of(ip);
        if self.sources.len() >= PIKE_MAX_SOURCES && !self.sources.contains_key(&site) {
            // Sources that sent once and went quiet would otherwise hold the table until
            // the next sweep, and every new source would go unlimited until then.
            if self.next_full_sweep.is_none_or(|t| t <= now) {
                self.next_full_sweep = Some(now + PIKE_FULL_SWEEP);
                self.sweep(now);
            }
            if self.sources.len() >= PIKE_MAX_SOURCES {
                return true;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.sources.entry(site).or_insert(Bucket {
            tokens: burst,
            last: now,
            blocked_since: None,
            blocked_until: None,
            dropped: 0,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.blocked_until.is_some() {
            b.tokens = (b.tokens - 1.0).max(0.0);
            b.dropped += 1;
            return false;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        b.blocked_since = Some(now);
        b.blocked_until = Some(now + self.block);
        b.dropped = 1;
        info!(
            source = %site,
            "flood: more than {} new requests/s (burst {}); dropping its requests for {}s",
            self.rate,
            self.burst,
            self.block.as_secs()
        );
        false
    }

    /// If `ip` is blocked, counts one more dropped request and says so.
    pub fn drop_if_blocked(&mut self, now: Instant, ip: IpAddr) -> bool {
        match self.sources.get_mut(&Site::of(ip)) {
            Some(b) if b.blocked_until.is_some() => {
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                b.tokens = ((b.tokens + elapsed * self.rate).min(self.burst) - 1.0).max(0.0);
                b.last = now;
                b.dropped += 1;
                true
            }
            _ => false,
        }
    }

    /// The next block to end or sweep to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Ends the blocks due (or extends those whose source is still sending too fast) and
    /// forgets sources that went quiet.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|t| t > now) {
            return;
        }
        self.sweep(now);
    }

    /// Ends the blocks due (or extends them) and forgets the sources gone quiet.
    fn sweep(&mut self, now: Instant) {
        let (rate, burst, block) = (self.rate, self.burst, self.block);
        self.sources.retain(|site, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            let tokens = (b.tokens + elapsed * rate).min(burst);
            match b.blocked_until {
                Some(until) if until <= now => {
                    // Still emptying its bucket in the last second: keep it blocked.
                    if tokens < 1.0 && elapsed < 1.0 {
                        b.blocked_until = Some(now + block);
                        return true;
                    }
                    let lasted = now.saturating_duration_since(b.blocked_since.unwrap_or(now));
                    info!(
                        source = %site,
                        "flood ended: dropped {} requests in {}s",
                        b.dropped,
                        lasted.as_secs()
                    );
                    false
                }
                Some(_) => true,
                None => tokens < burst,
            }
        });
        self.next_sweep = if self.sources.is_empty() {
            None
        } else {
            Some(now + PIKE_SWEEP.min(block))
        };
    }

    /// Whether a source is blocked now.
    #[cfg(test)]
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.sources
            .get(&Site::of(ip))
            .is_some_and(|b| b.blocked_until.is_some())
    }
}

/// Admission control with hysteresis: overloaded from `high` messages waiting, recovered
/// below a quarter of it.
#[derive(Debug)]
pub(crate) struct Overload {
    high: usize,
    on: bool,
    refused: u64,
}

impl Overload {
    pub fn new(high: usize) -> Overload {
        Overload {
            high,
            on: false,
            refused: 0,
        }
    }

    /// Whether new requests must be refused with this backlog.
    pub fn check(&mut self, backlog: usize) -> bool {
        if self.high == 0 {
            return false;
        }
        if !self.on && backlog >= self.high {
            self.on = true;
            warn!(
                backlog,
                "overloaded: refusing new requests with 503 until the backlog clears"
            );
        } else if self.on && backlog < self.high / 4 {
            self.on = false;
            info!(
                "overload ended: {} new requests were refused with 503",
                self.refused
            );
            self.refused = 0;
        }
        if self.on {
            self.refused += 1;
        }
        self.on
    }
}

/// Kinds of refusal whose log lines are aggregated (see [`crate::Proxy::refusals_noted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A source outside `[security] allow`.
    NotAllowed,
    /// An ACK with neither a transaction nor a route set of ours.
    Ack,
    /// A response with no transaction that we cannot relay.
    Stray,
    /// A request answered with a refusal (no rule, Not Here, 483…).
    Request,
}

/// How long one aggregated log line covers.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Sources tracked apart; past it, new sources share one line per kind.
const LOG_SOURCES: usize = 4096;

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u64,
    what: String,
}

/// Log lines about refused input, at most one per kind and source per 10 s: the first
/// refusal of a window is logged in full, the rest are counted and reported in one line
/// when the window ends ("… and 40,212 more from 198.51.100.7 in the last 10s"). A
/// stranger sending just under the flood limit costs a line per 10 s, not one per request.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    windows: HashMap<(Refusal, Option<IpAddr>), Window>,
    next_flush: Option<Instant>,
}

impl RefusalLog {
    /// How many refusals of `kind` the open windows counted.
    pub fn noted(&self, kind: Refusal) -> u64 {
        self.windows
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, w)| w.count)
            .sum()
    }

    /// Notes one refusal of `kind` from `ip`, described by `what`.
    pub fn note(&mut self, now: Instant, kind: Refusal, ip: Option<IpAddr>, what: &str) {
        let mut key = (kind, ip);
        if self.windows.len() >= LOG_SOURCES && !self.windows.contains_key(&key) {
            key = (kind, None);
        }
        if let Some(w) = self.windows.get_mut(&key) {
            w.count += 1;
            let end = w.start + LOG_WINDOW;
            self.next_flush = Some(self.next_flush.map_or(end, |t| t.min(end)));
            return;
        }
        match ip {
            Some(ip) => info!(source = %ip, "{what}"),
            None => info!("{what}"),
        }
        self.windows.insert(
            key,
            Window {
                start: now,
                count: 1,
                what: what.to_owned(),
            },
        );
        let end = now + LOG_WINDOW;
        self.next_flush = Some(self.next_flush.map_or(end, |t| t.min(end)));
    }

    /// When the next window ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_flush
    }

    /// Reports and closes the windows that ended.
    pub fn flush(&mut self, now: Instant) {
        if self.next_flush.is_none_or(|t| t > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        self.windows.retain(|(_, ip), w| {
            let end = w.start + LOG_WINDOW;
            if end > now {
                next = Some(next.map_or(end, |t| t.min(end)));
                return true;
            }
            if w.count > 1 {
                let from = ip.map(|i| format!(" from {i}")).unwrap_or_default();
                info!(
                    "{} … and {} more{from} in the last {}s",
                    w.what,
                    w.count - 1,
                    LOG_WINDOW.as_secs()
                );
            }
            false
        });
        self.next_flush = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood limit of 10 new requests a second, bursts of 20, and the time it starts.
    fn ten_a_second_burst_20() -> (Pike, Instant) {
        let cfg = SecurityConfig {
            pike_rate: 10,
            pike_burst: 20,
            ..SecurityConfig::default()
        };
        #[allow(clippy::disallowed_methods)]
        (Pike::new(&cfg), Instant::now())
    }

    #[test]
    fn pike_blocks_a_flood_and_lets_it_go_when_it_stops() {
        let cfg = SecurityConfig {
            pike_rate: 10,
            pike_burst: 20,
            pike_block: Duration::from_secs(5),
            ..SecurityConfig::default()
        };
        let mut p = Pike::new(&cfg);
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let bad: IpAddr = "192.0.2.66".parse().unwrap();
        let good: IpAddr = "192.0.2.1".parse().unwrap();
        // 1,000 requests in one second: the burst passes, then the source is blocked.
        let passed = (0..1000)
            .filter(|i| p.admit(t0 + Duration::from_millis(*i), bad))
            .count();
        assert!((20..=31).contains(&passed), "{passed}");
        assert!(p.is_blocked(bad));
        // Another source at the sustained rate is untouched.
        for i in 0..50 {
            assert!(p.admit(t0 + Duration::from_millis(i * 100), good));
        }
        // While it keeps flooding, the block is extended at each sweep.
        let mut now = t0;
        for s in 1..=12 {
            for i in 0..100 {
                now = t0 + Duration::from_secs(s) + Duration::from_millis(i * 10);
                assert!(!p.admit(now, bad));
            }
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        assert!(p.is_blocked(bad));
        // It stops: the block ends at the next sweep after the deadline; then it may send.
        let mut quiet = now;
        while p.is_blocked(bad) {
            quiet = p.poll_timeout().unwrap();
            p.handle_timeout(quiet);
        }
        assert!(quiet - now <= Duration::from_secs(11));
        assert!(p.admit(quiet + Duration::from_millis(1), bad));
    }

    #[test]
    fn a_flood_from_many_addresses_of_one_ipv6_64_meets_one_limit() {
        let (mut p, t0) = ten_a_second_burst_20();
        // 1,000 requests in one second, each from another address of 2001:db8:0:66::/64.
        let passed = (0..1000u16)
            .filter(|i| {
                let ip = IpAddr::from([0x2001, 0xdb8, 0, 0x66, *i, 1, 2, 3]);
                p.admit(t0 + Duration::from_millis(u64::from(*i)), ip)
            })
            .count();
        assert!((20..=31).contains(&passed), "{passed}");
        assert!(p.is_blocked("2001:db8:0:66:ffff::9".parse().unwrap()));
        // The next /64 is another source.
        let neighbour: IpAddr = "2001:db8:0:67::1".parse().unwrap();
        assert!(p.admit(t0 + Duration::from_millis(1000), neighbour));
        assert!(!p.is_blocked(neighbour));
    }

    /// A table filled by sources that each sent once (a spoofed spray, say) does not turn
    /// the limit off for the next source: the quiet ones are forgotten at once.
    #[test]
    fn a_table_full_of_quiet_sources_still_limits_a_new_one() {
        let (mut p, t0) = ten_a_second_burst_20();
        for i in 0..PIKE_MAX_SOURCES as u32 {
            assert!(p.admit(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes())));
        }
        assert_eq!(p.sources.len(), PIKE_MAX_SOURCES);
        // Half a second later (each of them refilled) a new source floods.
        let later = t0 + Duration::from_millis(500);
        let bad: IpAddr = "192.0.2.66".parse().unwrap();
        let passed = (0..1000)
            .filter(|i| p.admit(later + Duration::from_micros(*i), bad))
            .count();
        assert!((20..=21).contains(&passed), "{passed}");
        assert!(p.is_blocked(bad));
        // Sources still sending faster than the limit keep their places: a full table of
        // them leaves newcomers unlimited, and is not swept more than once a second.
        let (mut q, _) = ten_a_second_burst_20();
        for i in 0..PIKE_MAX_SOURCES as u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            for _ in 0..5 {
                q.admit(t0, ip);
            }
        }
        assert!(q.admit(t0, bad) && q.admit(t0, bad));
        assert_eq!(q.sources.len(), PIKE_MAX_SOURCES);
    }

    #[test]
    fn overload_has_hysteresis() {
        let mut o = Overload::new(100);
        assert!(!o.check(99));
        assert!(o.check(100));
        assert!(o.check(30));
        assert!(!o.check(24));
        assert!(!Overload::new(0).check(10_000));
    }
}
