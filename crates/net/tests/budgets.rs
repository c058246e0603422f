#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! Connection budgets and deadlines on loopback: a full incoming budget leaves outgoing
//! connections working, the per-IP limit, the header deadline (slowloris), and pings that
//! do not keep an unused connection open. Clients bind other 127.x addresses to appear as
//! other hosts. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rollover_net::{Inbound, NetConfig, Transports};
use rollover_txn::{Peer, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep, timeout, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn message(n: u32) -> Bytes {
    message_with_body(n, &format!("body {n}"))
}

fn message_with_body(n: u32, body: &str) -> Bytes {
    Bytes::from(format!(
        "OPTIONS sip:b@example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:b@example.com>\r\n\
         From: <sip:a@example.com>;tag=t{n}\r\n\
         Call-ID: call-{n}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// A TCP listener on 127.0.0.1 with `cfg`'s budgets and timeouts.
async fn bind(cfg: NetConfig) -> (Transports, Receiver<Inbound>, SocketAddr) {
    let (t, rx) = Transports::bind(NetConfig {
        listen: vec!["tcp:127.0.0.1:0".parse().unwrap()],
        ..cfg
    })
    .await
    .unwrap();
    let addr = t.local_addr(Transport::Tcp).unwrap();
    (t, rx, addr)
}

/// The next message: (source, bytes).
async fn next_message(rx: &mut Receiver<Inbound>) -> (Peer, Bytes) {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(Inbound::Message { source, bytes, .. })) => (source, bytes),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A connection to `to` from `ip` (a loopback address), or `None` where the system has no
/// such address (only Linux routes all of 127.0.0.0/8 by default).
async fn connect_from(ip: &str, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    if let Err(e) = socket.bind(SocketAddr::new(ip.parse().unwrap(), 0)) {
        eprintln!("skipped: cannot bind {ip} ({e})");
        return None;
    }
    Some(socket.connect(to).await.unwrap())
}

/// Whether the server closes the connection within `limit`; anything it sends meanwhile
/// (pongs) is dropped.
async fn closed_within<R: AsyncRead + Unpin>(reader: &mut R, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    timeout(limit, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends a double-CRLF ping; `false` if the connection turns out closed instead of ponging.
async fn ping(s: &mut TcpStream) -> bool {
    if s.write_all(b"\r\n\r\n").await.is_err() {
        return false;
    }
    let mut pong = [0u8; 2];
    match timeout(Duration::from_secs(1), s.read_exact(&mut pong)).await {
        Ok(Ok(_)) => {
            assert_eq!(&pong, b"\r\n");
            true
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("no pong and no close within 1 s"),
    }
}

#[tokio::test]
async fn a_full_incoming_budget_leaves_outgoing_connections_working() {
    timeout(WAIT * 3, async {
        let (b, mut b_rx, b_addr) = bind(NetConfig {
            max_incoming_connections: 50,
            max_outgoing_connections: 50,
            max_connections_per_ip: 10,
            ..NetConfig::default()
        })
        .await;
        // 50 strangers from 8 addresses, 7 at most each: within the per-IP limit.
        let mut held = Vec::new();
        for i in 0..50u32 {
            let ip = format!("127.0.0.{}", 2 + i % 8);
            let Some(s) = connect_from(&ip, b_addr).await else {
                return;
            };
            held.push(s);
        }
        let mut extra = connect_from("127.0.0.10", b_addr).await.unwrap();
        assert!(
            closed_within(&mut extra, WAIT).await,
            "the 51st incoming connection is closed: the budget is full"
        );
        held[0].write_all(&message(1)).await.unwrap();
        assert_eq!(next_message(&mut b_rx).await.1, message(1));

        // A target is still reached.
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = Peer {
            transport: Transport::Tcp,
            addr: target.local_addr().unwrap(),
        };
        b.send(dest, message(2), None);
        let (mut accepted, _) = timeout(WAIT, target.accept())
            .await
            .expect("the outgoing connection was not opened")
            .unwrap();
        let mut got = vec![0u8; message(2).len()];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message(2));
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn one_address_is_held_to_the_per_ip_limit() {
    timeout(WAIT * 3, async {
        let (b, mut b_rx, b_addr) = bind(NetConfig {
            max_connections_per_ip: 3,
            ..NetConfig::default()
        })
        .await;
        let mut from_a = Vec::new();
        for n in 0..3u32 {
            let Some(mut s) = connect_from("127.0.0.2", b_addr).await else {
                return;
            };
            s.write_all(&message(n)).await.unwrap();
            assert_eq!(next_message(&mut b_rx).await.1, message(n));
            from_a.push(s);
        }
        let mut fourth = connect_from("127.0.0.2", b_addr).await.unwrap();
        assert!(
            closed_within(&mut fourth, WAIT).await,
            "the 4th connection from one address is closed"
        );

        // Another address is not affected, nor are the first three.
        let mut other = connect_from("127.0.0.3", b_addr).await.unwrap();
        other.write_all(&message(10)).await.unwrap();
        let (source, bytes) = next_message(&mut b_rx).await;
        assert_eq!(
            (source.addr, bytes),
            (other.local_addr().unwrap(), message(10))
        );
        from_a[0].write_all(&message(11)).await.unwrap();
        assert_eq!(next_message(&mut b_rx).await.1, message(11));

        // A closed connection gives its slot back (once the server has seen it close).
        drop(from_a.pop());
        let mut admitted = None;
        for _ in 0..40 {
            let mut s = connect_from("127.0.0.2", b_addr).await.unwrap();
            if !closed_within(&mut s, Duration::from_millis(100)).await {
                admitted = Some(s);
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
        let mut again = admitted.expect("the freed slot is never given back");
        again.write_all(&message(12)).await.unwrap();
        assert_eq!(next_message(&mut b_rx).await.1, message(12));
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_trickled_message_is_cut_at_the_header_deadline() {
    timeout(WAIT * 3, async {
        let (b, mut b_rx, b_addr) = bind(NetConfig {
            header_timeout: Duration::from_secs(1),
            unused_connection_timeout: Duration::from_secs(60),
            ..NetConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(b_addr).await.unwrap();

        // Each message within the deadline: 1.2 s of sending in all is fine, the deadline
        // counts per message.
        for n in 1..=2u32 {
            let m = message(n);
            for piece in m.chunks(m.len() / 3 + 1) {
                s.write_all(piece).await.unwrap();
                sleep(Duration::from_millis(300)).await;
            }
            assert_eq!(next_message(&mut b_rx).await.1, m);
        }
        // Time between messages does not count either.
        sleep(Duration::from_millis(500)).await;

        // One byte every 200 ms: the message would take a minute.
        let (mut rd, mut wr) = s.into_split();
        let m = message(3);
        let first_byte = Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in m.iter().take(25) {
                if wr.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sleep(Duration::from_millis(200)).await;
            }
        });
        assert!(
            closed_within(&mut rd, Duration::from_secs(3)).await,
            "still open 3 s after the first byte"
        );
        let took = first_byte.elapsed();
        assert!(took >= Duration::from_millis(800), "closed after {took:?}");
        trickle.abort();
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pings_do_not_keep_an_unused_connection_open() {
    timeout(WAIT * 2, async {
        let (b, _b_rx, b_addr) = bind(NetConfig {
            unused_connection_timeout: Duration::from_secs(1),
            connection_idle_timeout: Duration::from_secs(10),
            ..NetConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(b_addr).await.unwrap();
        let accepted = Instant::now();
        let mut closed = None;
        for _ in 0..20 {
            if !ping(&mut s).await {
                closed = Some(accepted.elapsed());
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
        let took = closed.expect("pinged for 4 s and still open");
        assert!(
            (Duration::from_millis(800)..Duration::from_secs(3)).contains(&took),
            "closed after {took:?}"
        );
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pings_keep_a_used_connection_open_until_idle() {
    timeout(WAIT * 2, async {
        let (b, mut b_rx, b_addr) = bind(NetConfig {
            unused_connection_timeout: Duration::from_millis(500),
            connection_idle_timeout: Duration::from_secs(1),
            ..NetConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(b_addr).await.unwrap();
        s.write_all(&message(1)).await.unwrap();
        assert_eq!(next_message(&mut b_rx).await.1, message(1));

        // 1.6 s of pings: past the unused timeout and past one idle timeout.
        let started = Instant::now();
        let last = loop {
            assert!(
                ping(&mut s).await,
                "closed after {:?} of pings",
                started.elapsed()
            );
            if started.elapsed() >= Duration::from_millis(1600) {
                break Instant::now();
            }
            sleep(Duration::from_millis(200)).await;
        };

        // Silent from the last pong on: the idle timeout applies.
        assert!(closed_within(&mut s, Duration::from_secs(3)).await);
        let took = last.elapsed();
        assert!(took >= Duration::from_millis(800), "closed after {took:?}");
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_message_larger_than_one_read_arrives_whole() {
    timeout(WAIT, async {
        let (b, mut b_rx, b_addr) = bind(NetConfig::default()).await;
        let mut s = TcpStream::connect(b_addr).await.unwrap();
        let big = message_with_body(1, &"x".repeat(50_000));
        let (head, tail) = big.split_at(100);
        s.write_all(head).await.unwrap();
        sleep(Duration::from_millis(20)).await;
        s.write_all(tail).await.unwrap();
        s.write_all(&message(2)).await.unwrap();
        assert_eq!(next_message(&mut b_rx).await.1, big);
        assert_eq!(next_message(&mut b_rx).await.1, message(2));
        b.shutdown();
    })
    .await
    .unwrap();
}
