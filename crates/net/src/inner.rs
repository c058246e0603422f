//! What every task of the transports shares: the [`Inner`] state, the [`Inbound`] events
//! handed to the driver, and the [`TlsNames`] table. Its own module so that the connection
//! code and the [`Transports`](crate::Transports) handle both depend on it, not on each
//! other.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rollover_sip::Limits;
use rollover_txn::{Peer, Transport, TransportError, TxnRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ratelog::Logs;
use crate::table::{Budgets, ConnTable};
use crate::tls::TlsContext;

/// What the transports hand to the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A message received. For UDP: one datagram; for TCP/TLS: one framed message.
    /// `bytes` is exactly the message bytes; `local` is the listener address it came in on.
    Message {
        /// Who sent it (for TCP/TLS, the connection's remote address: sending to it reuses
        /// the connection).
        source: Peer,
        /// The listener it came in on. For a connection we opened, the first listener of
        /// its transport, or the connection's own local address if there is none.
        local: SocketAddr,
        /// The message.
        bytes: Bytes,
    },
    /// A send for `txn` to `dest` failed: connection refused / reset / TLS failure / unreachable.
    SendFailed {
        /// Where the message was going.
        dest: Peer,
        /// The transaction that sent it, as given to [`Transports::send`].
        txn: Option<TxnRef>,
        /// Why it failed.
        error: TransportError,
    },
    /// Messages another worker received and let in (parsed, checked, admitted), in the
    /// order it received them: they are this worker's because their Call-IDs hash here.
    /// They go straight to the transaction layer. One event carries what the other worker
    /// let in for this one during one of its turns, so this one is woken once for them,
    /// not once each.
    Screened {
        /// Who sent each, and the message, its Via stamped.
        messages: Vec<(Peer, rollover_sip::Message)>,
    },
    /// A stream carried bytes that cannot be framed (the connection is closed); for logging.
    BadStream {
        /// The connection's remote end.
        source: Peer,
        /// What the framer found wrong.
        error: String,
    },
}

/// State shared by the handle and every task.
pub(crate) struct Inner {
    /// One queue per worker; a message goes to the worker its Call-ID hashes to, a send
    /// failure to the worker that sent.
    pub(crate) inbound: Vec<mpsc::Sender<Inbound>>,
    pub(crate) limits: Limits,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) unused_timeout: Duration,
    pub(crate) budgets: Budgets,
    pub(crate) logs: Logs,
    pub(crate) tls: Option<TlsContext>,
    /// Cancelled by [`Transports::shutdown`] or when the inbound receiver is dropped;
    /// every connection's token is a child of it.
    pub(crate) stop: CancellationToken,
    pub(crate) conns: ConnTable,
    pub(crate) shed: Option<crate::config::Shed>,
    pub(crate) locals: Vec<(Transport, SocketAddr)>,
    /// The SIP domain a TLS peer address was reached by (RFC 5922): verified against its
    /// certificate and sent as SNI. Addresses not here are verified as IP addresses.
    pub(crate) tls_names: TlsNames,
}

/// Host names for TLS peers, by address, shared with whoever resolves names (see
/// [`Transports::tls_names`]).
#[derive(Clone, Default)]
pub struct TlsNames(Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, String>>>);

impl TlsNames {
    /// Records that `addr` was reached by resolving `host`: a TLS connection to it then
    /// verifies `host` and sends it as SNI. The last name recorded for an address wins.
    pub fn insert(&self, addr: SocketAddr, host: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(addr, host.to_owned());
        }
    }

    /// The name recorded for `addr`.
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<String> {
        self.0.lock().ok()?.get(&addr).cloned()
    }
}

impl fmt::Debug for TlsNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsNames(..)")
    }
}

impl Inner {
    /// First listener of a transport.
    pub(crate) fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.locals
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// Queues an event for `worker` without waiting; if it is behind, a task waits for room.
    pub(crate) fn report(&self, worker: usize, event: Inbound) {
        let Some(inbound) = self.inbound.get(worker).or(self.inbound.first()) else {
            return;
        };
        match inbound.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let inbound = inbound.clone();
                let stop = self.stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = inbound.send(event) => {}
                    }
                });
            }
        }
    }

    /// Queues an event for `worker` if there is room; gives it back when the queue is full.
    pub(crate) fn offer(&self, worker: usize, event: Inbound) -> Option<Inbound> {
        let inbound = self.inbound.get(worker)?;
        match inbound.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
            Err(mpsc::error::TrySendError::Full(event)) => Some(event),
        }
    }

    /// Hands an event to `worker`, waiting for room (back-pressure onto the socket). False
    /// when `cancel` fired or the driver is gone: the caller stops.
    pub(crate) async fn deliver(
        &self,
        worker: usize,
        event: Inbound,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(inbound) = self.inbound.get(worker) else {
            return false;
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => false,
            r = inbound.send(event) => r.is_ok(),
        }
    }
}

/// The worker that owns a call: the hash of its Call-ID, so every message of a call
/// (requests, responses, retransmissions, CANCEL, ACK) is handled by one worker, in order.
pub fn worker_for(call_id: &str, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // FNV-1a: stable across runs and threads, and cheap on a 30-byte value.
    let h = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (h % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_spread_evenly_over_workers() {
        let mut per_worker = [0usize; 4];
        for id in 0..4000 {
            let w = worker_for(&format!("{id}-3517@127.0.0.1"), 4);
            if let Some(n) = per_worker.get_mut(w) {
                *n += 1;
            }
        }
        // Every worker gets between 20 % and 30 % of the calls.
        assert!(
            per_worker.iter().all(|&n| (800..1200).contains(&n)),
            "{per_worker:?}"
        );
        assert_eq!(worker_for("x", 1), 0);
        assert_eq!(worker_for("abc@h", 4), worker_for("abc@h", 4));
    }
}
