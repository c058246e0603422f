//! # rollover-proxy
//!
//! The RFC 3261 §16 proxy core and Rollover's failover engine, as a sans-IO state machine
//! driven together with the transaction layer (`rollover-txn`).
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

mod best;
mod core;
mod decision;
pub mod engine;
mod forward;
mod guard;
mod policy;
mod policy_hooks;
mod reach;
mod router;
mod secret;
#[doc(hidden)]
pub mod sim;
mod stats;
mod target;

pub use crate::core::{LateAnswer, Proxy, ProxyConfig, Question, ROUTE_ANSWER_TIMEOUT};
pub use decision::{fmt_duration, Decision, Why};
pub use guard::{Cidr, CidrError, Refusal, SecurityConfig};
pub use policy::{FailoverPolicy, PatternError, ResponsePattern};
pub use policy_hooks::{CallView, Edits, Failure, RoutePolicy};
pub use reach::{never_a_target, Reach, ReachError};
pub use router::{default_port, LiteralResolver, Resolved, Resolver, RouteDecision, Router};
pub use secret::Secret;
pub use stats::ProxyStats;
pub use target::{Target, TargetError, TargetPlan, TargetProblem};
