//! A UDP socket registered with the runtime for reading only.
//!
//! tokio's `UdpSocket` registers for both directions. Each datagram a socket sends frees
//! its buffer space a moment later, and the kernel reports that as a writability edge: the
//! driver then woke once more per send burst for an event nobody waits for (at 200
//! calls/s, about 1.4 of the 19 system calls per call were such `epoll_wait`s). A UDP send
//! almost never waits: it is made directly on the non-blocking socket, and in the rare
//! case the send buffer is full, the wait for room uses a duplicate descriptor registered
//! for writing for that send only.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct UdpSock {
    fd: AsyncFd<std::net::UdpSocket>,
}

impl UdpSock {
    /// Registers `socket` (made non-blocking here) with the current runtime, for reading.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<UdpSock> {
        socket.set_nonblocking(true)?;
        Ok(UdpSock {
            fd: register(socket, Interest::READABLE)?,
        })
    }

    /// Ready when there may be something to read; registers the waker otherwise.
    pub(crate) fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The guard is dropped without clearing: the readiness stays until a read sees
        // `WouldBlock` in `try_read_io`.
        self.fd.poll_read_ready(cx).map_ok(|_| ())
    }

    /// Runs a read on the socket; a `WouldBlock` from it clears the read readiness.
    pub(crate) fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, |_| f())
    }

    /// Receives one datagram, waiting for it.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            if let Ok(r) = ready.try_io(|s| s.get_ref().recv_from(buf)) {
                return r;
            }
        }
    }

    /// Sends at once; `WouldBlock` when the send buffer is full.
    pub(crate) fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }

    /// Sends, waiting for room in the send buffer if there is none.
    pub(crate) async fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        match self.try_send_to(buf, dest) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let dup = register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
        loop {
            let mut ready = dup.writable().await?;
            if let Ok(r) = ready.try_io(|s| s.get_ref().send_to(buf, dest)) {
                return r;
            }
        }
    }
}

/// `AsyncFd::with_interest` is deprecated because it cannot know that an arbitrary `T`
/// keeps one open descriptor for as long as it is registered; its replacement is `unsafe`,
/// which this crate forbids. A `std::net::UdpSocket` owns its descriptor, keeps it open
/// until it is dropped (with the registration, which is removed first) and always returns
/// the same one: the condition the replacement asks its caller to promise holds here.
#[allow(deprecated)]
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

impl AsRawFd for UdpSock {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways on loopback; a socket that only sent is not reported readable. (The wake-up
    /// saved is counted by `bench/proxy-vs-kamailio.sh` with `SYSCALLS=1`.)
    #[tokio::test]
    async fn sends_and_receives_on_loopback() {
        let a = UdpSock::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let b = UdpSock::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let b_addr = b.fd.get_ref().local_addr().unwrap();
        let a_addr = a.fd.get_ref().local_addr().unwrap();
        for _ in 0..50 {
            a.try_send_to(b"ping", b_addr).unwrap();
        }
        a.send_to(b"last", b_addr).await.unwrap();
        let mut buf = [0u8; 16];
        for _ in 0..50 {
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], a_addr));
        }
        assert_eq!(b.recv_from(&mut buf).await.unwrap().0, 4);
        // `a` sent 51 datagrams and received none: it must not look readable.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let ready = std::future::poll_fn(|cx| Poll::Ready(a.poll_recv_ready(cx).is_ready())).await;
        assert!(!ready, "a send made the socket look readable");
    }
}
