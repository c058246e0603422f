//! # rollover-txn
//!
//! RFC 3261 §17 transactions as sans-IO state machines: the INVITE and non-INVITE client
//! and server transactions (with RFC 6026's Accepted state), and the table that matches
//! incoming messages to them (§17.1.3, §17.2.3 with the RFC 2543 fallback, §9.2 for CANCEL).
//!
//! ```text
//!  driver (rollover-net)                    TxnLayer
//!  ─────────────────────                    ───────────────────────────────────────
//!  datagram ─ parse ─▶ handle_message(now) ─▶ match ─▶ machine ─▶ Transmit queue ─▶ poll_transmit
//!  sleep done ───────▶ handle_timeout(now) ─▶ timers ─┘         └▶ Event queue ───▶ poll_event
//!  TU commands ──────▶ send_request / send_response / cancel / abandon
//!                      poll_timeout() ◀── earliest live deadline (timer wheel, lazy invalidation)
//! ```
//!
//! No IO, no clock, no tasks: time is always an argument, so every timer and race is
//! tested deterministically in virtual time. Transport failures are their own event,
//! distinct from Timer B/F, so a proxy can roll over at once (§8.1.3.1 treats them as 503).

pub(crate) mod client;
mod config;
mod front;
pub(crate) mod key;
mod keys;
mod layer;
pub mod queue;
pub(crate) mod server;
pub(crate) mod site;
pub(crate) mod timer;
mod transport;
mod txn_map;
pub mod wheel;

pub use client::{InviteClientState, NonInviteClientState};
pub use config::Config;
pub use front::{shed, stamp_via, FrontDoor, FrontStats};
pub use layer::{ClientTxn, Event, ServerTxn, Transmit, TxnError, TxnLayer, TxnRef, TxnStats};
pub use server::{InviteServerState, NonInviteServerState, SendError};
pub use site::Site;
pub use timer::Slot;
pub use transport::{Peer, Transport, TransportError};
pub use txn_map::{TxnKey, TxnMap};
pub use wheel::TimerWheel;

#[cfg(test)]
mod tests;

/// The layer above the transactions (a proxy core, a user agent), as a driver sees it.
///
/// A driver feeds it every [`Event`], fires its timers, and after each call drains the
/// [`TxnLayer`] again (the user issues its commands straight into the layer).
pub trait TransactionUser {
    /// One event from the transaction layer.
    fn handle_txn_event(&mut self, now: std::time::Instant, ev: Event, txn: &mut TxnLayer);
    /// Fires the user's timers due at `now`.
    fn handle_timeout(&mut self, now: std::time::Instant, txn: &mut TxnLayer);
    /// The user's next deadline.
    fn poll_timeout(&mut self) -> Option<std::time::Instant>;
    /// Asked for every well-formed message before the transaction layer sees it: the front
    /// door where floods, strangers and overload are turned away before they cost a
    /// transaction. `backlog` is how many received messages wait behind this one.
    /// The default admits everything.
    fn admit(
        &mut self,
        now: std::time::Instant,
        source: &Peer,
        msg: &rollover_sip::Message,
        backlog: usize,
    ) -> Admit {
        let _ = (now, source, msg, backlog);
        Admit::Accept
    }
    /// Whether every request from `source` is dropped unread for now (a flooding source):
    /// asked before parsing, for datagrams that are not responses. The default blocks none.
    fn is_blocked(&mut self, now: std::time::Instant, source: &Peer) -> bool {
        let _ = (now, source);
        false
    }
}

/// The verdict of [`TransactionUser::admit`].
///
/// (Before even parsing, a driver may ask [`TransactionUser::is_blocked`]: a request from
/// a source the user has blocked is dropped unread, so a flood costs no parse.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Hand the message to the transaction layer.
    Accept,
    /// Drop it silently.
    Drop,
    /// Answer it statelessly with these bytes (sent to the source) and forget it.
    Reply(bytes::Bytes),
}
