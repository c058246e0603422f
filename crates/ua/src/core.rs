//! The user agent's sans-IO core: every call of an endpoint, outgoing and incoming, as one
//! transaction user. Transaction events, commands and an explicit `now` go in; what it
//! sends goes out through the transaction layer (`TxnLayer::poll_transmit`), what the
//! application must hear comes out of [`UaCore::poll_event`], and
//! [`UaCore::poll_timeout`] says when to call [`UaCore::handle_timeout`].
//!
//! ```text
//!  driver ── TxnLayer events, now ──▶ UaCore ──▶ OutgoingCall (client side: INVITEs,
//!         ── call / answer / hangup ─▶   │        CANCEL, ACK, BYE; the failover engine)
//!         ◀── poll_event: UaEvent ───────┤   ──▶ incoming calls (server side: the 2xx
//!         ◀── poll_timeout ──────────────┘        retransmitted until the ACK, BYE, CANCEL)
//! ```
//!
//! Calls are found by key, never by scanning: a transaction event by its client
//! transaction, a BYE or an ACK by its dialog (Call-ID and our tag), a CANCEL by the INVITE
//! transaction it cancels.
//!
//! The server side follows RFC 3261: a 2xx to an INVITE is retransmitted by the core at
//! T1, 2·T1, 4·T1… capped at T2 until the ACK arrives; without an ACK after 64·T1 the call
//! is ended with a BYE (§13.3.1.4); a BYE is answered 200 and ends the call (§15.1.2); a
//! CANCEL before the answer gets 200 and the INVITE 487 (§9.2); the application hangs up
//! with a BYE of its own.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_failover::{LiteralResolver, Resolver, Target, Why};
use rollover_sip::{HeaderName, Message, Method, RequestBuilder, StatusCode};
use rollover_txn::{ClientTxn, Event, Peer, ServerTxn, TransactionUser, TxnLayer, TxnRef};
use tracing::{debug, info};

use crate::call::{peer_of, CallEvent, CallOptions, OutgoingCall, RedirectDecision, Redirects};

/// The timers of a user agent. The defaults are RFC 3261's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UaConfig {
    /// T1, the round-trip estimate (500 ms): the first interval of a 2xx retransmission,
    /// and 64·T1 its limit.
    pub t1: Duration,
    /// T2 (4 s): the longest interval between 2xx retransmissions.
    pub t2: Duration,
}

impl Default for UaConfig {
    fn default() -> Self {
        let rfc = rollover_txn::Config::default();
        UaConfig {
            t1: rfc.t1,
            t2: rfc.t2,
        }
    }
}

impl UaConfig {
    /// The transaction layer's configuration with these timers.
    pub fn txn_config(&self) -> rollover_txn::Config {
        rollover_txn::Config {
            t1: self.t1,
            t2: self.t2,
            ..rollover_txn::Config::default()
        }
    }
}

/// A call of a [`UaCore`], outgoing or incoming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(u64);

/// How the application answers an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK, with this SDP answer.
    Accept(Option<Bytes>),
    /// A final failure (486, 603…) with its reason phrase.
    Reject(StatusCode, String),
    /// 302 with these Contacts (`sip:…` URIs, with `;q=` if wanted): the library as a
    /// redirect server (PJSUA sends one by hanging up with a Contact list).
    Redirect(Vec<String>),
}

/// How an incoming call ended (other than by the application's own reject or redirect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncomingEnd {
    /// The caller cancelled before the answer: 487 was sent.
    Cancelled,
    /// The caller hung up (BYE), answered 200.
    HungUp,
    /// No ACK came for our 2xx within 64·T1: the call was ended with a BYE (RFC 3261
    /// §13.3.1.4), so neither side is left holding a half-set-up call.
    NoAck,
    /// The application hung up ([`UaCore::hangup`]): a BYE was sent (or, before the
    /// answer, the call was declined with 603).
    HungUpHere,
}

/// What the application hears from the core.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UaEvent {
    /// Progress of an outgoing call.
    Call(CallRef, CallEvent),
    /// An outgoing call is over and hung up: nothing more will come for it.
    Finished(CallRef),
    /// An INVITE arrived: answer it with [`UaCore::answer`].
    Incoming(CallRef, Message),
    /// An incoming call ended from the other side.
    IncomingEnded(CallRef, IncomingEnd),
}

/// A dialog, as the requests inside it name it: the Call-ID and our tag (the To tag of what
/// the other side sends).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogKey {
    call_id: String,
    local_tag: String,
}

/// A 2xx retransmitted until its ACK arrives: T1, 2·T1, … up to T2, for at most 64·T1
/// (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Resend {
    dest: Peer,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    until: Instant,
}

/// The BYE for an answered incoming call, and where it goes (see [`UaCore::send_bye`]).
fn bye_for(
    call: &Incoming,
    local: SocketAddr,
    resolver: Option<&(dyn Resolver + Send)>,
) -> Option<(Message, Peer)> {
    let invite = &call.request;
    let remote_target = invite.contacts().next()?.ok()?.uri_str.to_owned();
    let routes: Vec<String> = invite
        .record_routes()
        .map(|r| r.map(|r| r.uri_str.to_owned()))
        .collect::<Result<_, _>>()
        .ok()?;
    let value = |name| {
        let v = invite.value_bytes(invite.header(name)?);
        Some(String::from_utf8_lossy(v).into_owned())
    };
    let theirs = value(HeaderName::From)?;
    let ours = format!("{};tag={}", value(HeaderName::To)?, call.key.local_tag);
    let hop = routes.first().unwrap_or(&remote_target);
    // IP literals need no resolver; names need the one given to the core.
    let resolver: &dyn Resolver = match resolver {
        Some(r) => r,
        None => &LiteralResolver,
    };
    let dest = Target::parse(hop)
        .ok()
        .and_then(|t| peer_of(&t, resolver))
        .unwrap_or(call.source);
    let mut b = RequestBuilder::new(Method::Bye, &remote_target)
        .via(&format!(
            "SIP/2.0/{} {local};branch=z9hG4bK-{}-bye",
            dest.transport, call.key.local_tag
        ))
        .from(&ours)
        .to(&theirs)
        .call_id(&call.key.call_id)
        .cseq(1);
    for r in &routes {
        b = b.header("Route", &format!("<{r}>"));
    }
    let bye = Message::parse(b.build().ok()?).ok()?;
    Some((bye, dest))
}

/// An incoming INVITE, from its arrival to its BYE.
#[derive(Debug)]
struct Incoming {
    server: ServerTxn,
    request: Message,
    /// Where it came from (its 2xx is retransmitted there).
    source: Peer,
    key: DialogKey,
    answered: bool,
    resend: Option<Resend>,
    /// The application hung up before the ACK: the BYE waits for it (RFC 3261 §15).
    hangup_pending: bool,
}

/// What a user agent has done since it started, for an application's logs or metrics:
/// read with [`UaCore::stats`], never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UaStats {
    /// Outgoing calls placed.
    pub calls: u64,
    /// INVITEs sent to a target (each target of each call).
    pub targets_tried: u64,
    /// Targets left behind (the call rolled over).
    pub rolled_over: u64,
    /// 3xx responses that offered new targets.
    pub redirects: u64,
    /// Outgoing calls a target answered.
    pub answered: u64,
    /// Outgoing calls that ended unanswered (every target failed, or cancelled).
    pub unanswered: u64,
    /// Incoming INVITEs taken as new calls.
    pub incoming: u64,
    /// Incoming calls the application accepted.
    pub incoming_accepted: u64,
    /// Incoming calls cancelled by the caller before an answer.
    pub incoming_cancelled: u64,
}

impl std::fmt::Display for UaStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calls={} targets_tried={} rolled_over={} redirects={} answered={} unanswered={} incoming={} incoming_accepted={} incoming_cancelled={}",
            self.calls,
            self.targets_tried,
            self.rolled_over,
            self.redirects,
            self.answered,
            self.unanswered,
            self.incoming,
            self.incoming_accepted,
            self.incoming_cancelled
        )
    }
}

/// Every call of a user agent, sans-IO. See the module docs.
pub struct UaCore {
    cfg: UaConfig,
    /// Our address, for the Contact of our 2xx.
    local: SocketAddr,
    next: u64,
    /// Numbers the To tags of incoming calls.
    next_incoming: u64,
    outgoing: HashMap<CallRef, OutgoingCall>,
    incoming: HashMap<CallRef, Incoming>,
    /// In-dialog requests and ACKs find their call here.
    dialogs: HashMap<DialogKey, CallRef>,
    /// The Call-IDs of our outgoing calls: one of our own INVITEs that comes back to us
    /// (a loop) is refused, not taken as an incoming call.
    placed: HashMap<String, CallRef>,
    /// The client transactions of outgoing calls.
    clients: HashMap<ClientTxn, CallRef>,
    /// Incoming INVITEs not answered yet, by server transaction (a CANCEL names it).
    invites: HashMap<ServerTxn, CallRef>,
    events: VecDeque<UaEvent>,
    stats: UaStats,
    /// Resolves the first hop of the BYE that ends an incoming call; without one, a host
    /// name there sends the BYE to the previous hop.
    resolver: Option<Box<dyn Resolver + Send>>,
}

impl std::fmt::Debug for UaCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaCore")
            .field("outgoing", &self.outgoing.len())
            .field("incoming", &self.incoming.len())
            .finish()
    }
}

impl UaCore {
    /// A core with these timers; `local` is the address put in the Contact of our answers.
    pub fn new(cfg: UaConfig, local: SocketAddr) -> UaCore {
        UaCore {
            cfg,
            local,
            next: 0,
            next_incoming: 0,
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            dialogs: HashMap::new(),
            placed: HashMap::new(),
            clients: HashMap::new(),
            invites: HashMap::new(),
            events: VecDeque::new(),
            stats: UaStats::default(),
            resolver: None,
        }
    }

    /// Resolves host names in the route of the BYEs that end incoming calls (the calls
    /// placed get their resolver with each call).
    pub fn set_resolver(&mut self, resolver: Box<dyn Resolver + Send>) {
        self.resolver = Some(resolver);
    }

    /// The timers in force.
    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// What this user agent has done since it started.
    pub fn stats(&self) -> &UaStats {
        &self.stats
    }

    /// Whether a call is still known: an outgoing call not yet finished, or an incoming
    /// call not rejected, cancelled or hung up.
    pub fn contains(&self, r: CallRef) -> bool {
        self.outgoing.contains_key(&r) || self.incoming.contains_key(&r)
    }

    fn new_ref(&mut self) -> CallRef {
        self.next += 1;
        CallRef(self.next)
    }

    /// Places a call: its first INVITE (or group of INVITEs) goes out now.
    pub fn call(
        &mut self,
        now: Instant,
        opts: CallOptions,
        redirects: Redirects,
        resolver: Box<dyn Resolver + Send>,
        txn: &mut TxnLayer,
    ) -> CallRef {
        let r = self.new_ref();
        self.stats.calls += 1;
        let key = DialogKey {
            call_id: opts.call_id.clone(),
            local_tag: opts.from_tag.clone(),
        };
        self.placed.insert(key.call_id.clone(), r);
        self.dialogs.insert(key, r);
        let call = OutgoingCall::start(now, opts, redirects, resolver, txn);
        self.outgoing.insert(r, call);
        self.settle(r);
        r
    }

    /// The application's late answer for a `RedirectPending` of an outgoing call.
    pub fn process_redirect(
        &mut self,
        now: Instant,
        r: CallRef,
        decision: RedirectDecision,
        txn: &mut TxnLayer,
    ) {
        if let Some(c) = self.outgoing.get_mut(&r) {
            c.process_redirect(now, decision, txn);
            self.settle(r);
        }
    }

    /// Gives up on an outgoing call still being placed.
    pub fn cancel(&mut self, now: Instant, r: CallRef, txn: &mut TxnLayer) {
        if let Some(c) = self.outgoing.get_mut(&r) {
            c.cancel(now, txn);
            self.settle(r);
        }
    }

    /// Hangs up a call. An outgoing call gets a BYE, or is cancelled if not yet answered;
    /// an incoming call gets a BYE once answered (after the ACK: a callee may not send it
    /// before, RFC 3261 §15), or is declined (603) before the answer.
    pub fn hangup(&mut self, now: Instant, r: CallRef, txn: &mut TxnLayer) {
        if let Some(c) = self.outgoing.get_mut(&r) {
            c.hangup(now, txn);
            self.settle(r);
            return;
        }
        let Some(call) = self.incoming.get_mut(&r) else {
            return;
        };
        match (call.answered, call.resend.is_some()) {
            // Answered, not acknowledged yet: the callee may not send its BYE before the
            // ACK (RFC 3261 §15); it goes when the ACK comes, or at 64·T1 without one.
            (true, true) => {
                call.hangup_pending = true;
                return;
            }
            (true, false) => {
                self.send_bye(now, r, txn);
                self.end_incoming(r);
            }
            (false, _) => {
                let declined = StatusCode::DECLINE;
                self.answer(
                    now,
                    r,
                    Answer::Reject(declined, declined.reason().to_owned()),
                    txn,
                );
            }
        }
        self.events
            .push_back(UaEvent::IncomingEnded(r, IncomingEnd::HungUpHere));
    }

    /// Sends the BYE that ends an answered incoming call, inside the dialog its INVITE
    /// set up at this side (RFC 3261 §12.1.1): to the INVITE's Contact, through its
    /// Record-Route in the order received, From and To swapped, our local CSeq starting
    /// at 1. A first hop named by a host name is looked up with the resolver given to
    /// [`UaCore::set_resolver`]; without one, or when the name does not resolve, the BYE
    /// goes where the INVITE came from (the previous hop).
    fn send_bye(&mut self, now: Instant, r: CallRef, txn: &mut TxnLayer) {
        let Some(call) = self.incoming.get(&r) else {
            return;
        };
        let call_id = call.key.call_id.as_str();
        let Some((bye, dest)) = bye_for(call, self.local, self.resolver.as_deref()) else {
            debug!(
                call_id,
                "no BYE: the INVITE names no usable Contact or route set"
            );
            return;
        };
        if let Err(e) = txn.send_request(now, bye, dest) {
            debug!(call_id, "BYE not sent: {e}");
        }
    }

    /// Answers an incoming call. An accepted call's 2xx is retransmitted until its ACK; a
    /// rejected or redirected one is over.
    pub fn answer(&mut self, now: Instant, r: CallRef, answer: Answer, txn: &mut TxnLayer) {
        let Some(call) = self.incoming.get_mut(&r) else {
            return;
        };
        if call.answered {
            return;
        }
        let req = &call.request;
        let tag = &call.key.local_tag;
        let accepted = matches!(answer, Answer::Accept(_));
        self.stats.incoming_accepted += u64::from(accepted);
        let resp = match answer {
            Answer::Accept(sdp) => {
                let b = req
                    .reply(StatusCode::OK)
                    .to_tag(tag)
                    .copy_record_route()
                    .header("Contact", &format!("<sip:rollover@{}>", self.local));
                match sdp {
                    Some(body) => b.body("application/sdp", body).build(),
                    None => b.build(),
                }
            }
            Answer::Reject(code, reason) => {
                req.response(code.as_u16(), &reason).to_tag(tag).build()
            }
            Answer::Redirect(contacts) => {
                let mut b = req.reply(StatusCode::MOVED_TEMPORARILY).to_tag(tag);
                for c in &contacts {
                    let value = match c.split_once(";q=") {
                        Some((uri, q)) => format!("<{uri}>;q={q}"),
                        None => format!("<{c}>"),
                    };
                    b = b.header("Contact", &value);
                }
                b.build()
            }
        };
        if let Err(e) = txn.send_response(now, call.server, resp.clone()) {
            debug!(
                call_id = call.key.call_id,
                "answer to the INVITE not sent: {e}"
            );
        }
        self.invites.remove(&call.server);
        if accepted {
            call.answered = true;
            call.resend = Some(Resend {
                dest: call.source,
                bytes: resp,
                next: now + self.cfg.t1,
                interval: self.cfg.t1,
                until: now + self.cfg.t1 * 64,
            });
        } else {
            self.end_incoming(r);
        }
    }

    /// What the application must hear next.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// The next deadline: a failover or redirect timer of an outgoing call, or a 2xx
    /// retransmission.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.outgoing
            .values()
            .filter_map(OutgoingCall::poll_timeout)
            .chain(
                self.incoming
                    .values()
                    .filter_map(|c| c.resend.as_ref().map(|r| r.next.min(r.until))),
            )
            .min()
    }

    /// Passes an outgoing call's events on, learns its transactions, and forgets it once it
    /// is finished.
    fn settle(&mut self, r: CallRef) {
        let Some(call) = self.outgoing.get_mut(&r) else {
            return;
        };
        while let Some(e) = call.poll_event() {
            let st = &mut self.stats;
            match &e {
                CallEvent::Trying(_) => st.targets_tried += 1,
                CallEvent::RolledOver(..) => st.rolled_over += 1,
                CallEvent::Redirected(..) => st.redirects += 1,
                CallEvent::Ended(o) if o.answered_by.is_some() => st.answered += 1,
                CallEvent::Ended(_) => st.unanswered += 1,
                _ => {}
            }
            self.events.push_back(UaEvent::Call(r, e));
        }
        for c in call.transactions() {
            self.clients.insert(c, r);
        }
        if !call.is_finished() {
            return;
        }
        for c in call.transactions() {
            self.clients.remove(&c);
        }
        self.placed.remove(call.call_id());
        self.dialogs.retain(|_, d| *d != r);
        self.outgoing.remove(&r);
        self.events.push_back(UaEvent::Finished(r));
    }

    fn end_incoming(&mut self, r: CallRef) {
        if let Some(call) = self.incoming.remove(&r) {
            self.dialogs.remove(&call.key);
            self.invites.remove(&call.server);
        }
    }

    fn on_client_failure(
        &mut self,
        now: Instant,
        c: ClientTxn,
        why: Why,
        synthetic: StatusCode,
        txn: &mut TxnLayer,
    ) {
        let Some(&r) = self.clients.get(&c) else {
            return;
        };
        if let Some(call) = self.outgoing.get_mut(&r) {
            call.handle_failure(now, c, why, synthetic, txn);
        }
        self.settle(r);
    }

    fn on_request(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: Message,
        source: Peer,
        cancels: Option<ServerTxn>,
        txn: &mut TxnLayer,
    ) {
        let call_id = request.call_id().unwrap_or_default().to_owned();
        let ours = self.placed.contains_key(&call_id);
        let in_dialog = request.to_tag().and_then(|tag| {
            self.dialogs
                .get(&DialogKey {
                    call_id: call_id.clone(),
                    local_tag: tag.to_owned(),
                })
                .copied()
        });
        match request.method() {
            Some(Method::Bye) if in_dialog.is_some() => {
                let Some(r) = in_dialog else { return };
                if let Some(call) = self.outgoing.get_mut(&r) {
                    call.handle_bye(now, server, &request, txn);
                    return self.settle(r);
                }
                let ok = request.reply(StatusCode::OK).build();
                if let Err(e) = txn.send_response(now, server, ok) {
                    debug!(
                        call_id = request.call_id().unwrap_or("-"),
                        "200 for the BYE not sent: {e}"
                    );
                }
                self.end_incoming(r);
                self.events
                    .push_back(UaEvent::IncomingEnded(r, IncomingEnd::HungUp));
            }
            Some(Method::Invite) if !ours && request.to_tag().is_none() => {
                self.next_incoming += 1;
                let tag = format!("rl{:x}{:x}", self.next_incoming, call_id.len());
                let r = self.new_ref();
                let key = DialogKey {
                    call_id,
                    local_tag: tag,
                };
                self.dialogs.insert(key.clone(), r);
                self.invites.insert(server, r);
                self.incoming.insert(
                    r,
                    Incoming {
                        server,
                        request: request.clone(),
                        source,
                        key,
                        answered: false,
                        resend: None,
                        hangup_pending: false,
                    },
                );
                self.stats.incoming += 1;
                self.events.push_back(UaEvent::Incoming(r, request));
            }
            Some(Method::Cancel) if !ours => {
                let ok = request.reply(StatusCode::OK).build();
                if let Err(e) = txn.send_response(now, server, ok) {
                    debug!(
                        call_id = request.call_id().unwrap_or("-"),
                        "200 for the CANCEL not sent: {e}"
                    );
                }
                let Some(r) = cancels.and_then(|s| self.invites.get(&s)).copied() else {
                    return;
                };
                if let Some(call) = self.incoming.get(&r) {
                    let resp = call
                        .request
                        .reply(StatusCode::REQUEST_TERMINATED)
                        .to_tag(&call.key.local_tag)
                        .build();
                    if let Err(e) = txn.send_response(now, call.server, resp) {
                        debug!(call_id = call.key.call_id, "487 not sent: {e}");
                    }
                }
                self.end_incoming(r);
                self.events
                    .push_back(UaEvent::IncomingEnded(r, IncomingEnd::Cancelled));
                self.stats.incoming_cancelled += 1;
            }
            // Nothing else is taken: re-INVITEs, other methods, our own INVITE looped back.
            _ => {
                let resp = request
                    .reply(StatusCode::TEMPORARILY_UNAVAILABLE)
                    .to_tag("rollover-ua");
                if let Err(e) = txn.send_response(now, server, resp.build()) {
                    debug!(call_id, "480 not sent: {e}");
                }
            }
        }
    }
}

impl TransactionUser for UaCore {
    fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        match ev {
            Event::Response { txn: c, response } => {
                let Some(&r) = self.clients.get(&c) else {
                    return;
                };
                if let Some(call) = self.outgoing.get_mut(&r) {
                    call.handle_response(now, c, response, txn);
                }
                self.settle(r);
            }
            Event::Timeout(TxnRef::Client(c)) => self.on_client_failure(
                now,
                c,
                Why::TransactionTimeout,
                StatusCode::REQUEST_TIMEOUT,
                txn,
            ),
            Event::TransportError(TxnRef::Client(c), e) => self.on_client_failure(
                now,
                c,
                Why::Transport(e),
                StatusCode::SERVICE_UNAVAILABLE,
                txn,
            ),
            Event::Terminated(TxnRef::Client(c)) => {
                self.clients.remove(&c);
            }
            Event::Ack { request, .. } => {
                let key = request
                    .call_id()
                    .ok()
                    .zip(request.to_tag())
                    .map(|(c, t)| DialogKey {
                        call_id: c.to_owned(),
                        local_tag: t.to_owned(),
                    });
                let r = key.and_then(|k| self.dialogs.get(&k)).copied();
                if let Some((r, call)) = r.and_then(|r| Some((r, self.incoming.get_mut(&r)?))) {
                    call.resend = None;
                    if call.hangup_pending {
                        self.send_bye(now, r, txn);
                        self.end_incoming(r);
                        self.events
                            .push_back(UaEvent::IncomingEnded(r, IncomingEnd::HungUpHere));
                    }
                }
            }
            Event::Request {
                txn: server,
                request,
                source,
                cancels,
            } => self.on_request(now, server, request, source, cancels, txn),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        let t2 = self.cfg.t2;
        let mut unacked = Vec::new();
        for (&call_ref, call) in &mut self.incoming {
            let Some(r) = call.resend.as_mut() else {
                continue;
            };
            if now >= r.until {
                unacked.push(call_ref);
                continue;
            }
            if r.next > now {
                continue;
            }
            txn.send_stateless(r.dest, r.bytes.clone());
            r.interval = (r.interval * 2).min(t2);
            r.next = now + r.interval;
        }
        for r in unacked {
            let mut end = IncomingEnd::NoAck;
            if let Some(call) = self.incoming.get(&r) {
                info!(
                    call_id = call.key.call_id,
                    "no ACK for the 2xx in 64*T1: ending the call with a BYE"
                );
                if call.hangup_pending {
                    end = IncomingEnd::HungUpHere;
                }
            }
            self.send_bye(now, r, txn);
            self.end_incoming(r);
            self.events.push_back(UaEvent::IncomingEnded(r, end));
        }
        let due: Vec<CallRef> = self
            .outgoing
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(r, _)| *r)
            .collect();
        for r in due {
            if let Some(c) = self.outgoing.get_mut(&r) {
                c.handle_timeout(now, txn);
            }
            self.settle(r);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next_timeout()
    }
}
