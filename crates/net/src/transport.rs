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
use tokio::net::{TcpListener, UdpSocket};
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
const DATAGRAM_BUFFER: usize = 65536;

/// Backlog of pending connections on TCP/TLS listeners.
const LISTEN_BACKLOG: i32 = 1024;

/// The running transports: cheap to clone, every clone drives the same sockets.
///
/// Tasks stop on [`Transports::shutdown`], or by themselves once the [`Inbound`] receiver
/// returned by [`Transports::bind`] is dropped. Every method must be called from within
/// the tokio runtime that bound them.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transports")
            .field("listeners", &self.inner.locals)
            .field("connections", &self.inner.conns.len())
            .finish_non_exhaustive()
    }
}

impl Transports {
    /// Binds every listener; spawns the receive tasks; returns the handle and the inbound channel.
    pub async fn bind(cfg: NetConfig) -> Result<(Transports, mpsc::Receiver<Inbound>), NetError> {
        let tls = match &cfg.tls {
            Some(files) => Some(TlsContext::load(files)?),
            None => None,
        };
        if tls.is_none() {
            if let Some(spec) = cfg.listen.iter().find(|s| s.transport == Transport::Tls) {
                return Err(NetError::TlsRequired { spec: spec.clone() });
            }
        }

        let mut udp = Vec::new();
        let mut streams = Vec::new();
        let mut locals = Vec::new();
        for spec in &cfg.listen {
            let failed = |source| NetError::Bind {
                spec: spec.clone(),
                source,
            };
            match spec.transport {
                Transport::Udp => {
                    let socket = bind_udp(spec).map_err(failed)?;
                    let local = socket.local_addr().map_err(failed)?;
                    locals.push((Transport::Udp, local));
                    udp.push((local, Arc::new(socket)));
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

        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let inner = Arc::new(Inner {
            inbound: tx,
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
            udp,
            locals,
            tls_names: TlsNames::default(),
        });
        for (local, socket) in &inner.udp {
            tracing::info!(%local, "listening on UDP");
            tokio::spawn(udp_loop(inner.clone(), socket.clone(), *local));
        }
        for (transport, local, listener) in streams {
            tracing::info!(%local, %transport, "listening");
            tokio::spawn(conn::accept_loop(inner.clone(), listener, transport, local));
        }
        // The driver dropped its receiver: nobody listens, stop everything.
        let watch = inner.inbound.clone();
        let stop = inner.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = watch.closed() => stop.cancel(),
            }
        });
        Ok((Transports { inner }, rx))
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
            _ => conn::send(&self.inner, dest, bytes, txn),
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
        let Some(socket) = self.inner.udp_for(dest.addr) else {
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
                tokio::spawn(async move {
                    let sent = tokio::select! {
                        _ = inner.stop.cancelled() => return,
                        r = socket.send_to(&bytes, dest.addr) => r,
                    };
                    if let Err(e) = sent {
                        tracing::debug!(%dest, error = %e, "UDP send");
                        inner.report(Inbound::SendFailed {
                            dest,
                            txn,
                            error: udp_error(&e),
                        });
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
        self.inner.report(Inbound::SendFailed { dest, txn, error });
    }
}

/// ICMP port unreachable, as surfaced on a UDP socket (Linux: ECONNREFUSED; Windows:
/// WSAECONNRESET).
fn is_icmp_error(e: &io::Error) -> bool {
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

fn bind_udp(spec: &ListenSpec) -> io::Result<UdpSocket> {
    let socket = new_socket(spec, Type::DGRAM, Protocol::UDP)?;
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
    UdpSocket::from_std(socket.into())
}

fn bind_stream(spec: &ListenSpec) -> io::Result<TcpListener> {
    let socket = new_socket(spec, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&spec.addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Receives datagrams until stopped. Errors never end the loop.
async fn udp_loop(inner: Arc<Inner>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let received = tokio::select! {
            biased;
            _ = inner.stop.cancelled() => return,
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
                let event = Inbound::Message {
                    source: Peer {
                        transport: Transport::Udp,
                        addr: src,
                    },
                    local,
                    bytes: Bytes::copy_from_slice(data),
                };
                if !inner.deliver(event, &inner.stop).await {
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
