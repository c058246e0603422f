//! The table of open TCP/TLS connections, keyed by remote transport and address, with the
//! budgets that bound it: incoming and outgoing connections are counted apart, and incoming
//! ones per source (an IPv4 address or an IPv6 /64), so a flood of strangers neither reaches a configured target's
//! budget nor lets one host take every incoming slot.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use rollover_txn::{Peer, Site, TxnRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages queued for one connection's writer; beyond it the connection is dropped.
pub(crate) const WRITE_QUEUE: usize = 256;

/// One message waiting for a connection's writer.
pub(crate) struct Outgoing {
    pub(crate) bytes: Bytes,
    pub(crate) txn: Option<TxnRef>,
    /// The worker that sent it: a failure is reported to it, whose `txn` it is.
    pub(crate) worker: usize,
    /// A pong: its loss is nobody's send failure.
    pub(crate) keepalive: bool,
    /// The last thing sent: the connection is closed once it is written (the answer to a
    /// message that broke the stream's framing).
    pub(crate) last: bool,
}

/// Which side opened a connection: each side has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Accepted from a peer.
    Incoming,
    /// Opened by us.
    Outgoing,
}

/// How many connections the table admits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    pub(crate) incoming: usize,
    pub(crate) outgoing: usize,
    pub(crate) per_ip: usize,
}

/// Why an accepted connection is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source (IPv4 address, IPv6 /64) holds `per_ip` incoming connections already.
    PerIp,
    /// `incoming` connections are open already.
    Incoming,
}

/// A table entry: how to reach one connection's tasks.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) dir: Direction,
    pub(crate) queue: mpsc::Sender<Outgoing>,
    pub(crate) close: CancellationToken,
}

/// The entries and their counts; every change goes through `insert` and `remove` so the
/// counts always match the entries.
#[derive(Default)]
pub(crate) struct Table {
    map: HashMap<Peer, Conn>,
    incoming: usize,
    outgoing: usize,
    /// Incoming entries per remote site (IPv4 address, IPv6 /64: one host may use any
    /// address of its /64); a site with none has no key.
    per_ip: HashMap<Site, usize>,
}

impl Table {
    pub(crate) fn get(&self, peer: &Peer) -> Option<&Conn> {
        self.map.get(peer)
    }

    /// Outgoing entries (connections open or being set up).
    pub(crate) fn outgoing(&self) -> usize {
        self.outgoing
    }

    /// Adds an entry; returns the one it replaces.
    pub(crate) fn insert(&mut self, peer: Peer, conn: Conn) -> Option<Conn> {
        self.count(peer, conn.dir, true);
        let old = self.map.insert(peer, conn);
        if let Some(old) = &old {
            self.count(peer, old.dir, false);
        }
        old
    }

    pub(crate) fn remove(&mut self, peer: &Peer) -> Option<Conn> {
        let old = self.map.remove(peer)?;
        self.count(*peer, old.dir, false);
        Some(old)
    }

    fn incoming_from(&self, site: Site) -> usize {
        self.per_ip.get(&site).copied().unwrap_or(0)
    }

    fn count(&mut self, peer: Peer, dir: Direction, up: bool) {
        let step = |n: &mut usize| {
            *n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        match dir {
            Direction::Outgoing => step(&mut self.outgoing),
            Direction::Incoming => {
                step(&mut self.incoming);
                match self.per_ip.entry(Site::of(peer.addr.ip())) {
                    Entry::Occupied(mut e) => {
                        step(e.get_mut());
                        if *e.get() == 0 {
                            e.remove();
                        }
                    }
                    Entry::Vacant(e) => {
                        if up {
                            e.insert(1);
                        }
                    }
                }
            }
        }
    }
}

/// Open (or opening) connections, incoming and outgoing.
#[derive(Default)]
pub(crate) struct ConnTable {
    table: Mutex<Table>,
    next_id: AtomicU64,
}

impl ConnTable {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open or being set up.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Forgets every connection (their tasks stop with the global token).
    pub(crate) fn clear(&self) {
        *self.lock() = Table::default();
    }

    /// A new entry (not yet in the table) and the receiving end of its write queue.
    pub(crate) fn entry(
        &self,
        dir: Direction,
        stop: &CancellationToken,
    ) -> (Conn, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            dir,
            queue,
            close: stop.child_token(),
        };
        (conn, rx)
    }

    /// Registers an accepted connection, within the incoming budgets.
    pub(crate) fn register(
        &self,
        peer: Peer,
        budgets: Budgets,
        stop: &CancellationToken,
    ) -> Result<(Conn, mpsc::Receiver<Outgoing>), Refused> {
        let mut table = self.lock();
        // An entry for the same remote address is replaced below: it frees its slot.
        let replaced = table
            .get(&peer)
            .is_some_and(|c| c.dir == Direction::Incoming);
        let freed = usize::from(replaced);
        if table
            .incoming_from(Site::of(peer.addr.ip()))
            .saturating_sub(freed)
            >= budgets.per_ip
        {
            return Err(Refused::PerIp);
        }
        if table.incoming.saturating_sub(freed) >= budgets.incoming {
            return Err(Refused::Incoming);
        }
        let (conn, rx) = self.entry(Direction::Incoming, stop);
        if let Some(old) = table.insert(peer, conn.clone()) {
            old.close.cancel(); // same remote address: the old one is stale
        }
        Ok((conn, rx))
    }

    /// Removes `peer`'s entry if it is still connection `id`.
    pub(crate) fn remove(&self, peer: Peer, id: u64) {
        let mut table = self.lock();
        if table.get(&peer).is_some_and(|c| c.id == id) {
            table.remove(&peer);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rollover_txn::Transport;

    fn peer(s: &str) -> Peer {
        Peer {
            transport: Transport::Tcp,
            addr: s.parse().unwrap(),
        }
    }

    const BUDGETS: Budgets = Budgets {
        incoming: 3,
        outgoing: 1,
        per_ip: 2,
    };

    #[test]
    fn counts_follow_entries_and_limits_hold() {
        let t = ConnTable::default();
        let stop = CancellationToken::new();
        let a1 = peer("10.0.0.1:1000");
        let (c1, _r1) = t.register(a1, BUDGETS, &stop).unwrap();
        let (_c2, _r2) = t.register(peer("10.0.0.1:1001"), BUDGETS, &stop).unwrap();
        assert_eq!(
            t.register(peer("10.0.0.1:1002"), BUDGETS, &stop).err(),
            Some(Refused::PerIp)
        );
        let (_c3, _r3) = t.register(peer("10.0.0.2:1000"), BUDGETS, &stop).unwrap();
        assert_eq!(
            t.register(peer("10.0.0.3:1000"), BUDGETS, &stop).err(),
            Some(Refused::Incoming)
        );

        // The same remote address again replaces its entry: no new slot needed.
        let (c1b, _r1b) = t.register(a1, BUDGETS, &stop).unwrap();
        assert!(c1.close.is_cancelled());
        t.remove(a1, c1.id); // the stale one's cleanup leaves the new entry alone
        assert_eq!(t.len(), 3);

        // Freed slots are given back, per IP and overall; outgoing ones are apart.
        t.remove(a1, c1b.id);
        assert_eq!(t.lock().incoming_from(Site::of(a1.addr.ip())), 1);
        let (conn, _rx) = t.entry(Direction::Outgoing, &stop);
        assert!(t.lock().insert(peer("10.0.0.9:5060"), conn).is_none());
        assert_eq!(t.lock().outgoing(), 1);
        let (_c4, _r4) = t.register(peer("10.0.0.1:1003"), BUDGETS, &stop).unwrap();
        t.clear();
        assert_eq!((t.len(), t.lock().outgoing()), (0, 0));
        assert!(t.lock().per_ip.is_empty());
    }

    #[test]
    fn ipv6_connections_count_per_64() {
        let t = ConnTable::default();
        let stop = CancellationToken::new();
        let _a = t
            .register(peer("[2001:db8:0:66::1]:1000"), BUDGETS, &stop)
            .unwrap();
        let _b = t
            .register(peer("[2001:db8:0:66::2]:1000"), BUDGETS, &stop)
            .unwrap();
        // A third address of the same /64 is the same source; the next /64 is another.
        assert_eq!(
            t.register(peer("[2001:db8:0:66:abcd::3]:1000"), BUDGETS, &stop)
                .err(),
            Some(Refused::PerIp)
        );
        let (c, _r) = t
            .register(peer("[2001:db8:0:67::1]:1000"), BUDGETS, &stop)
            .unwrap();
        t.remove(peer("[2001:db8:0:67::1]:1000"), c.id);
        assert_eq!(t.lock().per_ip.len(), 1);
    }
}
