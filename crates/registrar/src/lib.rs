//! # rollover-registrar
//!
//! The registrar of RFC 3261 §10.3 and the location service behind `location:` targets.
//!
//! ```text
//!   REGISTER ─▶ Location::handle_register(now, req, source) ─▶ rules::register (pure)
//!                                 │                                  │ new binding set
//!                                 └──────── Store::save (durable) ◀──┘ ─▶ 200 with every binding
//!   INVITE to an AOR ─▶ Location::targets(aor, now) ─▶ cache (or Store::load once)
//!                     ─▶ q-groups, highest first, each forked in parallel
//! ```
//!
//! What it guarantees:
//! - the binding rules are a pure function of (bindings, request, time): no IO, no clock;
//!   a refused REGISTER changes nothing;
//! - a 200 is built only after the store committed the new bindings;
//! - expired bindings are never returned as targets, whether purged yet or not.
//!
//! Time is seconds since the Unix epoch, given by the caller: registrations outlive the
//! process, so they are kept in wall-clock time.

pub mod auth;
mod binding;
mod location;
mod redis_store;
pub mod rules;
mod store;

pub use binding::{aor_domain, aor_key, aor_of_sip, Binding, QValue};
pub use location::{q_groups, Location};
pub use redis_store::{RedisStore, CHANGES_CHANNEL};
pub use rules::{Refusal, Rules};
pub use store::{SqliteStore, Store, StoreError, SQLITE_FILE};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_stores;
