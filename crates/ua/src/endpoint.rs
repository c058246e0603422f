//! The async face of the user agent: an endpoint on real sockets, calls as handles with an
//! event stream. One task runs the transaction layer and every call (the `rollover-net`
//! driver); handles talk to it through a channel.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use rollover_net::{driver, ListenSpec, NetConfig, NetError, Transports};
use rollover_proxy::{Resolver, Why};
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

enum Command {
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
#[derive(Default)]
struct Calls {
    calls: HashMap<u64, (OutgoingCall, mpsc::UnboundedSender<CallEvent>)>,
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

    fn command(&mut self, now: Instant, cmd: Command, txn: &mut TxnLayer) {
        match cmd {
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
            Event::Request {
                txn: server,
                request,
                ..
            } => {
                let call_id = request.call_id().unwrap_or_default().to_owned();
                let call = self
                    .calls
                    .values_mut()
                    .find(|(c, _)| c.call_id() == call_id);
                match (request.method(), call) {
                    (Some(Method::Bye), Some((call, _))) => {
                        call.handle_bye(now, server, &request, txn)
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
            .min()
    }
}

/// A user agent on real sockets.
#[derive(Debug)]
pub struct Endpoint {
    commands: mpsc::Sender<Command>,
    local: SocketAddr,
    next: u64,
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
        tokio::spawn(async move {
            let mut calls = Calls::default();
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
            local,
            next: 0,
        })
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
