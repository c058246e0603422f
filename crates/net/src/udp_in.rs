//! A worker's UDP sockets read by its driver itself ([`Transports::claim_udp`]).
//!
//! A receive task in front of the driver costs, per datagram, a task wake-up, a channel
//! hand-over and a second poll of the socket; the driver reading its sockets directly
//! drains each wake-up's datagrams in one go and handles them in the same turn (measured in
//! `docs/performance.md`, "System calls"). The backlog it reports for admission control is
//! what it has read and not handled yet, as the channel's length was.
//!
//! Overload: the queue holds [`QUEUE`] datagrams. Past that, what the socket still holds is
//! read only to refuse new requests with a stateless `503` and `Retry-After` on arrival
//! (when shedding is on and the source is not exempt); responses and in-dialog requests
//! are queued up to twice the size, then left in the socket buffer until there is room.
//!
//! [`Transports::claim_udp`]: crate::Transports::claim_udp

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use rollover_txn::{Peer, Transport};
use tokio::net::UdpSocket;

use crate::inner::{Inbound, Inner};
use crate::transport::{is_icmp_error, shed, DATAGRAM_BUFFER};

/// Datagrams read ahead of the driver before new requests are shed (the channel's size).
pub(crate) const QUEUE: usize = 1024;

/// A worker's UDP sockets, read by its driver.
pub struct UdpIn {
    inner: Arc<Inner>,
    worker: usize,
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    buf: Vec<u8>,
    queue: VecDeque<Inbound>,
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
        sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    ) -> UdpIn {
        UdpIn {
            inner,
            worker,
            sockets,
            buf: vec![0u8; DATAGRAM_BUFFER],
            queue: VecDeque::new(),
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
            while self.queue.len() < 2 * QUEUE {
                let (len, src) = match socket.try_recv_from(&mut self.buf) {
                    Ok(r) => r,
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
                let Some(data) = self.buf.get(..len) else {
                    continue;
                };
                if data.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // empty or CRLF keep-alive
                }
                if len > self.inner.limits.max_message_size {
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
                if self.queue.len() >= QUEUE {
                    // A whole queue behind: a new request is refused now rather than left
                    // to age behind the calls under way.
                    if let Some(busy) = shed(&self.inner, &event) {
                        if socket.try_send_to(&busy, src).is_ok() {
                            self.note_shed(local);
                        }
                        continue;
                    }
                }
                self.queue.push_back(event);
            }
        }
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
        let event = self.queue.pop_front()?;
        Some((event, self.queue.len()))
    }

    /// Whether everything read has been handed out.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
