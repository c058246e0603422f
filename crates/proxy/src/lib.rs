//! # rollover-proxy
//!
//! The RFC 3261 §16 proxy core, as a sans-IO state machine driven together with the
//! transaction layer (`rollover-txn`). Which target to try and when to leave it is decided
//! by the failover engine (`rollover-failover`), which the user agent shares; its types are
//! re-exported here under their old paths.
//!
//! ```text
//!   TxnLayer events ──▶ Proxy::handle_txn_event(now) ──▶ commands back into the TxnLayer
//!   Proxy::poll_timeout() ─▶ driver sleeps ─▶ Proxy::handle_timeout(now)
//!   Proxy::poll_decision() ─▶ one record per decision (logs, `rollover simulate`)
//! ```
//!
//! What it guarantees:
//! - §16.3 checks (483, 482, 420), §16.4 Route pre-processing, §16.6 forwarding edits;
//! - a response context per server transaction with any number of branches; every 1xx
//!   (but 100) and every 2xx forwarded at once; the best final response chosen by §16.7
//!   (6xx first, then the lowest class, 503→500, 401/407 challenges merged);
//! - failover per call: no-response timer (abandon without CANCEL, §9.1), ring timer
//!   (CANCEL), Timer C, response patterns, 503 and transport errors, 3xx recursion by q
//!   with duplicates and tried targets dropped and `max_targets` as the loop bound;
//! - a late 2xx on a branch already left behind is still relayed, and the branches started
//!   after it are CANCELled with `Reason: SIP;cause=200`.
//!
//! Time is always an argument; ids come from a seeded generator. `rollover-testkit` runs
//! the core between scripted callers and targets in virtual time (the tests in `tests/`).

mod core;
mod forward;
mod guard;
mod policy_hooks;
mod router;
mod secret;
mod stats;

pub use crate::core::{LateAnswer, Proxy, ProxyConfig, Question, ROUTE_ANSWER_TIMEOUT};
pub use guard::{Refusal, SecurityConfig};
pub use policy_hooks::{CallView, Edits, Failed, Failure, RoutePolicy};
pub use rollover_failover::engine;
pub use rollover_failover::{
    default_port, fmt_duration, never_a_target, Cidr, CidrError, Decision, FailoverPolicy,
    LiteralResolver, PatternError, Reach, ReachError, Resolved, Resolver, ResponsePattern,
    StartFailure, Target, TargetError, TargetPlan, TargetProblem, Why,
};
pub use router::{RouteDecision, Router};
pub use secret::{Secret, Token};
pub use stats::ProxyStats;
