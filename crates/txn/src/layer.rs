//! The transaction layer: a table of transactions, their timers, and the queues a driver
//! polls.
//!
//! Polling order for a driver, after any `handle_*` or command:
//! 1. `poll_transmit()` until `None` — send each on the wire;
//! 2. `poll_event()` until `None` — hand each to the transaction user;
//! 3. `poll_timeout()` — sleep until then (or until the next datagram), then call
//!    `handle_timeout(now)`.

use std::collections::VecDeque;

use std::time::Instant;

use bytes::Bytes;
use rollover_sip::{Message, Method};
use tracing::debug;

use crate::client::{Action, InviteClient, NonInviteClient};
use crate::config::Config;
use crate::key::{client_key, client_key_of, server_key};
use crate::keys::KeyTable;
use crate::server::{InviteServer, NonInviteServer, SendError};
use crate::timer::{Slot, Timers};
use crate::transport::{Peer, TransportError};
use crate::wheel::TimerWheel;

/// A slab index with a generation, so a stale handle never reaches a reused slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Id {
    index: u32,
    gen: u32,
}

/// Handle of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxn(Id);

/// Handle of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxn(Id);

impl ClientTxn {
    pub(crate) fn slot_gen_raw(self) -> (u32, u32) {
        (self.0.index, self.0.gen)
    }
}

impl ServerTxn {
    pub(crate) fn slot_gen_raw(self) -> (u32, u32) {
        (self.0.index, self.0.gen)
    }
}

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnRef {
    /// A client transaction.
    Client(ClientTxn),
    /// A server transaction.
    Server(ServerTxn),
}

/// Bytes to put on the wire.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where to.
    pub dest: Peer,
    /// What.
    pub bytes: Bytes,
    /// The transaction that sent it (report a send failure against it), if any.
    pub txn: Option<TxnRef>,
}

/// What the transaction layer tells its user.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new request (not a retransmission). For a CANCEL, `cancels` is the INVITE server
    /// transaction it matches (§9.2), if any.
    Request {
        /// Its server transaction.
        txn: ServerTxn,
        /// The request.
        request: Message,
        /// Where it came from.
        source: Peer,
        /// For CANCEL: the INVITE transaction it targets.
        cancels: Option<ServerTxn>,
    },
    /// An ACK that belongs to no transaction here (the ACK for a 2xx, forwarded end to end).
    Ack {
        /// The ACK.
        request: Message,
        /// Where it came from.
        source: Peer,
    },
    /// A response for a client transaction (every 1xx and 2xx, the first other final).
    Response {
        /// The client transaction.
        txn: ClientTxn,
        /// The response.
        response: Message,
    },
    /// A response that matches no client transaction (§17.1.3); it is dropped unless the
    /// user forwards it.
    StrayResponse {
        /// The response.
        response: Message,
        /// Where it came from.
        source: Peer,
    },
    /// Timer B or F fired (client), or Timer H (server: the ACK never came).
    Timeout(TxnRef),
    /// The transport failed for this transaction (treated like a 503, §8.1.3.1).
    TransportError(TxnRef, TransportError),
    /// The transaction ended and its handle is no longer valid.
    Terminated(TxnRef),
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The request has no Via with a branch, or no CSeq.
    #[error("request lacks a top Via branch or CSeq")]
    Unkeyed,
    /// A client transaction with this branch and method exists already.
    #[error("a transaction with this branch exists")]
    Duplicate,
    /// The handle is stale.
    #[error("no such transaction")]
    NoTransaction,
    /// CANCEL only applies to INVITE client transactions.
    #[error("not an INVITE client transaction")]
    NotInvite,
    /// Sending a response failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

#[derive(Debug)]
enum Machine {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

#[derive(Debug)]
struct Entry {
    gen: u32,
    peer: Peer,
    /// The matching key, and its hash in the table ([`KeyTable`]).
    key: Box<str>,
    hash: u64,
    machine: Machine,
}

impl Entry {
    fn timers(&mut self) -> &mut Timers {
        match &mut self.machine {
            Machine::InviteClient(m) => &mut m.timers,
            Machine::NonInviteClient(m) => &mut m.timers,
            Machine::InviteServer(m) => &mut m.timers,
            Machine::NonInviteServer(m) => &mut m.timers,
        }
    }

    fn is_terminated(&self) -> bool {
        match &self.machine {
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }

    fn is_client(&self) -> bool {
        matches!(
            self.machine,
            Machine::InviteClient(_) | Machine::NonInviteClient(_)
        )
    }
}

/// What the transaction layer has done since it started, for operators and a metrics
/// exporter: read with [`TxnLayer::stats`], never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxnStats {
    /// Server transactions created (new requests, ACK excluded).
    pub server_started: u64,
    /// Client transactions created (requests sent).
    pub client_started: u64,
    /// Retransmitted requests absorbed by their server transaction.
    pub absorbed: u64,
    /// Messages sent again by a timer (Timers A, E and G).
    pub retransmitted: u64,
    /// Client transactions that timed out (Timers B and F).
    pub timeouts: u64,
    /// Transactions that saw a transport error.
    pub transport_errors: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// Responses sent statelessly (a refused request, no transaction kept).
    pub stateless_replies: u64,
    /// The front door's counters.
    pub front: crate::FrontStats,
}

impl std::fmt::Display for TxnStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} server_started={} client_started={} absorbed={} retransmitted={} timeouts={} transport_errors={} stray_responses={} stateless_replies={}",
            self.front,
            self.server_started,
            self.client_started,
            self.absorbed,
            self.retransmitted,
            self.timeouts,
            self.transport_errors,
            self.stray_responses,
            self.stateless_replies
        )
    }
}

/// The transaction layer. See the module docs for the polling order.
#[derive(Debug)]
pub struct TxnLayer {
    cfg: Config,
    /// Boxed so the slab's spare capacity costs a pointer per slot, not a whole entry.
    slots: Vec<Option<Box<Entry>>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    /// Slots of transactions whose `Terminated` event the user has not polled yet: reused
    /// only once it has, so a user's state kept by slot ([`crate::TxnMap`]) is always
    /// dropped by that event before a new transaction can take the slot.
    free_later: Vec<u32>,
    /// Both kinds of key live in one map: their first letter keeps them apart.
    table: KeyTable<Id>,
    key_buf: String,
    timers: TimerWheel<(Id, Slot)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    scratch: Vec<Action>,
    stats: TxnStats,
}

impl TxnLayer {
    /// An empty layer.
    pub fn new(cfg: Config) -> TxnLayer {
        TxnLayer {
            cfg,
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            free_later: Vec::new(),
            table: KeyTable::new(),
            key_buf: String::with_capacity(128),
            timers: TimerWheel::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::with_capacity(4),
            stats: TxnStats::default(),
        }
    }

    /// What the layer (and its front door) has done since it started.
    pub fn stats(&self) -> &TxnStats {
        &self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut TxnStats {
        &mut self.stats
    }

    /// The timer configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&mut self, entry: Entry) -> Id {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let gen = self.gens.get(index as usize).copied().unwrap_or(0);
        if let Some(slot) = self.slots.get_mut(index as usize) {
            *slot = Some(Box::new(Entry { gen, ..entry }));
        }
        Id { index, gen }
    }

    /// The transaction whose matching key is `key`.
    fn lookup(&self, key: &str) -> Option<Id> {
        self.find(self.table.hash(key), key)
    }

    /// [`TxnLayer::lookup`] with the key's hash already made.
    fn find(&self, hash: u64, key: &str) -> Option<Id> {
        let slots = &self.slots;
        self.table.find(hash, |id| {
            slots
                .get(id.index as usize)
                .and_then(Option::as_deref)
                .is_some_and(|e| e.gen == id.gen && *e.key == *key)
        })
    }

    fn get_mut(&mut self, id: Id) -> Option<&mut Entry> {
        self.slots
            .get_mut(id.index as usize)?
            .as_deref_mut()
            .filter(|e| e.gen == id.gen)
    }

    fn remove(&mut self, id: Id) {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return;
        };
        if slot.as_ref().is_none_or(|e| e.gen != id.gen) {
            return;
        }
        if let Some(entry) = slot.take() {
            let client = entry.is_client();
            self.table.remove(entry.hash, id);
            if let Some(g) = self.gens.get_mut(id.index as usize) {
                *g = g.wrapping_add(1);
            }
            self.free_later.push(id.index);
            let r = if client {
                TxnRef::Client(ClientTxn(id))
            } else {
                TxnRef::Server(ServerTxn(id))
            };
            self.events.push_back(Event::Terminated(r));
        }
    }

    /// Gives memory back after a peak of load: a table or queue holding a quarter of its
    /// capacity is shrunk to twice what it holds.
    fn shrink_after_peak(&mut self) {
        let n = self.table.len();
        if self.table.capacity() > 4096 && n < self.table.capacity() / 4 {
            self.table.shrink_to(n * 2);
        }
        // The timer wheel gives a slot's memory back as the slot empties.
        // The slab keeps its length: a slot's generation must outlive every handle to it.
    }

    /// Deadlines queued, live or stale (for tests of the compaction).
    #[doc(hidden)]
    pub fn heap_len(&self) -> usize {
        self.timers.len()
    }

    /// Drops stale deadlines (a Timer B cleared by a response, a timer reset) once they
    /// outnumber four per live transaction: otherwise each stays until it is due.
    fn compact_heap(&mut self) {
        if self.timers.len() <= 4 * self.table.len() + 1024 {
            return;
        }
        let slots = &self.slots;
        self.timers
            .retain(|at, &(id, slot)| is_live(slots, at, id, slot));
    }

    /// Applies the actions a machine produced, schedules its timers, reaps it when done.
    fn settle(&mut self, id: Id) {
        let mut actions = std::mem::take(&mut self.scratch);
        let Some(entry) = self
            .slots
            .get_mut(id.index as usize)
            .and_then(Option::as_deref_mut)
            .filter(|e| e.gen == id.gen)
        else {
            actions.clear();
            self.scratch = actions;
            return;
        };
        let peer = entry.peer;
        let r = if entry.is_client() {
            TxnRef::Client(ClientTxn(id))
        } else {
            TxnRef::Server(ServerTxn(id))
        };
        for (slot, at) in entry.timers().take_dirty() {
            self.timers.insert(at, (id, slot));
        }
        let done = entry.is_terminated();
        self.compact_heap();
        for a in actions.drain(..) {
            match a {
                Action::Send(bytes) => self.transmits.push_back(Transmit {
                    dest: peer,
                    bytes,
                    txn: Some(r),
                }),
                Action::PassUp(response) => {
                    if let TxnRef::Client(txn) = r {
                        self.events.push_back(Event::Response { txn, response });
                    }
                }
                Action::Timeout => {
                    self.stats.timeouts += u64::from(matches!(r, TxnRef::Client(_)));
                    self.events.push_back(Event::Timeout(r))
                }
                Action::TransportError(e) => {
                    self.stats.transport_errors += 1;
                    self.events.push_back(Event::TransportError(r, e))
                }
            }
        }
        self.scratch = actions;
        if done {
            self.remove(id);
        }
    }

    /// Feeds a message received from `source`. The caller has parsed it; a request that
    /// fails `validate()` should be answered 400 statelessly before reaching here.
    pub fn handle_message(&mut self, now: Instant, source: Peer, msg: Message) {
        if msg.is_request() {
            self.handle_request(now, source, msg);
        } else {
            self.handle_response(now, source, msg);
        }
    }

    fn handle_request(&mut self, now: Instant, source: Peer, msg: Message) {
        let mut key = std::mem::take(&mut self.key_buf);
        let found = server_key(&msg, None, &mut key).map(|()| {
            let hash = self.table.hash(&key);
            (hash, self.find(hash, &key))
        });
        self.key_buf = key;
        let Some((hash, found)) = found else {
            debug!(%source, "request without usable Via/CSeq dropped by the transaction layer");
            return;
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        if let Some(id) = found {
            let cfg = self.cfg;
            let mut out = std::mem::take(&mut self.scratch);
            let mut pass_ack = false;
            if let Some(entry) = self.get_mut(id) {
                match &mut entry.machine {
                    Machine::InviteServer(m) if is_ack => pass_ack = !m.on_ack(now, &cfg),
                    Machine::InviteServer(m) => m.on_retransmission(&mut out),
                    Machine::NonInviteServer(m) if !is_ack => m.on_retransmission(&mut out),
                    _ => {}
                }
            }
            self.stats.absorbed += u64::from(!is_ack);
            self.scratch = out;
            self.settle(id);
            if pass_ack {
                self.events.push_back(Event::Ack {
                    request: msg,
                    source,
                });
            }
            return;
        }
        if is_ack {
            self.events.push_back(Event::Ack {
                request: msg,
                source,
            });
            return;
        }
        let reliable = source.transport.is_reliable();
        let is_invite = msg.method() == Some(&Method::Invite);
        let key: Box<str> = Box::from(self.key_buf.as_str());
        let cancels = if msg.method() == Some(&Method::Cancel) {
            let mut buf = std::mem::take(&mut self.key_buf);
            let found = server_key(&msg, Some(&Method::Invite), &mut buf)
                .and_then(|()| self.lookup(&buf))
                .map(ServerTxn);
            self.key_buf = buf;
            found
        } else {
            None
        };
        let machine = if is_invite {
            Machine::InviteServer(InviteServer::start(now, &self.cfg, msg.clone(), reliable))
        } else {
            Machine::NonInviteServer(NonInviteServer::start(reliable))
        };
        let id = self.insert(Entry {
            gen: 0,
            peer: source,
            key,
            hash,
            machine,
        });
        self.table.insert(hash, id);
        self.stats.server_started += 1;
        self.settle(id);
        self.events.push_back(Event::Request {
            txn: ServerTxn(id),
            request: msg,
            source,
            cancels,
        });
    }

    fn handle_response(&mut self, now: Instant, source: Peer, msg: Message) {
        let mut key = std::mem::take(&mut self.key_buf);
        let found = client_key(&msg, &mut key).and_then(|()| self.lookup(&key));
        self.key_buf = key;
        let Some(id) = found else {
            self.stats.stray_responses += 1;
            self.events.push_back(Event::StrayResponse {
                response: msg,
                source,
            });
            return;
        };
        let cfg = self.cfg;
        let provisional = msg.status().is_some_and(|c| c < 200);
        let mut out = std::mem::take(&mut self.scratch);
        let mut cancel_now = None;
        if let Some(entry) = self.get_mut(id) {
            match &mut entry.machine {
                Machine::InviteClient(m) => {
                    m.on_response(now, &cfg, msg, &mut out);
                    if provisional {
                        cancel_now = m.pending_cancel.take();
                    }
                }
                Machine::NonInviteClient(m) => m.on_response(now, &cfg, msg, &mut out),
                _ => {}
            }
        }
        self.scratch = out;
        self.settle(id);
        if let Some(reason) = cancel_now {
            // The CANCEL held back until a provisional (§9.1); the INVITE transaction is
            // alive, as it just took this response, so a failure here is a send error.
            if let Err(e) = self.send_cancel(now, ClientTxn(id), reason.as_deref()) {
                tracing::debug!("held-back CANCEL not sent: {e}");
            }
        }
    }

    /// Starts a client transaction for `request`, which carries our Via (with a unique
    /// magic-cookie branch) on top, and sends it to `dest`.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message,
        dest: Peer,
    ) -> Result<ClientTxn, TxnError> {
        let mut buf = std::mem::take(&mut self.key_buf);
        let keyed = client_key(&request, &mut buf);
        let key: Box<str> = Box::from(buf.as_str());
        self.key_buf = buf;
        keyed.ok_or(TxnError::Unkeyed)?;
        self.start_client(now, key, request, dest)
    }

    /// [`TxnLayer::send_request`] for a request whose top Via the caller has just written
    /// with `branch`: the key is made from it, without parsing that Via back out of the
    /// message (a proxy forwards one or two requests per call this way). The request's
    /// CSeq method must be its method, as every validated or built request's is.
    pub fn send_request_on_branch(
        &mut self,
        now: Instant,
        request: Message,
        dest: Peer,
        branch: &str,
    ) -> Result<ClientTxn, TxnError> {
        let method = request.method().ok_or(TxnError::Unkeyed)?;
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        client_key_of(branch, method, &mut key);
        debug_assert!(
            {
                let mut parsed = String::new();
                client_key(&request, &mut parsed).is_some() && parsed == key
            },
            "the branch given is not the request's top Via's"
        );
        // The transaction keeps the key at its length; the buffer is kept for the next one.
        let boxed = Box::from(key.as_str());
        self.key_buf = key;
        self.start_client(now, boxed, request, dest)
    }

    fn start_client(
        &mut self,
        now: Instant,
        key: Box<str>,
        request: Message,
        dest: Peer,
    ) -> Result<ClientTxn, TxnError> {
        let hash = self.table.hash(&key);
        if self.find(hash, &key).is_some() {
            return Err(TxnError::Duplicate);
        }
        let reliable = dest.transport.is_reliable();
        let mut out = std::mem::take(&mut self.scratch);
        let machine = if request.method() == Some(&Method::Invite) {
            Machine::InviteClient(InviteClient::start(
                now, &self.cfg, request, reliable, &mut out,
            ))
        } else {
            Machine::NonInviteClient(NonInviteClient::start(
                now,
                &self.cfg,
                request.as_bytes().clone(),
                reliable,
                &mut out,
            ))
        };
        self.scratch = out;
        let id = self.insert(Entry {
            gen: 0,
            peer: dest,
            key,
            hash,
            machine,
        });
        self.table.insert(hash, id);
        self.stats.client_started += 1;
        self.settle(id);
        Ok(ClientTxn(id))
    }

    /// Sends the TU's response through a server transaction.
    pub fn send_response(
        &mut self,
        now: Instant,
        txn: ServerTxn,
        response: Bytes,
    ) -> Result<(), TxnError> {
        let code = status_of(&response).ok_or(SendError::NotAResponse)?;
        let cfg = self.cfg;
        let mut out = std::mem::take(&mut self.scratch);
        let result = match self.get_mut(txn.0).map(|e| &mut e.machine) {
            Some(Machine::InviteServer(m)) => m.send(now, &cfg, code, response, &mut out),
            Some(Machine::NonInviteServer(m)) => m.send(now, &cfg, code, response, &mut out),
            _ => Err(SendError::NoTransaction),
        };
        self.scratch = out;
        self.settle(txn.0);
        result.map_err(TxnError::from)
    }

    /// Cancels an INVITE client transaction (§9.1). The CANCEL is sent at once when a
    /// provisional has arrived, else as soon as one does; returns its transaction if sent.
    /// A transaction that already has a final response is left alone.
    pub fn cancel(
        &mut self,
        now: Instant,
        txn: ClientTxn,
        reason: Option<&str>,
    ) -> Result<Option<ClientTxn>, TxnError> {
        let entry = self.get_mut(txn.0).ok_or(TxnError::NoTransaction)?;
        let Machine::InviteClient(m) = &mut entry.machine else {
            return Err(TxnError::NotInvite);
        };
        use crate::client::InviteClientState::*;
        match m.state {
            Calling if !m.provisional_seen => {
                // No CANCEL before a provisional (§9.1); stop retransmitting meanwhile.
                m.abandon();
                m.pending_cancel = Some(reason.map(Into::into));
                Ok(None)
            }
            Calling | Proceeding => self.send_cancel(now, txn, reason).map(Some),
            _ => Ok(None),
        }
    }

    fn send_cancel(
        &mut self,
        now: Instant,
        txn: ClientTxn,
        reason: Option<&str>,
    ) -> Result<ClientTxn, TxnError> {
        let entry = self.get_mut(txn.0).ok_or(TxnError::NoTransaction)?;
        let dest = entry.peer;
        let Machine::InviteClient(m) = &entry.machine else {
            return Err(TxnError::NotInvite);
        };
        if m.state != crate::client::InviteClientState::Proceeding {
            return Ok(txn);
        }
        let Some(request) = &m.request else {
            return Ok(txn);
        };
        let cancel = request.cancel(reason).map_err(|_| TxnError::Unkeyed)?;
        let cancel = Message::parse(cancel).map_err(|_| TxnError::Unkeyed)?;
        let cfg = self.cfg;
        if let Some(Entry {
            machine: Machine::InviteClient(m),
            ..
        }) = self.get_mut(txn.0)
        {
            m.cancelled(now, &cfg);
        }
        self.settle(txn.0);
        self.send_request(now, cancel, dest)
    }

    /// Stops retransmitting an INVITE that got no response (the TU rolled over). The
    /// transaction stays until Timer B so a late response is still passed up and ACKed.
    pub fn abandon(&mut self, txn: ClientTxn) {
        if let Some(Entry {
            machine: Machine::InviteClient(m),
            ..
        }) = self.get_mut(txn.0)
        {
            m.abandon();
        }
    }

    /// The driver reports that sending for this transaction failed.
    pub fn handle_transport_error(&mut self, txn: TxnRef, error: TransportError) {
        let id = match txn {
            TxnRef::Client(ClientTxn(id)) | TxnRef::Server(ServerTxn(id)) => id,
        };
        let mut out = std::mem::take(&mut self.scratch);
        if let Some(entry) = self.get_mut(id) {
            match &mut entry.machine {
                Machine::InviteClient(m) => m.on_transport_error(error, &mut out),
                Machine::NonInviteClient(m) => m.on_transport_error(error, &mut out),
                Machine::InviteServer(m) => m.on_transport_error(error, &mut out),
                Machine::NonInviteServer(m) => m.on_transport_error(error, &mut out),
            }
        }
        self.scratch = out;
        self.settle(id);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.shrink_after_peak();
        while let Some((at, (id, slot))) = self.timers.pop_due(now) {
            let cfg = self.cfg;
            let mut out = std::mem::take(&mut self.scratch);
            let fired = match self.get_mut(id) {
                Some(entry) if timers_of(entry).get(slot) == Some(at) => {
                    entry.timers().clear(slot);
                    match &mut entry.machine {
                        Machine::InviteClient(m) => m.on_timer(slot, now, &mut out),
                        Machine::NonInviteClient(m) => m.on_timer(slot, now, &cfg, &mut out),
                        Machine::InviteServer(m) => m.on_timer(slot, now, &cfg, &mut out),
                        Machine::NonInviteServer(m) => m.on_timer(slot),
                    }
                    true
                }
                _ => false, // stale entry: the timer was reset or the transaction is gone
            };
            // Whatever a timer sends is a retransmission (Timers A, E, G).
            let resent = out.iter().filter(|a| matches!(a, Action::Send(_))).count();
            self.stats.retransmitted += resent as u64;
            self.scratch = out;
            if fired {
                self.settle(id);
            }
        }
    }

    /// Answers a server transaction statelessly and forgets it at once: the response goes to
    /// the request's source, nothing is retransmitted, and a retransmitted request is a new
    /// request (answered the same way). What a proxy refuses before routing it refuses like
    /// this (Kamailio's `sl_send_reply`): one datagram out for each datagram in.
    pub fn reply_stateless(&mut self, server: ServerTxn, bytes: Bytes) {
        let Some(entry) = self.get_mut(server.0) else {
            return;
        };
        let dest = entry.peer;
        self.stats.stateless_replies += 1;
        self.transmits.push_back(Transmit {
            dest,
            bytes,
            txn: None,
        });
        self.remove(server.0);
    }

    /// Forgets a server transaction without answering it (a routing script's `drop`): a
    /// retransmitted request is a new request, handled the same way.
    pub fn ignore(&mut self, server: ServerTxn) {
        if self.get_mut(server.0).is_some() {
            self.remove(server.0);
        }
    }

    /// Queues bytes outside any transaction: stateless forwarding (the ACK for a 2xx, a 2xx
    /// retransmission after its transaction ended) and stateless replies to bad requests.
    pub fn send_stateless(&mut self, dest: Peer, bytes: Bytes) {
        self.transmits.push_back(Transmit {
            dest,
            bytes,
            txn: None,
        });
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Stale entries on the way are dropped, so the driver does not wake for nothing.
        let slots = &self.slots;
        self.timers
            .next_deadline(|at, &(id, slot)| is_live(slots, at, id, slot))
    }

    /// The next datagram or segment to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        crate::queue::take_front(&mut self.transmits)
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = crate::queue::take_front(&mut self.events);
        if event.is_none() {
            // Every `Terminated` queued so far has been taken: those slots can be reused.
            self.free.append(&mut self.free_later);
        }
        event
    }

    /// The peer of a transaction (where its messages go).
    pub fn peer(&self, txn: TxnRef) -> Option<Peer> {
        let id = match txn {
            TxnRef::Client(ClientTxn(id)) | TxnRef::Server(ServerTxn(id)) => id,
        };
        self.slots
            .get(id.index as usize)?
            .as_deref()
            .filter(|e| e.gen == id.gen)
            .map(|e| e.peer)
    }
}

/// Whether a queued deadline is still its transaction's (not reset, cleared or reaped).
fn is_live(slots: &[Option<Box<Entry>>], at: Instant, id: Id, slot: Slot) -> bool {
    slots
        .get(id.index as usize)
        .and_then(Option::as_deref)
        .is_some_and(|e| e.gen == id.gen && timers_of(e).get(slot) == Some(at))
}

fn timers_of(e: &Entry) -> &Timers {
    match &e.machine {
        Machine::InviteClient(m) => &m.timers,
        Machine::NonInviteClient(m) => &m.timers,
        Machine::InviteServer(m) => &m.timers,
        Machine::NonInviteServer(m) => &m.timers,
    }
}

/// The status code of serialised response bytes (`SIP/2.0 NNN`).
fn status_of(b: &[u8]) -> Option<u16> {
    let code = b.get(8..11)?;
    if !b.starts_with(b"SIP/2.0 ") || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}
