//! # rollover-ua
//!
//! Rollover's user agent: an application places a call with a primary target and
//! alternates (PJSUA-LIB's "multiple call targeting"), and decides on 3xx redirects target
//! by target: accept, accept and replace the To header, reject, stop, or decide later.
//!
//! ```text
//!  application ──start(opts, redirects)──▶ OutgoingCall ──steps──▶ TxnLayer (INVITE, CANCEL, ACK)
//!       ▲                                      │  the proxy's failover Engine: which target,
//!       └──── CallEvent (trying, ringing, ◀────┘  when to leave it, best response
//!             redirected, rolled over, answered, ended)
//! ```
//!
//! The target logic is the failover engine the proxy uses too (`rollover_failover::Engine`),
//! not a second implementation: the same timers, response patterns, redirect rules, serial
//! and parallel groups. Every INVITE of a call shares the Call-ID and From tag; each new one
//! has a new branch, a CSeq one higher and a To without tag.
//!
//! Sans-IO like the proxy: time is an argument. [`OutgoingCall`] is one call (the client
//! side); [`UaCore`] holds every call of an endpoint, outgoing and incoming (the server
//! side: the 2xx retransmitted at T1…T2 until the ACK, BYE, CANCEL), finds them by key, and
//! takes its timers from [`UaConfig`]. The tests drive both in virtual time against
//! scripted targets. The async [`Endpoint`] is a thin tokio driver around [`UaCore`], and
//! `rollover call` is built on it.

mod call;
mod core;
mod digest;
mod endpoint;

pub use crate::core::{Answer, CallRef, IncomingEnd, UaConfig, UaCore, UaEvent, UaStats};
pub use call::{
    Attempt, CallEvent, CallOptions, CallOutcome, OutgoingCall, RedirectDecision, RedirectHandler,
    Redirects, SdpAnswerer, TIMER_C,
};
pub use digest::{authorization, Credentials};
pub use endpoint::{CallHandle, Endpoint, IncomingCall, SystemResolver};
pub use rollover_failover::{FailoverPolicy, LiteralResolver, Resolver, Target, TargetPlan, Why};

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod tests;
