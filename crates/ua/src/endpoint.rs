//! The async face of the user agent: an endpoint on real sockets, calls as handles with an
//! event stream. One task runs the transaction layer and every call (the `rollover-net`
//! driver); handles talk to it through a channel.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use rollover_failover::{Resolver, Why};
use rollover_net::{driver, ListenSpec, NetConfig, NetError, Transports};
use rollover_sip::{Limits, Method};
use rollover_txn::{Event, TransactionUser, Transport, TxnLayer, TxnRef};
use tokio::sync::mpsc;

use crate::call::{CallEvent, CallOptions, OutgoingCall, RedirectDecision, Redirects};

/// Resolves host names with the system resolver (blocking; fine for a UA's few targets).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        (host, port).to_socket_addrs().ok()?.next()
    }
}

/// A 2xx retransmitted by the UAS core until its ACK arrives: T1, 2·T1, … up to T2, for at
/// most 64·T1 (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Resend {
    dest: rollover_txn::Peer,
    bytes: bytes::Bytes,
    next: Instant,
    interval: std::time::Duration,
    until: Instant,
}

/// How the application answers an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK, with this SDP answer.
    Accept(Option<bytes::Bytes>),
    /// A final failure (486, 603…) with its reason phrase.
    Reject(u16, String),
    /// 302 with these Contacts (`sip:…` URIs, with `;q=` if wanted): the library as a
    /// redirect server (PJSUA sends one by hanging up with a Contact list).
    Redirect(Vec<String>),
}

enum Command {
    Answer(u64, Answer),
    Call(
        u64,
        Box<CallOptions>,
        Redirects,
        mpsc::UnboundedSender<CallEvent>,
    ),
    Redirect(u64, RedirectDecision),
    Cancel(u64),
    Hangup(u64),
}

/// Every call of an endpoint, as one transaction user.
struct Calls {
    calls: HashMap<u64, (OutgoingCall, mpsc::UnboundedSender<CallEvent>)>,
    /// Incoming INVITEs: id → (transaction, request, our To tag, answered).
    incoming: HashMap<u64, (rollover_txn::ServerTxn, rollover_sip::Message, String, bool)>,
    /// Where each incoming INVITE came from (its 2xx is retransmitted there).
    sources: HashMap<u64, rollover_txn::Peer>,
    /// 2xx we sent and keep sending until the ACK (RFC 3261 §13.3.1.4), by Call-ID.
    resend: HashMap<String, Resend>,
    incoming_tx: mpsc::UnboundedSender<IncomingCall>,
    commands: mpsc::Sender<Command>,
    local: SocketAddr,
    next_incoming: u64,
}

impl Calls {
    fn flush(&mut self) {
        self.calls.retain(|_, (call, tx)| {
            while let Some(e) = call.poll_event() {
                let _ = tx.send(e);
            }
            !call.is_finished()
        });
    }

    fn answer(&mut self, now: Instant, id: u64, answer: Answer, txn: &mut TxnLayer) {
        let Some((server, req, tag, answered)) = self.incoming.get_mut(&id) else {
            return;
        };
        let resp = match answer {
            Answer::Accept(sdp) => {
                *answered = true;
                let b = req
                    .response(200, "OK")
                    .to_tag(tag)
                    .copy_record_route()
                    .header("Contact", &format!("<sip:rollover@{}>", self.local));
                match sdp {
                    Some(body) => b.body("application/sdp", body).build(),
                    None => b.build(),
                }
            }
            Answer::Reject(code, reason) => req.response(code, &reason).to_tag(tag).build(),
            Answer::Redirect(contacts) => {
                let mut b = req.response(302, "Moved Temporarily").to_tag(tag);
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
        let _ = txn.send_response(now, *server, resp.clone());
        if *answered {
            let t = rollover_txn::Config::default();
            if let (Some(dest), Ok(call_id)) = (self.sources.get(&id).copied(), req.call_id()) {
                let resend = Resend {
                    dest,
                    bytes: resp,
                    next: now + t.t1,
                    interval: t.t1,
                    until: now + t.t1x64(),
                };
                self.resend.insert(call_id.to_owned(), resend);
            }
        } else {
            self.incoming.remove(&id);
            self.sources.remove(&id);
        }
    }

    fn command(&mut self, now: Instant, cmd: Command, txn: &mut TxnLayer) {
        match cmd {
            Command::Answer(id, answer) => self.answer(now, id, answer, txn),
            Command::Call(id, opts, redirects, tx) => {
                let call =
                    OutgoingCall::start(now, *opts, redirects, Box::new(SystemResolver), txn);
                self.calls.insert(id, (call, tx));
            }
            Command::Redirect(id, d) => {
                if let Some((c, _)) = self.calls.get_mut(&id) {
                    c.process_redirect(now, d, txn);
                }
            }
            Command::Cancel(id) => {
                if let Some((c, _)) = self.calls.get_mut(&id) {
                    c.cancel(now, txn);
                }
            }
            Command::Hangup(id) => {
                if let Some((c, _)) = self.calls.get_mut(&id) {
                    c.hangup(now, txn);
                }
            }
        }
        self.flush();
    }
}

impl TransactionUser for Calls {
    fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        match ev {
            Event::Response { txn: c, response } => {
                if let Some((call, _)) = self.calls.values_mut().find(|(call, _)| call.owns(c)) {
                    call.handle_response(now, c, response, txn);
                }
            }
            Event::Timeout(TxnRef::Client(c)) => {
                if let Some((call, _)) = self.calls.values_mut().find(|(call, _)| call.owns(c)) {
                    call.handle_failure(now, c, Why::TransactionTimeout, 408, txn);
                }
            }
            Event::TransportError(TxnRef::Client(c), e) => {
                if let Some((call, _)) = self.calls.values_mut().find(|(call, _)| call.owns(c)) {
                    call.handle_failure(now, c, Why::Transport(e), 503, txn);
                }
            }
            Event::Ack { request, .. } => {
                if let Ok(call_id) = request.call_id() {
                    self.resend.remove(call_id);
                }
            }
            Event::Request {
                txn: server,
                request,
                source,
                ..
            } => {
                let call_id = request.call_id().unwrap_or_default().to_owned();
                let call = self
                    .calls
                    .values_mut()
                    .find(|(c, _)| c.call_id() == call_id);
                let answered_in = self
                    .incoming
                    .iter()
                    .find(|(_, (_, r, _, _))| r.call_id().ok() == Some(call_id.as_str()))
                    .map(|(id, _)| *id);
                match (request.method(), call) {
                    (Some(Method::Bye), Some((call, _))) => {
                        call.handle_bye(now, server, &request, txn)
                    }
                    (Some(Method::Bye), None) if answered_in.is_some() => {
                        let _ = txn.send_response(now, server, request.response(200, "OK").build());
                        if let Some(id) = answered_in {
                            self.incoming.remove(&id);
                            self.sources.remove(&id);
                        }
                    }
                    (Some(Method::Invite), None) if request.to_tag().is_none() => {
                        self.next_incoming += 1;
                        let id = self.next_incoming;
                        let tag = format!("rl{id:x}{:x}", call_id.len());
                        let handle = IncomingCall {
                            id,
                            request: request.clone(),
                            commands: self.commands.clone(),
                        };
                        if self.incoming_tx.send(handle).is_ok() {
                            self.incoming.insert(id, (server, request, tag, false));
                            self.sources.insert(id, source);
                        } else {
                            let resp = request
                                .response(480, "Temporarily Unavailable")
                                .to_tag(&tag);
                            let _ = txn.send_response(now, server, resp.build());
                        }
                    }
                    (Some(Method::Cancel), None) => {
                        let _ = txn.send_response(now, server, request.response(200, "OK").build());
                        if let Some(id) = answered_in {
                            self.sources.remove(&id);
                            if let Some((inv, req, tag, false)) = self.incoming.remove(&id) {
                                let _ = txn.send_response(
                                    now,
                                    inv,
                                    req.response(487, "Request Terminated").to_tag(&tag).build(),
                                );
                            }
                        }
                    }
                    // Incoming calls are not taken yet.
                    _ => {
                        let resp = request
                            .response(480, "Temporarily Unavailable")
                            .to_tag("rollover-ua");
                        let _ = txn.send_response(now, server, resp.build());
                    }
                }
            }
            _ => {}
        }
        self.flush();
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        let t2 = rollover_txn::Config::default().t2;
        self.resend.retain(|_, r| {
            if r.next > now {
                return true;
            }
            if now >= r.until {
                return false; // no ACK in 64·T1: the dialog is given up
            }
            txn.send_stateless(r.dest, r.bytes.clone());
            r.interval = (r.interval * 2).min(t2);
            r.next = now + r.interval;
            true
        });
        for (call, _) in self.calls.values_mut() {
            if call.poll_timeout().is_some_and(|t| t <= now) {
                call.handle_timeout(now, txn);
            }
        }
        self.flush();
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|(c, _)| c.poll_timeout())
            .chain(self.resend.values().map(|r| r.next))
            .min()
    }
}

/// A user agent on real sockets.
#[derive(Debug)]
pub struct Endpoint {
    commands: mpsc::Sender<Command>,
    incoming: mpsc::UnboundedReceiver<IncomingCall>,
    local: SocketAddr,
    next: u64,
}

/// An INVITE received by an [`Endpoint`], waiting for the application's [`Answer`].
#[derive(Debug)]
pub struct IncomingCall {
    id: u64,
    /// The INVITE.
    pub request: rollover_sip::Message,
    commands: mpsc::Sender<Command>,
}

impl IncomingCall {
    /// Answers it: accept, reject, or redirect.
    pub async fn answer(&self, answer: Answer) {
        let _ = self.commands.send(Command::Answer(self.id, answer)).await;
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// One call placed by an [`Endpoint`].
#[derive(Debug)]
pub struct CallHandle {
    id: u64,
    events: mpsc::UnboundedReceiver<CallEvent>,
    commands: mpsc::Sender<Command>,
}

impl Endpoint {
    /// Listens on one UDP address (port 0 picks one) and starts the endpoint's task on the
    /// current tokio runtime.
    pub async fn bind(listen: SocketAddr) -> Result<Endpoint, NetError> {
        let cfg = NetConfig {
            listen: vec![ListenSpec {
                transport: Transport::Udp,
                addr: listen,
            }],
            ..NetConfig::default()
        };
        let (transports, mut inbound) = Transports::bind(cfg).await?;
        let local = transports.local_addr(Transport::Udp).unwrap_or(listen);
        let (commands, mut rx) = mpsc::channel(64);
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let mut calls = Calls {
            calls: HashMap::new(),
            incoming: HashMap::new(),
            sources: HashMap::new(),
            resend: HashMap::new(),
            incoming_tx,
            commands: commands.clone(),
            local,
            next_incoming: 0,
        };
        tokio::spawn(async move {
            let mut txn = TxnLayer::new(rollover_txn::Config::default());
            driver::run_with_commands(
                &mut calls,
                &mut txn,
                &transports,
                &mut inbound,
                Limits::default(),
                &mut rx,
                |calls, now, cmd, txn| calls.command(now, cmd, txn),
                std::future::pending::<()>(),
            )
            .await;
            transports.shutdown();
        });
        Ok(Endpoint {
            commands,
            incoming,
            local,
            next: 0,
        })
    }

    /// The next incoming call (INVITE), to answer with [`IncomingCall::answer`].
    pub async fn next_incoming(&mut self) -> Option<IncomingCall> {
        self.incoming.recv().await
    }

    /// The address the endpoint listens on (for Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Places a call. `opts.local` should be [`Endpoint::local_addr`].
    pub async fn call(&mut self, opts: CallOptions, redirects: Redirects) -> Option<CallHandle> {
        self.next += 1;
        let (tx, events) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Call(self.next, Box::new(opts), redirects, tx))
            .await
            .ok()?;
        Some(CallHandle {
            id: self.next,
            events,
            commands: self.commands.clone(),
        })
    }
}

impl CallHandle {
    /// The next progress event; `None` once the call is finished.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// Answers a `RedirectPending`.
    pub async fn process_redirect(&self, decision: RedirectDecision) {
        let _ = self
            .commands
            .send(Command::Redirect(self.id, decision))
            .await;
    }

    /// Gives up on a call still being placed.
    pub async fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel(self.id)).await;
    }

    /// Hangs up (BYE), or cancels a call not yet answered.
    pub async fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup(self.id)).await;
    }
}
