//! # rollover-failover
//!
//! Rollover's failover engine: one call's target set and every decision on it. Which
//! targets to try and in what order (serial, parallel groups), when to leave one (the
//! no-response and ring timers, Timer C, response patterns, 503 and transport failures),
//! which 3xx Contacts to follow (q order, duplicates and tried targets dropped, the reach,
//! `max_targets`), and which final response the caller gets when every target failed
//! (RFC 3261 §16.7 step 6).
//!
//! ```text
//!  owner (proxy core, user agent)            Engine
//!  start / on_provisional / on_final ──────▶ timers, pattern, redirects, best response
//!  on_failure / start_failed / cancel ─────▶   ─▶ Step::Start / Cancel / Abandon / Redirect
//!  handle_timeout(now) ◀── poll_timeout() ──   ─▶ Step::Decision (logs) / Done
//! ```
//!
//! Two owners drive it: the proxy core (`rollover-proxy`) forwards the caller's request to
//! each target; the user agent (`rollover-ua`) builds a fresh INVITE for each. Neither has
//! a second copy of the rules, so a call rolls over the same way through either.
//!
//! It is hand-written, small and dependency-light on purpose: getting a call answered is
//! the product, and this is where that happens. Every branch of it is exercised by the
//! owners' tests in virtual time.
//!
//! Sans-IO: it has no sockets, no transactions and no clock. Time is always an argument
//! (`now`); `clippy.toml` forbids reading it here.

mod best;
mod cidr;
mod decision;
pub mod engine;
mod policy;
mod reach;
mod resolve;
mod target;

pub use best::BestResponse;
pub use cidr::{Cidr, CidrError};
pub use decision::{fmt_duration, Decision, StartFailure, Why};
pub use engine::{BranchId, End, Engine, RedirectMode, Step};
pub use policy::{FailoverPolicy, PatternError, ResponsePattern};
pub use reach::{never_a_target, Reach, ReachError};
pub use resolve::{default_port, LiteralResolver, Resolved, Resolver};
pub use target::{Target, TargetError, TargetPlan, TargetProblem};
