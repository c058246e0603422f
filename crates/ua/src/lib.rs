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
//! The target logic is the proxy's failover engine (`rollover_proxy::engine`), not a second
//! implementation: the same timers, response patterns, redirect rules, serial and parallel
//! groups. Every INVITE of a call shares the Call-ID and From tag; each new one has a new
//! branch, a CSeq one higher and a To without tag.
//!
//! Sans-IO like the proxy: time is an argument; `rollover_proxy::sim::Targets` drives it
//! against scripted targets in the tests. The async endpoint and `rollover call` are built
//! on top of this.

mod call;
mod digest;
mod endpoint;

pub use call::{
    Attempt, CallEvent, CallOptions, CallOutcome, OutgoingCall, RedirectDecision, RedirectHandler,
    Redirects, SdpAnswerer,
};
pub use digest::{authorization, Credentials};
pub use endpoint::{Answer, CallHandle, Endpoint, IncomingCall, SystemResolver};

#[cfg(test)]
mod tests;
