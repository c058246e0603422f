//! Failover policy: when to give up on a target and roll over to the next.
//!
//! The semantics follow the Brekeke failover dial plan (`failover.timer.inviting`,
//! `failover.timer.provisional`, `failover.pattern.response`, `failover.redirection`) with
//! RFC 3261's rules on top: a 6xx is a global answer (§16.7) and ends the call unless the
//! pattern names it explicitly.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use regex::Regex;
use rollover_sip::StatusCode;

/// A regular expression over the three-digit status code, anchored at both ends.
///
/// Compiled once into the set of the 600 codes it matches, so a response costs a bit test
/// and a call's copy of the policy costs no regex.
#[derive(Clone)]
pub struct ResponsePattern(Arc<Compiled>);

struct Compiled {
    /// Shared with every decision that names it (a call rolled over on a status).
    source: Arc<str>,
    /// Bit `c - 100` is set when the pattern matches status `c` (100–699).
    codes: [u64; 10],
    catch_all: bool,
}

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid response pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What the regex engine said.
    pub reason: String,
}

impl ResponsePattern {
    /// The default: any final 3xx–5xx (6xx ends the call).
    pub const DEFAULT: &'static str = "[3-5][0-9][0-9]";

    /// Compiles a pattern such as `4..`, `30.`, `5..|408`.
    pub fn new(pattern: &str) -> Result<ResponsePattern, PatternError> {
        let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| PatternError {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        let mut codes = [0u64; 10];
        for code in 100u16..700 {
            if re.is_match(&code.to_string()) {
                let i = usize::from(code - 100);
                if let Some(w) = codes.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        }
        let mut p = Compiled {
            source: pattern.into(),
            codes,
            catch_all: false,
        };
        p.catch_all = [300, 400, 500, 600].iter().all(|&c| p.matches(c));
        Ok(ResponsePattern(Arc::new(p)))
    }

    /// A pattern that matches no status: nothing rolls over.
    pub fn never() -> ResponsePattern {
        static NEVER: OnceLock<ResponsePattern> = OnceLock::new();
        NEVER
            .get_or_init(|| {
                ResponsePattern(Arc::new(Compiled {
                    source: "".into(),
                    codes: [0; 10],
                    catch_all: false,
                }))
            })
            .clone()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    /// The pattern as written, shared (a decision that names it does not copy it).
    pub fn source(&self) -> Arc<str> {
        self.0.source.clone()
    }

    /// Whether a final response with this status rolls the call over.
    ///
    /// A 6xx rolls over only when the pattern matches it and is not a catch-all (one that
    /// matches 300, 400, 500 and 600 alike, such as Brekeke's `.+`): write `6..` or `603`
    /// to roll over on a global failure.
    pub fn rolls_over(&self, status: StatusCode) -> bool {
        let status = status.as_u16();
        self.0.matches(status) && (status < 600 || !self.0.catch_all)
    }
}

impl Compiled {
    fn matches(&self, status: u16) -> bool {
        let Some(i) = status.checked_sub(100).map(usize::from) else {
            return false;
        };
        self.codes
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

impl Default for ResponsePattern {
    #[allow(clippy::expect_used)] // a constant pattern, compiled by the unit tests
    fn default() -> Self {
        static DEFAULT: OnceLock<ResponsePattern> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                ResponsePattern::new(Self::DEFAULT).expect("the default pattern compiles")
            })
            .clone()
    }
}

impl fmt::Debug for ResponsePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponsePattern({:?})", self.0.source)
    }
}

impl PartialEq for ResponsePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

/// What to do for one call: the timers, the pattern and the redirect rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPolicy {
    /// No response at all from a target within this → abandon it and try the next
    /// (Brekeke `failover.timer.inviting`, default 10 s).
    pub no_response_timeout: Duration,
    /// A provisional but no final within this → CANCEL and try the next
    /// (Brekeke `failover.timer.provisional`, default 20 s).
    pub ring_timeout: Duration,
    /// Final responses that roll over (Brekeke `failover.pattern.response`).
    pub on_response: ResponsePattern,
    /// Follow 3xx Contacts as new targets (Brekeke `failover.redirection`, default true).
    pub follow_redirects: bool,
    /// Most targets tried for one call, redirects included (default 10): ends redirect loops.
    pub max_targets: usize,
    /// Where 3xx Contacts may lead (besides the redirecting target's own host); `None`
    /// follows any (a user agent whose application decides). Shared: every call of a rule
    /// holds the same list, which may name every host of the plan.
    pub reach: Option<Arc<crate::reach::Reach>>,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            no_response_timeout: Duration::from_secs(10),
            ring_timeout: Duration::from_secs(20),
            on_response: ResponsePattern::default(),
            follow_redirects: true,
            max_targets: 10,
            reach: None,
        }
    }
}

impl fmt::Display for FailoverPolicy {
    /// `no_response_timeout=10s ring_timeout=20s on_response="…" follow_redirects=true max_targets=10`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no_response_timeout={} ring_timeout={} on_response={:?} follow_redirects={} max_targets={}",
            crate::decision::fmt_duration(self.no_response_timeout),
            crate::decision::fmt_duration(self.ring_timeout),
            self.on_response.as_str(),
            self.follow_redirects,
            self.max_targets
        )?;
        match &self.reach {
            Some(r) if r.explicit => write!(f, " reach={r}"),
            Some(r) => write!(f, " reach={r} (the hosts the plan names)"),
            None => Ok(()),
        }
    }
}

impl FailoverPolicy {
    /// A policy that never rolls over: in-dialog requests and plain forwarding.
    pub fn no_failover() -> FailoverPolicy {
        FailoverPolicy {
            no_response_timeout: Duration::from_secs(32),
            ring_timeout: Duration::from_secs(180),
            on_response: ResponsePattern::never(),
            follow_redirects: false,
            max_targets: 1,
            reach: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: u16) -> StatusCode {
        StatusCode::new(c).unwrap()
    }

    #[test]
    fn patterns() {
        let p = ResponsePattern::default();
        assert!(p.rolls_over(code(486)) && p.rolls_over(code(302)) && p.rolls_over(code(503)));
        assert!(!p.rolls_over(code(603)));
        let never = ResponsePattern::never();
        assert!(!(100..700).any(|c| never.rolls_over(code(c))));
        assert!(!p.0.matches(99) && !p.0.matches(700));
        let p = ResponsePattern::new("4..").unwrap();
        assert!(p.rolls_over(code(404)) && !p.rolls_over(code(503)));
        let p = ResponsePattern::new("5..|408").unwrap();
        assert!(p.rolls_over(code(408)) && p.rolls_over(code(500)) && !p.rolls_over(code(404)));
        let brekeke = ResponsePattern::new(".+").unwrap();
        assert!(
            brekeke.rolls_over(code(486)) && !brekeke.rolls_over(code(603)),
            "catch-all never names 6xx"
        );
        let six = ResponsePattern::new("6..|486").unwrap();
        assert!(six.rolls_over(code(603)));
        assert!(ResponsePattern::new("4(").is_err());
    }
}
