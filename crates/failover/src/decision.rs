//! The record of what was decided and why: one entry per decision, for logs and for
//! `rollover simulate`'s timeline. The engine makes most of them; the proxy core adds its
//! own (routing, refusals, the final response).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rollover_sip::StatusCode;
use rollover_txn::{TransportError, TxnError};

/// Why the owner could not start a branch ([`crate::Engine::start_failed`]). Each kind is
/// kept in the [`Why`] it becomes, so a log says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFailure {
    /// The target names no host to send to, or its host has no address.
    Unresolvable,
    /// The target or its address is not allowed: a multicast, broadcast or unspecified
    /// address is never called.
    NotAllowed,
    /// No request could be built for the target.
    Unbuildable,
    /// The transaction layer refused the request.
    Transaction(TxnError),
    /// The routing policy dropped the branch before it was sent (a script's branch route).
    Dropped,
}

impl From<StartFailure> for Why {
    fn from(f: StartFailure) -> Why {
        match f {
            StartFailure::Unresolvable => Why::Unresolvable,
            StartFailure::NotAllowed => Why::NeverATarget,
            StartFailure::Unbuildable => Why::Unbuildable,
            StartFailure::Transaction(e) => Why::NotSent(e),
            StartFailure::Dropped => Why::Dropped,
        }
    }
}

/// Why a target was left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// No response at all within `no_response_timeout`.
    NoResponse(Duration),
    /// Rang without a final response within `ring_timeout`.
    RingTimeout(Duration),
    /// Timer C fired (RFC 3261 §16.8).
    TimerC,
    /// The transaction timed out (Timer B/F).
    TransactionTimeout,
    /// A final response that matches the failover pattern (or a 503, which always does).
    Status {
        /// The status.
        status: StatusCode,
        /// The pattern that matched.
        pattern: Arc<str>,
    },
    /// The transport failed.
    Transport(TransportError),
    /// The target's host could not be resolved.
    Unresolvable,
    /// The target's address is multicast, broadcast or unspecified: never called.
    NeverATarget,
    /// A 3xx: its Contacts were added as targets.
    Redirected(StatusCode),
    /// No request could be built for the target.
    Unbuildable,
    /// The transaction layer refused the request.
    NotSent(TxnError),
    /// The routing policy dropped the branch before it was sent.
    Dropped,
}

impl Why {
    /// A short name for the reason, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Why::NoResponse(_) => "no_response",
            Why::RingTimeout(_) => "ring_timeout",
            Why::TimerC => "timer_c",
            Why::TransactionTimeout => "transaction_timeout",
            Why::Status { .. } => "status",
            Why::Transport(_) => "transport",
            Why::Unresolvable => "unresolvable",
            Why::NeverATarget => "never_a_target",
            Why::Redirected(_) => "redirected",
            Why::Unbuildable => "unbuildable",
            Why::NotSent(_) => "not_sent",
            Why::Dropped => "dropped",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoResponse(d) => write!(f, "no response within {}", fmt_duration(*d)),
            Why::RingTimeout(d) => write!(f, "ring timeout after {}", fmt_duration(*d)),
            Why::TimerC => f.write_str("Timer C fired"),
            Why::TransactionTimeout => f.write_str("transaction timed out"),
            Why::Status { status, pattern } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                write!(f, "503 (always rolls over; pattern {pattern:?})")
            }
            Why::Status { status, pattern } => write!(f, "{status} matched pattern {pattern:?}"),
            Why::Transport(e) => write!(f, "transport error: {e}"),
            Why::Unresolvable => f.write_str("host could not be resolved"),
            Why::NeverATarget => {
                f.write_str("a multicast, broadcast or unspecified address is never a target")
            }
            Why::Redirected(s) => write!(f, "redirected by {s}"),
            Why::Unbuildable => f.write_str("no request could be built for it"),
            Why::NotSent(e) => write!(f, "request not sent: {e}"),
            Why::Dropped => f.write_str("dropped by the routing policy"),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A rule matched.
    Routed {
        /// The rule's name.
        rule: String,
        /// Targets in the plan.
        targets: usize,
    },
    /// The request was answered without forwarding.
    Rejected {
        /// The status sent.
        status: StatusCode,
        /// Why.
        reason: String,
    },
    /// A request relayed along its route set (in-dialog, or preloaded by a trusted
    /// source), not through the dial plan.
    Relayed {
        /// The method.
        method: String,
        /// The next hop.
        hop: String,
        /// Where the request came from.
        source: String,
        /// Relayed only because the source is trusted (no route set of ours).
        trusted: bool,
    },
    /// Preloaded Route entries from a source that is not trusted were removed; the dial
    /// plan decides.
    RouteRemoved {
        /// How many entries.
        entries: usize,
        /// Where the request came from.
        source: String,
    },
    /// The routing policy dropped the request: nothing was sent, not even a reply.
    Dropped {
        /// The rule (or script route) that dropped it.
        rule: String,
    },
    /// Every target failed and the policy's failure route gave new ones.
    FailureRoute {
        /// How many.
        targets: usize,
    },
    /// A branch was started.
    Trying {
        /// The target.
        target: Arc<str>,
    },
    /// A failover timer was armed for a target.
    TimerArmed {
        /// The target.
        target: Arc<str>,
        /// Which timer: `no-response` or `ring`.
        timer: &'static str,
        /// When it fires, from now.
        after: Duration,
    },
    /// A target sent a provisional.
    Ringing {
        /// The target.
        target: Arc<str>,
        /// The status.
        status: StatusCode,
    },
    /// A target was left and the call rolls over.
    RolledOver {
        /// The target left.
        target: Arc<str>,
        /// Why.
        why: Why,
    },
    /// A 3xx added targets.
    Redirected {
        /// The target that redirected.
        target: Arc<str>,
        /// The targets added (in the order they will be tried).
        added: Vec<String>,
        /// Contacts dropped (duplicates, already tried, over `max_targets`).
        dropped: usize,
    },
    /// A 3xx Contact outside the reach: not followed.
    OutsideReach {
        /// The target that redirected.
        target: Arc<str>,
        /// The Contact refused.
        contact: String,
    },
    /// A final response that does not match the pattern: no further targets.
    Stopped {
        /// The target.
        target: Arc<str>,
        /// The status.
        status: StatusCode,
    },
    /// `max_targets` reached.
    TargetLimit {
        /// The limit.
        max_targets: usize,
    },
    /// A target answered.
    Answered {
        /// The target.
        target: Arc<str>,
        /// The status.
        status: StatusCode,
    },
    /// A pending branch was cancelled.
    Cancelled {
        /// The target.
        target: Arc<str>,
        /// Why.
        reason: String,
    },
    /// The final response sent upstream.
    Final {
        /// The status.
        status: StatusCode,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Routed { rule, targets } => {
                write!(f, "rule {rule:?} matched: {targets} target(s)")
            }
            Decision::Rejected { status, reason } => write!(f, "rejected with {status} ({reason})"),
            Decision::Dropped { rule } => write!(f, "dropped by {rule:?}: nothing sent"),
            Decision::Relayed {
                method,
                hop,
                source,
                trusted,
            } => {
                let by = if *trusted {
                    "on the trusted source's route"
                } else {
                    "along the route set"
                };
                write!(f, "{method} from {source} relayed {by} to {hop}")
            }
            Decision::RouteRemoved { entries, source } => write!(
                f,
                "removed {entries} preloaded Route entr{} from {source} (not ours, source not trusted); the dial plan decides",
                if *entries == 1 { "y" } else { "ies" }
            ),
            Decision::FailureRoute { targets } => {
                write!(f, "every target failed; the failure route gives {targets} more")
            }
            Decision::Trying { target } => write!(f, "trying {target}"),
            Decision::TimerArmed {
                target,
                timer,
                after,
            } => {
                write!(
                    f,
                    "{timer} timer armed for {target}: {}",
                    fmt_duration(*after)
                )
            }
            Decision::Ringing { target, status } => write!(f, "{target} answered {status}"),
            Decision::RolledOver { target, why } => write!(f, "left {target}: {why}; rolling over"),
            Decision::Redirected {
                target,
                added,
                dropped,
            } => {
                write!(f, "{target} redirected to [{}]", added.join(", "))?;
                if *dropped > 0 {
                    write!(f, " ({dropped} contact(s) dropped)")?;
                }
                Ok(())
            }
            Decision::OutsideReach { target, contact } => write!(
                f,
                "{target} redirected to {contact}: host outside the reach, not followed"
            ),
            Decision::Stopped { target, status } => {
                write!(
                    f,
                    "{target} answered {status}, which does not match the pattern: no more targets"
                )
            }
            Decision::TargetLimit { max_targets } => {
                write!(f, "max_targets ({max_targets}) reached")
            }
            Decision::Answered { target, status } => write!(f, "{target} answered {status}"),
            Decision::Cancelled { target, reason } => write!(f, "CANCEL {target} ({reason})"),
            Decision::Final { status } => write!(f, "final response {status} sent upstream"),
        }
    }
}

/// `1.5s`, `800ms`, `20s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}
