//! The [`Transports`] handle: binds the listeners, sends, and runs the UDP receive loops.
//! Stream connections live in [`crate::conn`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rollover_sip::Limits;
use rollover_txn::{Peer, Transport, TransportError, TxnRef};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::udp_sock::UdpSock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ListenSpec, NetConfig, NetError};
use crate::conn;
use crate::inner::{Inbound, Inner, TlsNames};
use crate::ratelog::Logs;
use crate::table::{Budgets, ConnTable};
use crate::tls::TlsContext;

/// Receive buffer asked for on UDP sockets, to absorb bursts while the driver is busy.
/// Linux caps it at `net.core.rmem_max`; the size granted is logged at bind.
pub(crate) const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Events queued for the driver before the transports wait for it to catch up.
const INBOUND_QUEUE: usize = 1024;

/// Larger than any UDP payload (65,507 bytes over IPv4), so a datagram is never truncated.
pub(crate) const DATAGRAM_BUFFER: usize = 65536;

/// Backlog of pending connections on TCP/TLS listeners.
const LISTEN_BACKLOG: i32 = 1024;

/// The running transports: cheap to clone, every clone drives the same sockets.
///
/// Tasks stop on [`Transports::shutdown`], or by themselves once the [`Inbound`] receiver
/// returned by [`Transports::bind`] is dropped. Every method must be called from within
/// the tokio runtime that bound them.
///
/// With several workers ([`Transports::bind_workers`]) each worker has a handle of its own:
/// it sends UDP from its own sockets and gets the failures of what it sent.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
    worker: usize,
    udp: Arc<[(SocketAddr, Arc<UdpSock>)]>,
    /// Cancelled when the driver reads the UDP sockets itself: the receive tasks stop.
    udp_claim: CancellationToken,
}

/// One more worker's share of the transports, not started yet: its UDP sockets (bound to
/// the same addresses as worker 0's, with `SO_REUSEPORT`) and its queue of inbound events.
/// Move it to the worker's thread and call [`WorkerTransports::start`] inside that
/// thread's runtime, so its sockets are polled there.
pub struct WorkerTransports {
    inner: Arc<Inner>,
    worker: usize,
    udp: Vec<(SocketAddr, std::net::UdpSocket)>,
    inbound: mpsc::Receiver<Inbound>,
}

impl fmt::Debug for WorkerTransports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerTransports")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl WorkerTransports {
    /// Which worker this share is for.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Registers the worker's sockets with the current runtime and starts receiving on
    /// them. Call it inside a tokio runtime.
    pub fn start(self) -> Result<(Transports, mpsc::Receiver<Inbound>), NetError> {
        let mut udp = Vec::new();
        for (local, socket) in self.udp {
            let socket = UdpSock::new(socket).map_err(|source| NetError::Bind {
                spec: ListenSpec {
                    transport: Transport::Udp,
                    addr: local,
                },
                source,
            })?;
            udp.push((local, Arc::new(socket)));
        }
        let udp_claim = self.inner.stop.child_token();
        let t = Transports {
            inner: self.inner,
            worker: self.worker,
            udp: udp.into(),
            udp_claim,
        };
        t.spawn_udp_loops();
        Ok((t, self.inbound))
    }
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transports")
            .field("listeners", &self.inner.locals)
            .field("worker", &self.worker)
            .field("connections", &self.inner.conns.len())
            .finish_non_exhaustive()
    }
}

impl Transports {
    /// Binds every listener for one worker (whatever `cfg.workers` says); spawns the
    /// receive tasks; returns the handle and the inbound channel.
    pub async fn bind(cfg: NetConfig) -> Result<(Transports, mpsc::Receiver<Inbound>), NetError> {
        let cfg = NetConfig { workers: 1, ..cfg };
        let (t, rx, _) = Transports::bind_workers(cfg).await?;
        Ok((t, rx))
    }

    /// Binds every listener for `cfg.workers` workers. Worker 0's handle and queue are
    /// returned ready, with the TCP/TLS listeners polled in the calling runtime; the other
    /// workers' shares are started each in its own runtime ([`WorkerTransports::start`]).
    ///
    /// Each UDP listener is bound once per worker with `SO_REUSEPORT`, so the system spreads
    /// the receiving by source address; whatever socket a message comes in on, it is queued
    /// for the worker its Call-ID hashes to, so one call is handled by one worker, in order.
    /// Messages from connections are queued the same way.
    pub async fn bind_workers(
        cfg: NetConfig,
    ) -> Result<(Transports, mpsc::Receiver<Inbound>, Vec<WorkerTransports>), NetError> {
        let workers = cfg.workers.max(1);
        let tls = match &cfg.tls {
            Some(files) => Some(TlsContext::load(files)?),
            None => None,
        };
        if tls.is_none() {
            if let Some(spec) = cfg.listen.iter().find(|s| s.transport == Transport::Tls) {
                return Err(NetError::TlsRequired { spec: spec.clone() });
            }
        }

        // udp[w] = worker w's sockets, one per UDP listener.
        let mut udp: Vec<Vec<(SocketAddr, std::net::UdpSocket)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut streams = Vec::new();
        let mut locals = Vec::new();
        for spec in &cfg.listen {
            let failed = |source| NetError::Bind {
                spec: spec.clone(),
                source,
            };
            match spec.transport {
                Transport::Udp => {
                    let first = bind_udp(spec, workers > 1).map_err(failed)?;
                    let local = first.local_addr().map_err(failed)?;
                    locals.push((Transport::Udp, local));
                    // Port 0: the others share the port the first one got.
                    let same = ListenSpec {
                        transport: Transport::Udp,
                        addr: local,
                    };
                    let mut first = Some(first);
                    for sockets in udp.iter_mut() {
                        let socket = match first.take() {
                            Some(s) => s,
                            None => bind_udp(&same, true).map_err(failed)?,
                        };
                        sockets.push((local, socket));
                    }
                    if workers > 1 {
                        if let Some((_, socket)) = udp.first().and_then(|s| s.last()) {
                            if let Err(e) = crate::steer::attach(socket, workers) {
                                tracing::info!(
                                    %local,
                                    error = %e,
                                    "requests spread over the workers by source address and port: the flood limit counts per worker"
                                );
                            }
                        }
                    }
                }
                Transport::Tcp | Transport::Tls => {
                    let listener = bind_stream(spec).map_err(failed)?;
                    let local = listener.local_addr().map_err(failed)?;
                    locals.push((spec.transport, local));
                    streams.push((spec.transport, local, listener));
                }
                _ => {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "transport not supported",
                    )))
                }
            }
        }

        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            senders.push(tx);
            receivers.push(rx);
        }
        let inner = Arc::new(Inner {
            inbound: senders,
            limits: Limits {
                max_message_size: cfg.max_message_size,
                ..Limits::default()
            },
            idle_timeout: cfg.connection_idle_timeout,
            connect_timeout: cfg.connect_timeout,
            header_timeout: cfg.header_timeout,
            unused_timeout: cfg.unused_connection_timeout,
            budgets: Budgets {
                incoming: cfg.max_incoming_connections,
                outgoing: cfg.max_outgoing_connections,
                per_ip: cfg.max_connections_per_ip,
            },
            logs: Logs::default(),
            tls,
            stop: CancellationToken::new(),
            conns: ConnTable::default(),
            shed: cfg.shed.clone(),
            locals,
            tls_names: TlsNames::default(),
        });
        let mut shares: Vec<WorkerTransports> = udp
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(worker, (udp, inbound))| WorkerTransports {
                inner: inner.clone(),
                worker,
                udp,
                inbound,
            })
            .collect();
        let first = shares.remove(0);
        for (local, _) in &first.udp {
            tracing::info!(%local, workers, "listening on UDP");
        }
        let (t, rx) = first.start()?;
        for (transport, local, listener) in streams {
            tracing::info!(%local, %transport, "listening");
            tokio::spawn(conn::accept_loop(inner.clone(), listener, transport, local));
        }
        // Worker 0's driver dropped its receiver: nobody listens, stop everything.
        if let Some(watch) = inner.inbound.first().cloned() {
            let stop = inner.stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = watch.closed() => stop.cancel(),
                }
            });
        }
        Ok((t, rx, shares))
    }

    fn spawn_udp_loops(&self) {
        for (local, socket) in self.udp.iter() {
            let (inner, socket) = (self.inner.clone(), socket.clone());
            let claim = self.udp_claim.clone();
            tokio::spawn(udp_loop(inner, socket, *local, self.worker, claim));
        }
    }

    /// Hands this worker's UDP sockets to its driver, which reads them itself from now on
    /// (the receive tasks stop; what they already queued still arrives on the channel).
    /// Streams, hand-offs from other workers and send failures keep coming on the channel.
    pub fn claim_udp(&self) -> crate::UdpIn {
        self.udp_claim.cancel();
        crate::UdpIn::new(self.inner.clone(), self.worker, self.udp.to_vec())
    }

    /// Which worker this handle belongs to (0 for a single driver).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// How many workers share the transports.
    pub fn workers(&self) -> usize {
        self.inner.inbound.len()
    }

    /// Queues messages this worker let in for the worker that owns their calls
    /// ([`Inbound::Screened`]), in one event. Never waits: when that worker's queue is
    /// full, a task waits for room.
    pub fn hand_off(&self, worker: usize, messages: Vec<(Peer, rollover_sip::Message)>) {
        if !messages.is_empty() {
            self.inner.report(worker, Inbound::Screened { messages });
        }
    }

    /// Sends without blocking the caller on connection set-up: UDP is sent right away
    /// (ECONNREFUSED from a previous ICMP port-unreachable reported as SendFailed{Refused});
    /// TCP/TLS reuse an open connection to `dest` (keyed by transport+addr, incoming connections
    /// included, so responses go back on the connection the request came on, RFC 3261 §18.2.2),
    /// else connect in a background task and queue the bytes; failure -> Inbound::SendFailed.
    ///
    /// See the crate documentation for what UDP can and cannot detect.
    pub fn send(&self, dest: Peer, bytes: Bytes, txn: Option<TxnRef>) {
        if self.inner.stop.is_cancelled() {
            return;
        }
        match dest.transport {
            Transport::Udp => self.send_udp(dest, bytes, txn),
            _ => conn::send(&self.inner, dest, bytes, txn, self.worker),
        }
    }

    /// The address to put in our Via sent-by / Record-Route for a transport (first listener
    /// of that transport; None if no listener of that kind).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.inner.local_addr(transport)
    }

    /// The table of TLS peer names (RFC 5922): a resolver records each name it resolves,
    /// so an outgoing TLS connection verifies that name, not the bare address.
    pub fn tls_names(&self) -> TlsNames {
        self.inner.tls_names.clone()
    }

    /// Stops every task (for tests).
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.conns.clear();
    }

    fn send_udp(&self, dest: Peer, bytes: Bytes, txn: Option<TxnRef>) {
        let socket = self
            .udp
            .iter()
            .find(|(local, _)| local.is_ipv4() == dest.addr.is_ipv4())
            .map(|(_, s)| s);
        let Some(socket) = socket else {
            tracing::debug!(%dest, "no UDP listener of this address family");
            self.fail(dest, txn, TransportError::Unreachable);
            return;
        };
        let first = socket.try_send_to(&bytes, dest.addr);
        let result = match first {
            Err(e) if is_icmp_error(&e) => {
                // The error is pending from an ICMP message about an earlier datagram, to
                // a destination we cannot tell; it is consumed now, so this one is sent again.
                tracing::debug!(error = %e, "UDP: ICMP error for an earlier datagram");
                socket.try_send_to(&bytes, dest.addr)
            }
            other => other,
        };
        match result {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Send buffer full: wait for room off the caller's path.
                let socket = socket.clone();
                let inner = self.inner.clone();
                let worker = self.worker;
                tokio::spawn(async move {
                    let sent = tokio::select! {
                        _ = inner.stop.cancelled() => return,
                        r = socket.send_to(&bytes, dest.addr) => r,
                    };
                    if let Err(e) = sent {
                        tracing::debug!(%dest, error = %e, "UDP send");
                        inner.report(
                            worker,
                            Inbound::SendFailed {
                                dest,
                                txn,
                                error: udp_error(&e),
                            },
                        );
                    }
                });
            }
            Err(e) => {
                tracing::debug!(%dest, error = %e, "UDP send");
                self.fail(dest, txn, udp_error(&e));
            }
        }
    }

    fn fail(&self, dest: Peer, txn: Option<TxnRef>, error: TransportError) {
        self.inner
            .report(self.worker, Inbound::SendFailed { dest, txn, error });
    }
}

/// ICMP port unreachable, as surfaced on a UDP socket (Linux: ECONNREFUSED; Windows:
/// WSAECONNRESET).
pub(crate) fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

fn udp_error(e: &io::Error) -> TransportError {
    if is_icmp_error(e) {
        TransportError::Refused
    } else {
        TransportError::Unreachable
    }
}

fn new_socket(spec: &ListenSpec, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(spec.addr), ty, Some(protocol))?;
    if spec.addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A UDP socket for `spec`; `shared` sets `SO_REUSEPORT` so each worker binds its own.
fn bind_udp(spec: &ListenSpec, shared: bool) -> io::Result<std::net::UdpSocket> {
    let socket = new_socket(spec, Type::DGRAM, Protocol::UDP)?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    if shared {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "more than one worker needs SO_REUSEPORT",
        ));
    }
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::warn!(%spec, error = %e, "cannot set SO_RCVBUF");
    }
    // Linux reports twice the size granted (bookkeeping included).
    match socket.recv_buffer_size() {
        Ok(granted) if granted < UDP_RECV_BUFFER => tracing::warn!(
            %spec,
            granted,
            wanted = UDP_RECV_BUFFER,
            "UDP receive buffer capped by the system (raise net.core.rmem_max)"
        ),
        Ok(granted) => tracing::debug!(%spec, granted, "UDP receive buffer"),
        Err(_) => {}
    }
    socket.bind(&spec.addr.into())?;
    Ok(socket.into())
}

fn bind_stream(spec: &ListenSpec) -> io::Result<TcpListener> {
    let socket = new_socket(spec, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&spec.addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Receives datagrams until stopped. Errors never end the loop.
/// What arrives on a worker's socket goes to that worker, which screens it (its own flood
/// count sees every datagram of a source, since the system keeps one source on one socket)
/// and hands it to the worker owning the call.
async fn udp_loop(
    inner: Arc<Inner>,
    socket: Arc<UdpSock>,
    local: SocketAddr,
    worker: usize,
    claim: CancellationToken,
) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let mut shed_count = 0u64;
    loop {
        let received = tokio::select! {
            biased;
            _ = claim.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, src)) => {
                let Some(data) = buf.get(..len) else { continue };
                if data.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // empty or CRLF keep-alive
                }
                if len > inner.limits.max_message_size {
                    tracing::debug!(%src, len, "UDP: datagram over the size limit dropped");
                    continue;
                }
                let bytes = Bytes::copy_from_slice(data);
                let source = Peer {
                    transport: Transport::Udp,
                    addr: src,
                };
                let event = Inbound::Message {
                    source,
                    local,
                    bytes,
                };
                let Some(event) = inner.offer(worker, event) else {
                    continue;
                };
                // The worker is a whole queue behind: a new request is refused now rather
                // than left to age in the socket buffer behind the calls under way.
                if let Some(busy) = shed(&inner, &event) {
                    if socket.try_send_to(&busy, src).is_ok() {
                        shed_count += 1;
                        if let Some(suppressed) = inner.logs.shed.allow() {
                            tracing::info!(
                                %local,
                                worker,
                                refused = shed_count,
                                suppressed,
                                "overloaded: queue full, new requests refused with 503 on arrival"
                            );
                        }
                    }
                    continue;
                }
                if !inner.deliver(worker, event, &inner.stop).await {
                    return;
                }
            }
            Err(e) if is_icmp_error(&e) => {
                // Which destination it was about is not reported here: Timer B/F cover it.
                tracing::debug!(%local, error = %e, "UDP: ICMP error for an earlier datagram");
            }
            Err(e) => {
                tracing::warn!(%local, error = %e, "UDP receive");
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
    }
}

/// The 503 for a message the worker has no room for, when shedding is on, the sender is
/// not exempt and the message is a new request.
pub(crate) fn shed(inner: &Inner, event: &Inbound) -> Option<Bytes> {
    let policy = inner.shed.as_ref()?;
    let Inbound::Message { source, bytes, .. } = event else {
        return None;
    };
    if (policy.exempt)(source.addr.ip()) {
        return None;
    }
    rollover_txn::shed(bytes, &inner.limits, policy.retry_after)
}
