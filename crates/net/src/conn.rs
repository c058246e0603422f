//! TCP and TLS connections: the table that reuses them, accepting, connecting, and the
//! reader and writer of each connection.
//!
//! ```text
//!  send(dest) ─▶ table[dest]? ─ yes ─▶ try_send(write queue) ─ full ─▶ close + SendFailed{Reset}
//!                     │ no
//!                     ▼
//!              insert entry + queue, spawn: connect ─ fails ─▶ SendFailed for each queued message
//!                                              │ ok
//!  accept ─▶ insert entry + queue ─────────────┤
//!                                              ▼
//!                      reader task: read ─▶ StreamFramer ─▶ Inbound::Message / pong / BadStream
//!                      writer task: queue ─▶ write_all ─▶ flush when the queue is empty
//! ```
//!
//! One [`CancellationToken`] per connection (a child of the global stop token) ends both
//! tasks; whichever side ends first cancels it. The reader removes the table entry, the
//! writer reports every message still queued as [`TransportError::Reset`].
//!
//! The table admits connections within budgets ([`crate::table`]); the reader also closes
//! its connection when idle, when a message is not complete in time from its first byte,
//! and when an incoming connection brings no message soon enough after it was accepted.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rollover_sip::{Frame, StreamFramer};
use rollover_txn::{Peer, Transport, TransportError, TxnRef};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::inner::{Inbound, Inner};
use crate::ratelog::RateLimit;
use crate::table::{Conn, Direction, Outgoing, Refused};

/// Bytes read from a stream at a time, into the thread's shared read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Longest wait armed for any timer: far enough to mean never, near enough that adding it
/// to an instant cannot overflow.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most a closing connection waits for its FIN / TLS close_notify to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// RFC 5626 §4.4.1: the pong answering a double-CRLF ping.
const PONG: &[u8] = b"\r\n";

/// Queues `bytes` on the connection to `dest`, opening one in the background if needed.
pub(crate) fn send(
    inner: &Arc<Inner>,
    dest: Peer,
    bytes: Bytes,
    txn: Option<TxnRef>,
    worker: usize,
) {
    let mut item = Outgoing {
        bytes,
        txn,
        worker,
        keepalive: false,
        last: false,
    };
    let mut table = inner.conns.lock();
    if let Some(conn) = table.get(&dest) {
        match conn.queue.try_send(item) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(o)) => {
                let conn = table.remove(&dest);
                drop(table);
                if let Some(suppressed) = inner.logs.queue_full.allow() {
                    tracing::warn!(%dest, suppressed, "write queue full: closing the connection");
                }
                if let Some(conn) = conn {
                    conn.close.cancel();
                }
                fail(inner, dest, o, TransportError::Reset);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(o)) => {
                // The connection is ending: its entry is stale, open a new one.
                table.remove(&dest);
                item = o;
            }
        }
    }
    let refused = if !matches!(dest.transport, Transport::Tcp | Transport::Tls) {
        Some(TransportError::Unreachable)
    } else if dest.transport == Transport::Tls && inner.tls.is_none() {
        if let Some(suppressed) = inner.logs.no_certificate.allow() {
            tracing::warn!(%dest, suppressed, "TLS destination but no certificate configured");
        }
        Some(TransportError::Tls)
    } else if table.outgoing() >= inner.budgets.outgoing {
        // Incoming connections are not counted here: strangers cannot use up this budget.
        if let Some(suppressed) = inner.logs.outgoing_limit.allow() {
            let limit = inner.budgets.outgoing;
            tracing::warn!(%dest, limit, suppressed, "outgoing connection limit reached");
        }
        Some(TransportError::Unreachable)
    } else {
        None
    };
    if let Some(error) = refused {
        drop(table);
        fail(inner, dest, item, error);
        return;
    }
    let (conn, rx) = inner.conns.entry(Direction::Outgoing, &inner.stop);
    if let Err(e) = conn.queue.try_send(item) {
        // A new queue has room; this cannot happen, but is not worth a panic.
        drop(table);
        fail(inner, dest, e.into_inner(), TransportError::Reset);
        return;
    }
    table.insert(dest, conn.clone());
    drop(table);
    tokio::spawn(connect_and_run(inner.clone(), dest, conn, rx));
}

fn fail(inner: &Inner, dest: Peer, o: Outgoing, error: TransportError) {
    if !o.keepalive {
        inner.report(
            o.worker,
            Inbound::SendFailed {
                dest,
                txn: o.txn,
                error,
            },
        );
    }
}

/// Reports every message left in a closed connection's queue.
fn fail_queue(inner: &Inner, peer: Peer, rx: &mut mpsc::Receiver<Outgoing>, error: TransportError) {
    rx.close();
    while let Ok(o) = rx.try_recv() {
        fail(inner, peer, o, error);
    }
}

/// Accepts connections on one TCP or TLS listener until stopped.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    transport: Transport,
    local: SocketAddr,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = inner.stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, or an aborted handshake: back off a little.
                if let Some(suppressed) = inner.logs.accept_error.allow() {
                    tracing::warn!(%local, error = %e, suppressed, "accept");
                }
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let peer = Peer { transport, addr };
        let accepted = Instant::now();
        let (conn, rx) = match inner.conns.register(peer, inner.budgets, &inner.stop) {
            Ok(registered) => registered,
            Err(refused) => {
                refuse(&inner, peer, refused);
                continue; // dropping `tcp` closes it
            }
        };
        tracing::debug!(%peer, "accepted");
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY");
        }
        let unused_until = Some(after(accepted, inner.unused_timeout));
        tokio::spawn(serve_incoming(
            inner.clone(),
            peer,
            local,
            conn,
            rx,
            tcp,
            unused_until,
        ));
    }
}

/// Logs (rate-limited) why an accepted connection is closed at once.
fn refuse(inner: &Inner, peer: Peer, refused: Refused) {
    match refused {
        Refused::PerIp => closing(&inner.logs.per_ip_limit, peer, "per-IP connection limit"),
        Refused::Incoming => {
            if let Some(suppressed) = inner.logs.incoming_limit.allow() {
                let limit = inner.budgets.incoming;
                tracing::warn!(%peer, limit, suppressed, "incoming connection limit reached: closing");
            }
        }
    }
}

/// Logs at info, at most once per interval for each reason, why a connection is closed.
fn closing(limit: &RateLimit, peer: Peer, reason: &'static str) {
    if let Some(suppressed) = limit.allow() {
        tracing::info!(%peer, reason, suppressed, "closing connection");
    }
}

/// `t + d`, with `d` capped at [`FOREVER`].
fn after(t: Instant, d: Duration) -> Instant {
    t + d.min(FOREVER)
}

async fn serve_incoming(
    inner: Arc<Inner>,
    peer: Peer,
    local: SocketAddr,
    conn: Conn,
    mut rx: mpsc::Receiver<Outgoing>,
    tcp: TcpStream,
    unused_until: Option<Instant>,
) {
    if peer.transport != Transport::Tls {
        run(inner, peer, local, conn, rx, tcp, unused_until).await;
        return;
    }
    let handshake = match &inner.tls {
        Some(tls) => tokio::select! {
            biased;
            _ = conn.close.cancelled() => None,
            r = tokio::time::timeout(inner.connect_timeout, tls.acceptor.accept(tcp)) => match r {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            },
        },
        None => None,
    };
    match handshake {
        Some(stream) => {
            let stream = TlsStream::from(stream);
            run(inner, peer, local, conn, rx, stream, unused_until).await;
        }
        None => {
            conn.close.cancel();
            inner.conns.remove(peer, conn.id);
            fail_queue(&inner, peer, &mut rx, TransportError::Tls);
        }
    }
}

/// An outgoing connection once set up.
enum Opened {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

async fn connect_and_run(
    inner: Arc<Inner>,
    peer: Peer,
    conn: Conn,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let opened = tokio::select! {
        biased;
        _ = conn.close.cancelled() => Err(TransportError::Reset),
        r = tokio::time::timeout(inner.connect_timeout, open(&inner, peer)) => match r {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(%peer, "connect timed out");
                Err(TransportError::Unreachable)
            }
        },
    };
    match opened {
        Ok((local, Opened::Tcp(s))) => run(inner, peer, local, conn, rx, s, None).await,
        Ok((local, Opened::Tls(s))) => run(inner, peer, local, conn, rx, *s, None).await,
        Err(error) => {
            conn.close.cancel();
            inner.conns.remove(peer, conn.id);
            fail_queue(&inner, peer, &mut rx, error);
        }
    }
}

/// Connects (and for TLS, handshakes); returns the address to report as `local`.
async fn open(inner: &Inner, peer: Peer) -> Result<(SocketAddr, Opened), TransportError> {
    let tcp = TcpStream::connect(peer.addr).await.map_err(|e| {
        tracing::debug!(%peer, error = %e, "connect failed");
        connect_error(&e)
    })?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "TCP_NODELAY");
    }
    let local = match inner.local_addr(peer.transport) {
        Some(a) => a,
        None => tcp.local_addr().map_err(|_| TransportError::Reset)?,
    };
    tracing::debug!(%peer, "connected");
    if peer.transport != Transport::Tls {
        return Ok((local, Opened::Tcp(tcp)));
    }
    let tls = inner.tls.as_ref().ok_or(TransportError::Tls)?;
    // RFC 5922: the SIP domain the target named, when a resolver recorded one; else the
    // address itself.
    let name = match inner
        .tls_names
        .get(peer.addr)
        .and_then(|n| ServerName::try_from(n).ok())
    {
        Some(n) => n,
        None => ServerName::IpAddress(peer.addr.ip().into()),
    };
    let stream = tls.connector.connect(name, tcp).await.map_err(|e| {
        // The operator needs the reason to fix a certificate: say it at info.
        let text = e.to_string();
        let hint = if text.contains("CaUsedAsEndEntity") {
            " (the peer presents a CA certificate, as `openssl req -x509` makes by default: a TLS server needs an end-entity certificate, basicConstraints CA:FALSE)"
        } else if text.contains("NotValidForName") {
            " (the certificate does not name this address: add it as a subjectAltName IP entry)"
        } else if text.contains("UnknownIssuer") {
            " (its issuer is not trusted: add the CA, or the peer's certificate, to tls_cert or the system store)"
        } else {
            ""
        };
        tracing::info!(%peer, "TLS handshake failed: {text}{hint}");
        TransportError::Tls
    })?;
    Ok((local, Opened::Tls(Box::new(TlsStream::from(stream)))))
}

fn connect_error(e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TransportError::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => TransportError::Reset,
        _ => TransportError::Unreachable,
    }
}

/// When a connection last carried bytes either way, shared by its reader and writer.
#[derive(Clone)]
struct Activity {
    epoch: Instant,
    millis: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            millis: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// Runs an established connection: spawns its writer, reads until the end, cleans up.
/// `unused_until`: for an incoming connection, when it is closed if no message came by then.
async fn run<S>(
    inner: Arc<Inner>,
    peer: Peer,
    local: SocketAddr,
    conn: Conn,
    rx: mpsc::Receiver<Outgoing>,
    stream: S,
    unused_until: Option<Instant>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let activity = Activity::new();
    tokio::spawn(write_loop(
        inner.clone(),
        peer,
        writer,
        rx,
        conn.close.clone(),
        activity.clone(),
    ));
    let mut timers = Timers {
        activity,
        started: None,
        unused_until,
    };
    read_loop(&inner, peer, local, &conn, reader, &mut timers).await;
    conn.close.cancel();
    inner.conns.remove(peer, conn.id);
    tracing::debug!(%peer, "connection closed");
}

/// The deadlines a connection's reader watches besides the stream itself.
struct Timers {
    /// Last traffic either way: the idle timeout counts from it.
    activity: Activity,
    /// When the first byte of the message being received came: the header timeout counts
    /// from it, whatever comes after. `None` between messages.
    started: Option<Instant>,
    /// An incoming connection that has not brought a message yet is closed then.
    unused_until: Option<Instant>,
}

/// Which deadline woke the reader.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    Idle,
    Header,
    Unused,
}

impl Timers {
    /// The earliest deadline.
    fn next(&self, inner: &Inner) -> (Instant, Deadline) {
        let mut next = (
            after(self.activity.last(), inner.idle_timeout),
            Deadline::Idle,
        );
        let others = [
            (
                self.started.map(|t| after(t, inner.header_timeout)),
                Deadline::Header,
            ),
            (self.unused_until, Deadline::Unused),
        ];
        for (at, which) in others {
            if let Some(at) = at.filter(|at| *at < next.0) {
                next = (at, which);
            }
        }
        next
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    inner: &Inner,
    peer: Peer,
    local: SocketAddr,
    conn: &Conn,
    mut reader: R,
    timers: &mut Timers,
) {
    let mut framer = StreamFramer::new(inner.limits);
    release(&mut framer);
    loop {
        let (deadline, which) = timers.next(inner);
        let read = tokio::select! {
            biased;
            _ = conn.close.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => match which {
                Deadline::Idle => {
                    // The writer may have been busy meanwhile.
                    if after(timers.activity.last(), inner.idle_timeout) <= Instant::now() {
                        tracing::debug!(%peer, "idle: closing");
                        return;
                    }
                    continue;
                }
                Deadline::Header => {
                    closing(&inner.logs.header_timeout, peer, "message not complete in time");
                    return;
                }
                Deadline::Unused => {
                    closing(&inner.logs.unused, peer, "no message since accepted");
                    return;
                }
            },
            r = read_some(&mut reader, &mut framer) => r,
        };
        match read {
            Ok(0) => {
                tracing::debug!(%peer, "closed by the peer");
                return;
            }
            Ok(_) => timers.activity.touch(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read");
                return;
            }
        }
        let mut framed = false;
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(message))) => {
                    framed = true;
                    timers.unused_until = None;
                    let event = Inbound::Message {
                        source: peer,
                        local,
                        bytes: message.as_bytes().clone(),
                    };
                    if !inner.deliver(0, event, &conn.close).await {
                        return;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    framed = true;
                    // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF.
                    let pong = Outgoing {
                        bytes: Bytes::from_static(PONG),
                        txn: None,
                        worker: 0,
                        keepalive: true,
                        last: false,
                    };
                    if conn.queue.try_send(pong).is_err() {
                        tracing::debug!(%peer, "write queue full: pong skipped");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Out of sync: nothing after this can be trusted (RFC 3261 §18.3). A
                    // request whose Via can be read still gets its 400/513 first.
                    tracing::info!(%peer, error = %e, "unframeable stream: closing");
                    let answer = rollover_sip::refusal_for_unparsed(&framer.buffer_mut()[..], &e);
                    let event = Inbound::BadStream {
                        source: peer,
                        error: e.to_string(),
                    };
                    inner.deliver(0, event, &conn.close).await;
                    if let Some(bytes) = answer {
                        let last = Outgoing {
                            bytes,
                            txn: None,
                            worker: 0,
                            keepalive: true,
                            last: true,
                        };
                        if conn.queue.try_send(last).is_ok() {
                            // The writer closes once it is out; bounded.
                            let _ = tokio::time::timeout(CLOSE_GRACE, conn.close.cancelled()).await;
                        }
                    }
                    return;
                }
            }
        }
        if framer.buffered() == 0 {
            timers.started = None;
            release(&mut framer);
        } else if framed || timers.started.is_none() {
            // What is left began in this read: a frame before it was incomplete until now.
            timers.started = Some(Instant::now());
        }
    }
}

thread_local! {
    /// One read buffer per thread, lent to whichever connection has bytes ready: a
    /// connection waiting for data holds no buffer of its own.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads what is ready into `framer`, which grows by the bytes read and no more.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    framer: &mut StreamFramer,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut poll_into = |scratch: &mut [u8]| {
            let mut buf = ReadBuf::new(scratch);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    framer.push(buf.filled());
                    Poll::Ready(Ok(buf.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        };
        READ_BUFFER.with(|shared| match shared.try_borrow_mut() {
            Ok(mut scratch) => poll_into(&mut scratch),
            // Only if a read ever nested in another on this thread.
            Err(_) => poll_into(&mut vec![0; READ_CHUNK]),
        })
    })
    .await
}

/// Gives an empty framer's buffer back: an idle connection keeps no allocation, and the
/// next message gets one of its own size instead of sharing a large one.
fn release(framer: &mut StreamFramer) {
    if framer.buffered() == 0 {
        *framer.buffer_mut() = BytesMut::new();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    peer: Peer,
    mut writer: W,
    mut rx: mpsc::Receiver<Outgoing>,
    close: CancellationToken,
    activity: Activity,
) {
    let mut healthy = true;
    loop {
        let next = tokio::select! {
            biased;
            _ = close.cancelled() => None,
            o = rx.recv() => o,
        };
        let Some(o) = next else { break };
        let last = rx.is_empty();
        let written = tokio::select! {
            biased;
            _ = close.cancelled() => Err(None),
            r = write_one(&mut writer, &o.bytes, last) => r.map_err(Some),
        };
        match written {
            Ok(()) if o.last => break,
            Ok(()) => activity.touch(),
            Err(e) => {
                if let Some(e) = e {
                    tracing::debug!(%peer, error = %e, "write");
                }
                healthy = false;
                fail(&inner, peer, o, TransportError::Reset);
                break;
            }
        }
    }
    close.cancel();
    fail_queue(&inner, peer, &mut rx, TransportError::Reset);
    if healthy {
        // FIN for TCP, close_notify for TLS; bounded, the peer may be gone.
        let _ = tokio::time::timeout(CLOSE_GRACE, writer.shutdown()).await;
    }
}

/// Writes one message; flushes (for TLS, pushes the records out) when nothing else waits.
async fn write_one<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    flush: bool,
) -> io::Result<()> {
    writer.write_all(bytes).await?;
    if flush {
        writer.flush().await?;
    }
    Ok(())
}
