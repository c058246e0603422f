//! Counters of what the proxy did, for operators and a metrics exporter: read with
//! [`crate::Proxy::stats`], never reset.

use std::collections::BTreeMap;
use std::fmt;

use rollover_failover::Decision;
use rollover_sip::StatusCode;

/// What the proxy has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Requests the dial plan routed.
    pub routed: u64,
    /// Requests relayed along a route set (in-dialog, or a trusted source's preloaded one).
    pub relayed: u64,
    /// Branches started (targets tried).
    pub branches: u64,
    /// Calls answered.
    pub answered: u64,
    /// Final responses sent upstream when no target answered, by status.
    pub finals: BTreeMap<StatusCode, u64>,
    /// Targets left behind, by reason (`no_response`, `ring_timeout`, `status`, …).
    pub rollovers: BTreeMap<&'static str, u64>,
    /// Requests refused before routing, by status.
    pub refusals: BTreeMap<StatusCode, u64>,
    /// Requests turned away at the front door, by reason (`not_allowed`, `flood`,
    /// `overload`, `draining`).
    pub front_door: BTreeMap<&'static str, u64>,
    /// Messages the proxy meant to send that its transaction layer refused (the
    /// transaction had ended), by kind (`response`, `cancel`, `bye`).
    pub unsent: BTreeMap<&'static str, u64>,
    /// Requests the routing policy dropped without a reply (a script's `req:drop()`).
    pub dropped: u64,
}

impl ProxyStats {
    /// Counts one decision.
    pub(crate) fn note(&mut self, d: &Decision) {
        match d {
            Decision::Routed { .. } => self.routed += 1,
            Decision::Relayed { .. } => self.relayed += 1,
            Decision::Trying { .. } => self.branches += 1,
            Decision::Answered { .. } => self.answered += 1,
            Decision::Final { status } => *self.finals.entry(*status).or_default() += 1,
            Decision::RolledOver { why, .. } => *self.rollovers.entry(why.kind()).or_default() += 1,
            Decision::Rejected { status, .. } => *self.refusals.entry(*status).or_default() += 1,
            Decision::Dropped { .. } => self.dropped += 1,
            _ => {}
        }
    }

    /// Counts a message the transaction layer would not send.
    pub(crate) fn unsent(&mut self, what: &'static str) {
        *self.unsent.entry(what).or_default() += 1;
    }

    /// Counts one request turned away at the front door.
    pub(crate) fn turned_away(&mut self, why: &'static str) {
        *self.front_door.entry(why).or_default() += 1;
    }
}

fn map<K: fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", items.join(" "))
}

impl fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "routed={} relayed={} branches={} answered={} finals={} rollovers={} refusals={} front_door={} unsent={} dropped={}",
            self.routed,
            self.relayed,
            self.branches,
            self.answered,
            map(&self.finals),
            map(&self.rollovers),
            map(&self.refusals),
            map(&self.front_door),
            map(&self.unsent),
            self.dropped
        )
    }
}
