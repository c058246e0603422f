//! # rollover-testkit
//!
//! One deterministic test network for Rollover, in virtual time:
//!
//! ```text
//!   callers (UACs) ──link──▶ FrontDoor ─▶ TxnLayer ⇄ Proxy ──link──▶ scripted targets (UASes)
//!                  ◀─────────────────────────────────────────────────
//! ```
//!
//! - [`World`] says how each target behaves (answer, ring, busy, silent, redirect,
//!   unreachable…) and [`Targets`] plays it. Neither needs the proxy: any element that
//!   sends requests through a `TxnLayer` can be tested against them (with
//!   `default-features = false`).
//! - [`Link`] gives each link a latency and a datagram loss rate, drawn from a seeded
//!   generator: the same seed, the same run.
//! - With the `proxy` feature (on by default), [`Net`] puts a real proxy core between
//!   scripted callers and the targets; messages enter it through the live server's front
//!   door. [`Net::step`] delivers the next message or fires the next deadline;
//!   [`Net::drive`] runs until quiet or a time limit. [`run`] and [`run_from`] are what
//!   `rollover simulate` and `rollover route` print.

mod link;
#[cfg(feature = "proxy")]
mod net;
mod targets;
mod world;

pub use link::{Link, Rng};
#[cfg(feature = "proxy")]
pub use net::{
    addr, invite_to, run, run_from, udp, Line, Net, Outcome, SimResolver, CALLER, PROXY,
};
pub use targets::{reason, Reception, Reply, Targets};
pub use world::{Behaviour, Step, World, WorldError};
