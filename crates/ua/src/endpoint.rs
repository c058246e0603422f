//! The async face of the user agent: an endpoint on real sockets, calls as handles with an
//! event stream. One task runs the transaction layer and the sans-IO core ([`UaCore`]) in
//! the `rollover-net` driver; this module only moves commands, events and time between the
//! application's handles and that core.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use rollover_failover::Resolver;
use rollover_net::{driver, ListenSpec, NetConfig, NetError, Transports};
use rollover_sip::{Limits, StatusCode};
use rollover_txn::{Event, TransactionUser, Transport, TxnLayer};
use tokio::sync::{mpsc, oneshot};

use crate::call::{CallEvent, CallOptions, RedirectDecision, Redirects};
use crate::core::{Answer, CallRef, IncomingEnd, UaConfig, UaCore, UaEvent};

/// Resolves host names with the system resolver (blocking; fine for a UA's few targets).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        (host, port).to_socket_addrs().ok()?.next()
    }
}

enum Command {
    Answer(CallRef, Answer),
    Call(
        u64,
        Box<CallOptions>,
        Redirects,
        mpsc::UnboundedSender<CallEvent>,
    ),
    Redirect(u64, RedirectDecision),
    Cancel(u64),
    Hangup(u64),
    HangupIncoming(CallRef),
}

/// The endpoint's task: the core, and where its events go.
struct Driver {
    core: UaCore,
    /// The handle id of each outgoing call, and its event stream.
    calls: HashMap<CallRef, (u64, mpsc::UnboundedSender<CallEvent>)>,
    /// The core's call for each handle id.
    handles: HashMap<u64, CallRef>,
    incoming_tx: mpsc::UnboundedSender<IncomingCall>,
    /// How each incoming call handed to the application ended, told once.
    incoming_ends: HashMap<CallRef, oneshot::Sender<IncomingEnd>>,
    commands: mpsc::Sender<Command>,
}

impl Driver {
    /// Hands the core's events to the application.
    fn flush(&mut self, now: Instant, txn: &mut TxnLayer) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                UaEvent::Call(r, e) => {
                    if let Some((_, tx)) = self.calls.get(&r) {
                        let _ = tx.send(e);
                    }
                }
                UaEvent::Finished(r) => {
                    // Dropping the sender ends the handle's event stream.
                    if let Some((id, _)) = self.calls.remove(&r) {
                        self.handles.remove(&id);
                    }
                }
                UaEvent::Incoming(r, request) => {
                    let (end_tx, ended) = oneshot::channel();
                    let handle = IncomingCall {
                        id: r,
                        request,
                        commands: self.commands.clone(),
                        ended: Some(ended),
                        end: None,
                    };
                    if self.incoming_tx.send(handle).is_ok() {
                        self.incoming_ends.insert(r, end_tx);
                    } else {
                        let busy = Answer::Reject(
                            StatusCode::TEMPORARILY_UNAVAILABLE,
                            StatusCode::TEMPORARILY_UNAVAILABLE.reason().to_owned(),
                        );
                        self.core.answer(now, r, busy, txn);
                    }
                }
                UaEvent::IncomingEnded(r, end) => {
                    if let Some(tx) = self.incoming_ends.remove(&r) {
                        let _ = tx.send(end);
                    }
                }
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: Command, txn: &mut TxnLayer) {
        match cmd {
            Command::Answer(r, answer) => {
                self.core.answer(now, r, answer, txn);
                if !self.core.contains(r) {
                    // Rejected or redirected: over, with nothing more to tell.
                    self.incoming_ends.remove(&r);
                }
            }
            Command::Call(id, opts, redirects, tx) => {
                let r = self
                    .core
                    .call(now, *opts, redirects, Box::new(SystemResolver), txn);
                self.calls.insert(r, (id, tx));
                self.handles.insert(id, r);
            }
            Command::Redirect(id, d) => {
                if let Some(&r) = self.handles.get(&id) {
                    self.core.process_redirect(now, r, d, txn);
                }
            }
            Command::Cancel(id) => {
                if let Some(&r) = self.handles.get(&id) {
                    self.core.cancel(now, r, txn);
                }
            }
            Command::Hangup(id) => {
                if let Some(&r) = self.handles.get(&id) {
                    self.core.hangup(now, r, txn);
                }
            }
            Command::HangupIncoming(r) => self.core.hangup(now, r, txn),
        }
        self.flush(now, txn);
    }
}

impl TransactionUser for Driver {
    fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        self.core.handle_txn_event(now, ev, txn);
        self.flush(now, txn);
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        self.core.handle_timeout(now, txn);
        self.flush(now, txn);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.core.next_timeout()
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

/// An INVITE received by an [`Endpoint`], waiting for the application's [`Answer`]. Dropped
/// before it was answered, the call is refused with 480.
#[derive(Debug)]
pub struct IncomingCall {
    id: CallRef,
    /// The INVITE.
    pub request: rollover_sip::Message,
    commands: mpsc::Sender<Command>,
    ended: Option<oneshot::Receiver<IncomingEnd>>,
    end: Option<IncomingEnd>,
}

impl IncomingCall {
    /// Answers it: accept, reject, or redirect.
    pub async fn answer(&self, answer: Answer) {
        let _ = self.commands.send(Command::Answer(self.id, answer)).await;
    }

    /// Hangs up: a BYE once answered (after the caller's ACK), 603 Decline before.
    pub async fn hangup(&self) {
        let _ = self.commands.send(Command::HangupIncoming(self.id)).await;
    }

    /// Waits until the call is over, and says how: cancelled or hung up by the caller,
    /// hung up here, or ended with a BYE because our 2xx was never acknowledged. `None`
    /// when it ended without one of those (rejected or redirected by the answer, or the
    /// endpoint stopped); it returns at once when called again after that.
    pub async fn ended(&mut self) -> Option<IncomingEnd> {
        if let Some(rx) = self.ended.as_mut() {
            self.end = rx.await.ok();
            self.ended = None;
        }
        self.end
    }
}

/// A call dropped unanswered is refused (480), not left ringing until the caller gives up;
/// one already answered or over is not touched (the core ignores a second answer).
impl Drop for IncomingCall {
    fn drop(&mut self) {
        let unavailable = StatusCode::TEMPORARILY_UNAVAILABLE;
        let refuse = Answer::Reject(unavailable, unavailable.reason().to_owned());
        // Never waits: with the endpoint's queue full or gone, the call is left as it is.
        let _ = self.commands.try_send(Command::Answer(self.id, refuse));
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
    /// current tokio runtime, with RFC 3261's timers.
    pub async fn bind(listen: SocketAddr) -> Result<Endpoint, NetError> {
        Endpoint::bind_with(listen, UaConfig::default()).await
    }

    /// [`Endpoint::bind`] with these timers (T1, T2), for the transactions and the core.
    pub async fn bind_with(listen: SocketAddr, config: UaConfig) -> Result<Endpoint, NetError> {
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
        let mut calls = Driver {
            core: {
                let mut core = UaCore::new(config, local);
                core.set_resolver(Box::new(SystemResolver));
                core
            },
            calls: HashMap::new(),
            handles: HashMap::new(),
            incoming_tx,
            incoming_ends: HashMap::new(),
            commands: commands.clone(),
        };
        tokio::spawn(async move {
            let mut txn = TxnLayer::new(config.txn_config());
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
