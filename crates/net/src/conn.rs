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

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rollover_sip::{Frame, StreamFramer};
use rollover_txn::{Peer, Transport, TransportError, TxnRef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::transport::{Inbound, Inner};

/// Messages queued for one connection's writer; beyond it the connection is dropped.
pub(crate) const WRITE_QUEUE: usize = 256;

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The most a closing connection waits for its FIN / TLS close_notify to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// RFC 5626 §4.4.1: the pong answering a double-CRLF ping.
const PONG: &[u8] = b"\r\n";

/// One message waiting for a connection's writer.
pub(crate) struct Outgoing {
    bytes: Bytes,
    txn: Option<TxnRef>,
    /// A pong: its loss is nobody's send failure.
    keepalive: bool,
}

/// A table entry: how to reach one connection's tasks.
#[derive(Clone)]
struct Conn {
    id: u64,
    queue: mpsc::Sender<Outgoing>,
    close: CancellationToken,
}

/// Open (or opening) connections by remote transport and address, incoming ones included.
#[derive(Default)]
pub(crate) struct ConnTable {
    map: Mutex<HashMap<Peer, Conn>>,
    next_id: AtomicU64,
}

impl ConnTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<Peer, Conn>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open or being set up.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forgets every connection (their tasks stop with the global token).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn entry(&self, stop: &CancellationToken) -> (Conn, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue,
            close: stop.child_token(),
        };
        (conn, rx)
    }

    /// Registers an accepted connection; `None` at the connection limit.
    fn register(&self, inner: &Inner, peer: Peer) -> Option<(Conn, mpsc::Receiver<Outgoing>)> {
        let mut map = self.lock();
        if map.len() >= inner.max_connections {
            return None;
        }
        let (conn, rx) = self.entry(&inner.stop);
        if let Some(old) = map.insert(peer, conn.clone()) {
            old.close.cancel(); // same remote address: the old one is stale
        }
        Some((conn, rx))
    }

    /// Removes `peer`'s entry if it is still connection `id`.
    fn remove(&self, peer: Peer, id: u64) {
        let mut map = self.lock();
        if map.get(&peer).is_some_and(|c| c.id == id) {
            map.remove(&peer);
        }
    }
}

/// Queues `bytes` on the connection to `dest`, opening one in the background if needed.
pub(crate) fn send(inner: &Arc<Inner>, dest: Peer, bytes: Bytes, txn: Option<TxnRef>) {
    let mut item = Outgoing {
        bytes,
        txn,
        keepalive: false,
    };
    let mut map = inner.conns.lock();
    if let Some(conn) = map.get(&dest) {
        match conn.queue.try_send(item) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(o)) => {
                let conn = map.remove(&dest);
                drop(map);
                tracing::warn!(%dest, "write queue full: closing the connection");
                if let Some(conn) = conn {
                    conn.close.cancel();
                }
                fail(inner, dest, o, TransportError::Reset);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(o)) => {
                // The connection is ending: its entry is stale, open a new one.
                map.remove(&dest);
                item = o;
            }
        }
    }
    let refused = if !matches!(dest.transport, Transport::Tcp | Transport::Tls) {
        Some(TransportError::Unreachable)
    } else if dest.transport == Transport::Tls && inner.tls.is_none() {
        tracing::warn!(%dest, "TLS destination but no certificate configured");
        Some(TransportError::Tls)
    } else if map.len() >= inner.max_connections {
        tracing::warn!(%dest, limit = inner.max_connections, "connection limit reached");
        Some(TransportError::Unreachable)
    } else {
        None
    };
    if let Some(error) = refused {
        drop(map);
        fail(inner, dest, item, error);
        return;
    }
    let (conn, rx) = inner.conns.entry(&inner.stop);
    if let Err(e) = conn.queue.try_send(item) {
        // A new queue has room; this cannot happen, but is not worth a panic.
        drop(map);
        fail(inner, dest, e.into_inner(), TransportError::Reset);
        return;
    }
    map.insert(dest, conn.clone());
    drop(map);
    tokio::spawn(connect_and_run(inner.clone(), dest, conn, rx));
}

fn fail(inner: &Inner, dest: Peer, o: Outgoing, error: TransportError) {
    if !o.keepalive {
        inner.report(Inbound::SendFailed {
            dest,
            txn: o.txn,
            error,
        });
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
                tracing::warn!(%local, error = %e, "accept");
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let peer = Peer { transport, addr };
        let Some((conn, rx)) = inner.conns.register(&inner, peer) else {
            tracing::warn!(%peer, limit = inner.max_connections, "connection limit reached: closing");
            continue; // dropping `tcp` closes it
        };
        tracing::debug!(%peer, "accepted");
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY");
        }
        tokio::spawn(serve_incoming(inner.clone(), peer, local, conn, rx, tcp));
    }
}

async fn serve_incoming(
    inner: Arc<Inner>,
    peer: Peer,
    local: SocketAddr,
    conn: Conn,
    mut rx: mpsc::Receiver<Outgoing>,
    tcp: TcpStream,
) {
    if peer.transport != Transport::Tls {
        run(inner, peer, local, conn, rx, tcp).await;
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
        Some(stream) => run(inner, peer, local, conn, rx, TlsStream::from(stream)).await,
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
        Ok((local, Opened::Tcp(s))) => run(inner, peer, local, conn, rx, s).await,
        Ok((local, Opened::Tls(s))) => run(inner, peer, local, conn, rx, *s).await,
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
    let name = ServerName::IpAddress(peer.addr.ip().into());
    let stream = tls.connector.connect(name, tcp).await.map_err(|e| {
        tracing::debug!(%peer, error = %e, "TLS handshake failed");
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
async fn run<S>(
    inner: Arc<Inner>,
    peer: Peer,
    local: SocketAddr,
    conn: Conn,
    rx: mpsc::Receiver<Outgoing>,
    stream: S,
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
    read_loop(&inner, peer, local, &conn, reader, &activity).await;
    conn.close.cancel();
    inner.conns.remove(peer, conn.id);
    tracing::debug!(%peer, "connection closed");
}

async fn read_loop<R: AsyncRead + Unpin>(
    inner: &Inner,
    peer: Peer,
    local: SocketAddr,
    conn: &Conn,
    mut reader: R,
    activity: &Activity,
) {
    let mut framer = StreamFramer::new(inner.limits);
    loop {
        let deadline = activity.last() + inner.idle_timeout;
        let buf = framer.buffer_mut();
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            _ = conn.close.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                // The writer may have been busy meanwhile.
                if activity.last() + inner.idle_timeout <= Instant::now() {
                    tracing::debug!(%peer, "idle: closing");
                    return;
                }
                continue;
            }
            r = reader.read_buf(buf) => r,
        };
        match read {
            Ok(0) => {
                tracing::debug!(%peer, "closed by the peer");
                return;
            }
            Ok(_) => activity.touch(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read");
                return;
            }
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(message))) => {
                    let event = Inbound::Message {
                        source: peer,
                        local,
                        bytes: message.as_bytes().clone(),
                    };
                    if !inner.deliver(event, &conn.close).await {
                        return;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF.
                    let pong = Outgoing {
                        bytes: Bytes::from_static(PONG),
                        txn: None,
                        keepalive: true,
                    };
                    if conn.queue.try_send(pong).is_err() {
                        tracing::debug!(%peer, "write queue full: pong skipped");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Out of sync: nothing after this can be trusted (RFC 3261 §18.3).
                    tracing::info!(%peer, error = %e, "unframeable stream: closing");
                    let event = Inbound::BadStream {
                        source: peer,
                        error: e.to_string(),
                    };
                    inner.deliver(event, &conn.close).await;
                    return;
                }
            }
        }
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
