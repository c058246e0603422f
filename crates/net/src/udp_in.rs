//! A worker's UDP sockets read by its driver itself ([`Transports::claim_udp`]).
//!
//! A receive task in front of the driver costs, per datagram, a task wake-up, a channel
//! hand-over and a second poll of the socket; the driver reading its sockets directly
//! drains each wake-up's datagrams in one go and handles them in the same turn (measured in
//! `docs/performance.md`, "System calls"). The backlog it reports for admission control is
//! what it has read and not handled yet, as the channel's length was.
//!
//! Datagrams are read with `recvmmsg`, up to [`BATCH`] per system call, through `nix`
//! (the standard library, tokio and socket2 do not offer it, and this workspace forbids
//! `unsafe`). A read that returns fewer than asked for found the socket empty, so no
//! further read is made to see `EAGAIN`: at 200 calls/s that took the receive calls from
//! 10.7 to 3.8 per call (`docs/performance.md`).
//!
//! Overload: the queue holds [`QUEUE`] datagrams or [`QUEUE_BYTES`] bytes, whichever comes
//! first. Past that, what the socket still holds is
//! read only to refuse new requests with a stateless `503` and `Retry-After` on arrival
//! (when shedding is on and the source is not exempt); responses and in-dialog requests
//! are queued up to twice the size, then left in the socket buffer until there is room.
//!
//! [`Transports::claim_udp`]: crate::Transports::claim_udp

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use crate::udp_sock::UdpSock;
use bytes::Bytes;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use rollover_txn::{Peer, Transport};

use crate::inner::{Inbound, Inner};
use crate::transport::{is_icmp_error, shed, DATAGRAM_BUFFER};

/// Datagrams read ahead of the driver before new requests are shed: about 80 ms of calls
/// at 6,000 calls/s, so a driver that was off its core for a scheduler slice does not
/// take the burst it finds for overload (`docs/performance.md`, "Fewer false overloads").
pub(crate) const QUEUE: usize = 4096;

/// Bytes read ahead before new requests are shed, whatever the count: a flood of large
/// datagrams holds at most twice this (plus a batch), as a queue of ordinary ones would.
pub(crate) const QUEUE_BYTES: usize = 4 << 20;

/// Datagrams one `recvmmsg` reads at most.
const BATCH: usize = 16;

/// Room for one datagram (the largest UDP payload fits).
const SLOT: usize = DATAGRAM_BUFFER;

/// What one datagram of a batch was.
#[derive(Clone, Copy, Default)]
struct Datagram {
    len: usize,
    src: Option<SocketAddr>,
    truncated: bool,
}

/// What one `recvmmsg` read: how many datagrams (their facts in the caller's array), and
/// whether that was fewer than [`BATCH`], so the socket was found empty and its readiness
/// is cleared.
#[derive(Clone, Copy)]
struct Batch {
    count: usize,
    drained: bool,
}

/// One `recvmmsg` into `buf`'s slots, the datagrams' facts into `received`.
///
/// A short batch means the socket was empty when the call returned, so the readiness is
/// cleared then, without the extra read that would only see `EAGAIN` (one system call per
/// wake-up saved). That is safe: the runtime clears it only if no new readiness event came
/// meanwhile, and a datagram arriving later raises a new one.
fn receive_batch(
    socket: &UdpSock,
    v6: bool,
    buf: &mut [u8],
    received: &mut [Datagram; BATCH],
) -> std::io::Result<Batch> {
    HEADERS.with_borrow_mut(|[v4_headers, v6_headers]| {
        let headers = if v6 { v6_headers } else { v4_headers };
        receive_into(socket, headers, buf, received)
    })
}

thread_local! {
    /// The headers `recvmmsg` fills hold raw pointers, so they are not `Send`: kept per
    /// thread rather than in [`UdpIn`], whose driver may be a task that moves between threads.
    ///
    /// One set per address family: the kernel writes each source address's length into its
    /// header and `nix` does not set it back before the next call, so headers that held an
    /// IPv4 source (16 bytes) would cut an IPv6 one (28) short. A socket's sources are all
    /// of its own family (IPv4-mapped ones too, on an IPv6 socket), so the length a set's
    /// headers keep always fits.
    static HEADERS: RefCell<[MultiHeaders<SockaddrStorage>; 2]> = RefCell::new([
        MultiHeaders::preallocate(BATCH, None),
        MultiHeaders::preallocate(BATCH, None),
    ]);
}

fn receive_into(
    socket: &UdpSock,
    headers: &mut MultiHeaders<SockaddrStorage>,
    buf: &mut [u8],
    received: &mut [Datagram; BATCH],
) -> std::io::Result<Batch> {
    let mut out = Batch {
        count: 0,
        drained: false,
    };
    let read = socket.try_read_io(|| {
        let mut chunks = buf.chunks_mut(SLOT);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for (d, r) in received.iter_mut().zip(results) {
            *d = Datagram {
                len: r.bytes,
                src: r.address.as_ref().and_then(socket_addr),
                truncated: r.flags.contains(MsgFlags::MSG_TRUNC),
            };
            out.count += 1;
        }
        if out.count < BATCH {
            out.drained = true;
            // Clears the readiness (see above); the datagrams read are kept in `out`.
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match read {
        Ok(()) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && out.count > 0 => Ok(out),
        Err(e) => Err(e),
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// A worker's UDP sockets, read by its driver.
pub struct UdpIn {
    inner: Arc<Inner>,
    worker: usize,
    sockets: Vec<(SocketAddr, Arc<UdpSock>)>,
    buf: Vec<u8>,
    received: [Datagram; BATCH],
    queue: VecDeque<Inbound>,
    /// The bytes of the datagrams in `queue`.
    queued_bytes: usize,
    shed_count: u64,
}

impl std::fmt::Debug for UdpIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpIn")
            .field("worker", &self.worker)
            .field("sockets", &self.sockets.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl UdpIn {
    pub(crate) fn new(
        inner: Arc<Inner>,
        worker: usize,
        sockets: Vec<(SocketAddr, Arc<UdpSock>)>,
    ) -> UdpIn {
        UdpIn {
            inner,
            worker,
            sockets,
            buf: vec![0u8; BATCH * SLOT],
            received: [Datagram::default(); BATCH],
            queue: VecDeque::new(),
            queued_bytes: 0,
            shed_count: 0,
        }
    }

    /// Resolves when a socket has something to read (never when there is no socket).
    pub async fn readable(&self) {
        poll_fn(|cx| {
            let mut ready = false;
            for (_, s) in &self.sockets {
                // Every pending socket registers the waker.
                ready |= s.poll_recv_ready(cx).is_ready();
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Reads what the sockets hold into the queue (see the module documentation for what
    /// happens past [`QUEUE`]). Never waits.
    pub fn fill(&mut self) {
        for i in 0..self.sockets.len() {
            let Some((local, socket)) = self.sockets.get(i).cloned() else {
                continue;
            };
            while self.queue.len() < 2 * QUEUE && self.queued_bytes < 2 * QUEUE_BYTES {
                let v6 = local.is_ipv6();
                let got = match receive_batch(&socket, v6, &mut self.buf, &mut self.received) {
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if is_icmp_error(&e) => {
                        // Which destination it was about is not reported: Timer B/F cover it.
                        tracing::debug!(%local, error = %e, "UDP: ICMP error for an earlier datagram");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(%local, error = %e, "UDP receive");
                        break;
                    }
                };
                for slot in 0..got.count {
                    if let Some(d) = self.received.get(slot).copied() {
                        self.accept(local, &socket, slot, &d);
                    }
                }
                if got.drained {
                    break;
                }
            }
        }
    }

    /// Queues (or sheds) the datagram read into `slot` of the buffer.
    fn accept(&mut self, local: SocketAddr, socket: &UdpSock, slot: usize, d: &Datagram) {
        let Some(src) = d.src else {
            return; // not an IP source: cannot be answered
        };
        if d.len > self.inner.limits.max_message_size || d.truncated {
            tracing::debug!(%src, len = d.len, "UDP: datagram over the size limit dropped");
            return;
        }
        let Some(data) = self.buf.get(slot * SLOT..slot * SLOT + d.len) else {
            return;
        };
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // empty or CRLF keep-alive
        }
        let event = Inbound::Message {
            source: Peer {
                transport: Transport::Udp,
                addr: src,
            },
            local,
            bytes: Bytes::copy_from_slice(data),
        };
        if self.queue.len() >= QUEUE || self.queued_bytes >= QUEUE_BYTES {
            // A whole queue behind: a new request is refused now rather than left to age
            // behind the calls under way.
            if let Some(busy) = shed(&self.inner, &event) {
                if socket.try_send_to(&busy, src).is_ok() {
                    self.note_shed(local);
                }
                return;
            }
        }
        self.queued_bytes += d.len;
        self.queue.push_back(event);
    }

    fn note_shed(&mut self, local: SocketAddr) {
        self.shed_count += 1;
        if let Some(suppressed) = self.inner.logs.shed.allow() {
            tracing::info!(
                %local,
                worker = self.worker,
                refused = self.shed_count,
                suppressed,
                "overloaded: queue full, new requests refused with 503 on arrival"
            );
        }
    }

    /// The next datagram read, and how many wait behind it.
    pub fn take(&mut self) -> Option<(Inbound, usize)> {
        let event = rollover_txn::queue::take_front(&mut self.queue)?;
        if let Inbound::Message { bytes, .. } = &event {
            self.queued_bytes = self.queued_bytes.saturating_sub(bytes.len());
        }
        Some((event, self.queue.len()))
    }

    /// Whether everything read has been handed out.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
