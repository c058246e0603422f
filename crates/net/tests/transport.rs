#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The transports on loopback: UDP, TCP and TLS round trips, connection reuse, framing,
//! failures, limits. Every wait is bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rollover_net::{Inbound, ListenSpec, NetConfig, NetError, SpecProblem, TlsFiles, Transports};
use rollover_sip::Message;
use rollover_txn::{Config, Peer, Transport, TransportError, TxnLayer, TxnRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::time::{timeout, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn message(n: u32) -> Bytes {
    let body = format!("body {n}");
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

fn config(listen: &[&str]) -> NetConfig {
    NetConfig {
        listen: listen.iter().map(|s| s.parse().unwrap()).collect(),
        ..NetConfig::default()
    }
}

async fn bind(listen: &[&str]) -> (Transports, Receiver<Inbound>) {
    Transports::bind(config(listen)).await.unwrap()
}

async fn next(rx: &mut Receiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("no inbound event in time")
        .expect("inbound channel closed")
}

/// The next message: (source, local, bytes).
async fn next_message(rx: &mut Receiver<Inbound>) -> (Peer, SocketAddr, Bytes) {
    match next(rx).await {
        Inbound::Message {
            source,
            local,
            bytes,
        } => (source, local, bytes),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A port on 127.0.0.1 with nothing listening.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A real client transaction handle, to check it comes back with a failure.
fn client_txn(dest: Peer) -> TxnRef {
    let mut layer = TxnLayer::new(Config::default());
    let now = Instant::now().into_std();
    let request = Message::parse(message(99)).unwrap();
    TxnRef::Client(layer.send_request(now, request, dest).unwrap())
}

#[tokio::test]
async fn udp_round_trip() {
    timeout(WAIT, async {
        let (a, mut a_rx) = bind(&["udp:127.0.0.1:0"]).await;
        let (b, mut b_rx) = bind(&["udp:127.0.0.1:0"]).await;
        let a_addr = a.local_addr(Transport::Udp).unwrap();
        let b_addr = b.local_addr(Transport::Udp).unwrap();
        assert_ne!(b_addr.port(), 0, "port 0 resolves to the bound port");
        assert_eq!(a.local_addr(Transport::Tcp), None);

        let to_b = Peer {
            transport: Transport::Udp,
            addr: b_addr,
        };
        a.send(to_b, message(1), None);
        let (source, local, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(1));
        assert_eq!(local, b_addr);
        // Unconnected socket: we send from the listening port.
        assert_eq!(source.addr, a_addr);
        assert_eq!(source.transport, Transport::Udp);

        b.send(source, message(2), None);
        let (source, local, bytes) = next_message(&mut a_rx).await;
        assert_eq!((source, local, bytes), (to_b, a_addr, message(2)));
        a.shutdown();
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn udp_to_a_closed_port_leaves_the_socket_working() {
    timeout(WAIT, async {
        let (a, mut a_rx) = bind(&["udp:127.0.0.1:0"]).await;
        let (b, mut b_rx) = bind(&["udp:127.0.0.1:0"]).await;
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = Peer {
            transport: Transport::Udp,
            addr: gone.local_addr().unwrap(),
        };
        // ICMP port unreachable comes back; whatever the system makes of it, later
        // sends and receives on the same socket go on.
        for n in 0..3 {
            a.send(gone, message(n), None);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let to_b = Peer {
            transport: Transport::Udp,
            addr: b.local_addr(Transport::Udp).unwrap(),
        };
        a.send(to_b, message(1), None);
        let (source, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(1));
        b.send(source, message(2), None);
        let (_, _, bytes) = next_message(&mut a_rx).await;
        assert_eq!(bytes, message(2));
        a.shutdown();
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tcp_round_trip_reuses_the_connection() {
    timeout(WAIT, async {
        // A has no listener at all: the reply can only come back on A's own connection.
        let (a, mut a_rx) = bind(&[]).await;
        let (b, mut b_rx) = bind(&["tcp:127.0.0.1:0"]).await;
        let b_addr = b.local_addr(Transport::Tcp).unwrap();
        let to_b = Peer {
            transport: Transport::Tcp,
            addr: b_addr,
        };
        a.send(to_b, message(1), None);
        a.send(to_b, message(2), None);
        let (first, local, bytes) = next_message(&mut b_rx).await;
        assert_eq!((local, bytes), (b_addr, message(1)));
        let (second, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(2));
        assert_eq!(first, second, "both messages on one connection");
        assert_eq!(first.transport, Transport::Tcp);

        // RFC 3261 §18.2.2: the response goes back on the accepted connection.
        b.send(first, message(3), None);
        let (source, local, bytes) = next_message(&mut a_rx).await;
        assert_eq!(source, to_b);
        assert_eq!(bytes, message(3));
        assert_eq!(
            local.ip(),
            b_addr.ip(),
            "an outgoing connection's own address"
        );

        // And the connection stays in use both ways.
        a.send(to_b, message(4), None);
        let (again, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!((again, bytes), (first, message(4)));
        a.shutdown();
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tcp_framing_split_and_batched_writes_and_ping() {
    timeout(WAIT, async {
        let (b, mut b_rx) = bind(&["tcp:127.0.0.1:0"]).await;
        let b_addr = b.local_addr(Transport::Tcp).unwrap();
        let mut client = TcpStream::connect(b_addr).await.unwrap();

        let one = message(1);
        let (head, tail) = one.split_at(40);
        client.write_all(head).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(tail).await.unwrap();

        let mut both = message(2).to_vec();
        both.extend_from_slice(&message(3));
        client.write_all(&both).await.unwrap();

        for n in 1..=3 {
            let (source, _, bytes) = next_message(&mut b_rx).await;
            assert_eq!(bytes, message(n));
            assert_eq!(source.addr, client.local_addr().unwrap());
        }

        // RFC 5626: a double-CRLF ping is answered with a single CRLF.
        client.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 2];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"\r\n");
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_tcp_connect_is_reported_at_once() {
    timeout(WAIT, async {
        let (a, mut a_rx) = bind(&[]).await;
        let dest = Peer {
            transport: Transport::Tcp,
            addr: closed_port(),
        };
        let txn = client_txn(dest);
        let started = Instant::now();
        a.send(dest, message(1), Some(txn));
        a.send(dest, message(2), None); // queued behind the connect: reported too
        match next(&mut a_rx).await {
            Inbound::SendFailed {
                dest: d,
                txn: t,
                error,
            } => {
                assert!(
                    started.elapsed() < Duration::from_millis(50),
                    "took {:?}",
                    started.elapsed()
                );
                assert_eq!((d, t, error), (dest, Some(txn), TransportError::Refused));
            }
            other => panic!("expected SendFailed, got {other:?}"),
        }
        match next(&mut a_rx).await {
            Inbound::SendFailed { txn, error, .. } => {
                assert_eq!((txn, error), (None, TransportError::Refused));
            }
            other => panic!("expected SendFailed, got {other:?}"),
        }
        a.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn junk_on_a_stream_closes_it_and_the_listener_goes_on() {
    timeout(WAIT, async {
        let (b, mut b_rx) = bind(&["tcp:127.0.0.1:0"]).await;
        let b_addr = b.local_addr(Transport::Tcp).unwrap();

        let mut bad = TcpStream::connect(b_addr).await.unwrap();
        bad.write_all(b"HELLO THERE\r\nNo-Length: here\r\n\r\n")
            .await
            .unwrap();
        match next(&mut b_rx).await {
            Inbound::BadStream { source, error } => {
                assert_eq!(source.addr, bad.local_addr().unwrap());
                assert!(!error.is_empty());
            }
            other => panic!("expected BadStream, got {other:?}"),
        }
        let mut rest = Vec::new();
        let read = bad.read_to_end(&mut rest).await;
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "the connection is closed"
        );

        let mut good = TcpStream::connect(b_addr).await.unwrap();
        good.write_all(&message(7)).await.unwrap();
        let (_, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(7));
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_connection_is_closed() {
    timeout(WAIT, async {
        let (b, _b_rx) = Transports::bind(NetConfig {
            connection_idle_timeout: Duration::from_millis(100),
            ..config(&["tcp:127.0.0.1:0"])
        })
        .await
        .unwrap();
        let mut client = TcpStream::connect(b.local_addr(Transport::Tcp).unwrap())
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(90));
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limits_are_closed() {
    timeout(WAIT, async {
        let (b, mut b_rx) = Transports::bind(NetConfig {
            max_incoming_connections: 1,
            max_outgoing_connections: 1,
            ..config(&["tcp:127.0.0.1:0"])
        })
        .await
        .unwrap();
        let b_addr = b.local_addr(Transport::Tcp).unwrap();
        let mut first = TcpStream::connect(b_addr).await.unwrap();
        first.write_all(&message(1)).await.unwrap();
        next_message(&mut b_rx).await;

        let mut second = TcpStream::connect(b_addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = second.read(&mut buf).await;
        assert!(matches!(read, Ok(0)) || read.is_err(), "refused: {read:?}");

        // One outgoing connection fits beside the incoming one; a second one fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = Peer {
            transport: Transport::Tcp,
            addr: listener.local_addr().unwrap(),
        };
        b.send(open, message(2), None);
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut got = vec![0u8; message(2).len()];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message(2));

        let dest = Peer {
            transport: Transport::Tcp,
            addr: closed_port(),
        };
        b.send(dest, message(3), None);
        match next(&mut b_rx).await {
            Inbound::SendFailed { dest: d, error, .. } => {
                assert_eq!((d, error), (dest, TransportError::Unreachable));
            }
            other => panic!("expected SendFailed, got {other:?}"),
        }
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn full_write_queue_drops_the_connection() {
    timeout(WAIT, async {
        let (a, mut a_rx) = bind(&[]).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = Peer {
            transport: Transport::Tcp,
            addr: listener.local_addr().unwrap(),
        };
        // Sends do not yield: on this single-threaded runtime the connection is still
        // being opened, so the queue fills up.
        let txn = client_txn(dest);
        for n in 0..256 {
            a.send(dest, message(n), None);
        }
        a.send(dest, message(256), Some(txn));
        match next(&mut a_rx).await {
            Inbound::SendFailed { txn: t, error, .. } => {
                assert_eq!((t, error), (Some(txn), TransportError::Reset));
            }
            other => panic!("expected SendFailed, got {other:?}"),
        }
        a.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ipv6_loopback_round_trip() {
    timeout(WAIT, async {
        let (b, mut b_rx) = match Transports::bind(config(&["udp:[::1]:0", "tcp:[::1]:0"])).await {
            Ok(t) => t,
            Err(NetError::Bind { source, .. }) => {
                eprintln!("skipped: no IPv6 loopback ({source})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let (a, mut a_rx) = bind(&["udp:[::1]:0"]).await;
        for transport in [Transport::Udp, Transport::Tcp] {
            let dest = Peer {
                transport,
                addr: b.local_addr(transport).unwrap(),
            };
            assert!(dest.addr.is_ipv6());
            a.send(dest, message(1), None);
            let (source, _, bytes) = next_message(&mut b_rx).await;
            assert_eq!(bytes, message(1));
            b.send(source, message(2), None);
            let (source, _, bytes) = next_message(&mut a_rx).await;
            assert_eq!((source, bytes), (dest, message(2)));
        }
        a.shutdown();
        b.shutdown();
    })
    .await
    .unwrap();
}

/// A directory removed when the test that made it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files.
fn tls_files() -> TlsFiles {
    let dir = std::env::temp_dir().join(format!("rollover-net-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
    files
}

#[tokio::test]
async fn tls_round_trip() {
    timeout(WAIT, async {
        let files = tls_files();
        let _gone = RemoveOnDrop(files.cert.parent().unwrap().to_owned());
        let with_tls = |listen: &[&str]| NetConfig {
            tls: Some(files.clone()),
            ..config(listen)
        };
        let (a, mut a_rx) = Transports::bind(with_tls(&[])).await.unwrap();
        let (b, mut b_rx) = Transports::bind(with_tls(&["tls:127.0.0.1:0"]))
            .await
            .unwrap();
        let to_b = Peer {
            transport: Transport::Tls,
            addr: b.local_addr(Transport::Tls).unwrap(),
        };
        a.send(to_b, message(1), None);
        a.send(to_b, message(2), None);
        let (source, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(1));
        assert_eq!(source.transport, Transport::Tls);
        let (again, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!((again, bytes), (source, message(2)));

        b.send(source, message(3), None);
        let (from, _, bytes) = next_message(&mut a_rx).await;
        assert_eq!((from, bytes), (to_b, message(3)));
        a.shutdown();
        b.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tls_needs_a_certificate() {
    timeout(WAIT, async {
        let err = Transports::bind(config(&["tls:127.0.0.1:0"]))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::TlsRequired { .. }), "{err}");

        let (a, mut a_rx) = bind(&[]).await;
        let dest = Peer {
            transport: Transport::Tls,
            addr: closed_port(),
        };
        a.send(dest, message(1), None);
        match next(&mut a_rx).await {
            Inbound::SendFailed { error, .. } => assert_eq!(error, TransportError::Tls),
            other => panic!("expected SendFailed, got {other:?}"),
        }

        let missing = TlsFiles {
            cert: PathBuf::from("/nonexistent/cert.pem"),
            key: PathBuf::from("/nonexistent/key.pem"),
        };
        let err = Transports::bind(NetConfig {
            tls: Some(missing),
            ..NetConfig::default()
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        a.shutdown();
    })
    .await
    .unwrap();
}

#[test]
fn listen_spec_parsing() {
    let ok: ListenSpec = "tls:0.0.0.0:5061".parse().unwrap();
    assert_eq!(ok.transport, Transport::Tls);
    assert_eq!(ok.addr, "0.0.0.0:5061".parse().unwrap());
    assert_eq!(
        "UDP:[::1]:5060".parse::<ListenSpec>().unwrap().to_string(),
        "udp:[::1]:5060"
    );

    let problem = |s: &str| match s.parse::<ListenSpec>() {
        Err(NetError::ListenSpec { input, problem }) => {
            assert_eq!(input, s);
            problem
        }
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(problem("127.0.0.1:5060"), SpecProblem::MissingTransport);
    assert_eq!(problem("[::1]:5060"), SpecProblem::MissingTransport);
    assert_eq!(problem("udp"), SpecProblem::MissingTransport);
    assert_eq!(problem(":5060"), SpecProblem::MissingTransport);
    assert_eq!(
        problem("sctp:127.0.0.1:5060"),
        SpecProblem::UnknownTransport("sctp".into())
    );
    assert_eq!(
        problem("udp:localhost:5060"),
        SpecProblem::BadAddress("localhost:5060".into())
    );
    assert_eq!(
        problem("tcp:[::1]"),
        SpecProblem::BadAddress("[::1]".into())
    );
    assert_eq!(
        problem("tcp:127.0.0.1:99999"),
        SpecProblem::BadAddress("127.0.0.1:99999".into())
    );
    let text = "sctp:127.0.0.1:5060"
        .parse::<ListenSpec>()
        .unwrap_err()
        .to_string();
    assert!(text.contains("\"sctp\""), "{text}");
    let text = "udp:localhost:5060"
        .parse::<ListenSpec>()
        .unwrap_err()
        .to_string();
    assert!(text.contains("localhost:5060"), "{text}");
}

/// A self-signed certificate naming only `host` (no IP address), as PEM files.
fn tls_files_for(host: &str) -> TlsFiles {
    let dir = std::env::temp_dir().join(format!("rollover-net-tls-{}-{host}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
    files
}

#[tokio::test]
async fn tls_verifies_the_sip_domain_a_target_named() {
    timeout(WAIT, async {
        // The peer's certificate names sip.example.test only (RFC 5922: the domain, not the
        // address, is what a TLS peer proves).
        let files = tls_files_for("sip.example.test");
        let _gone = RemoveOnDrop(files.cert.parent().unwrap().to_owned());
        let with_tls = |listen: &[&str]| NetConfig {
            tls: Some(files.clone()),
            ..config(listen)
        };
        let (b, mut b_rx) = Transports::bind(with_tls(&["tls:127.0.0.1:0"]))
            .await
            .unwrap();
        let to_b = Peer {
            transport: Transport::Tls,
            addr: b.local_addr(Transport::Tls).unwrap(),
        };
        // Reached by address only: the certificate does not name 127.0.0.1, refused.
        let (a, mut a_rx) = Transports::bind(with_tls(&[])).await.unwrap();
        let tx = client_txn(to_b);
        a.send(to_b, message(1), Some(tx));
        match next(&mut a_rx).await {
            Inbound::SendFailed { error, .. } => assert_eq!(error, TransportError::Tls),
            other => panic!("{other:?}"),
        }
        // Reached through the name the target gave: verified, and it arrives.
        let (c, _c_rx) = Transports::bind(with_tls(&[])).await.unwrap();
        c.tls_names().insert(to_b.addr, "sip.example.test");
        c.send(to_b, message(2), None);
        let (_, _, bytes) = next_message(&mut b_rx).await;
        assert_eq!(bytes, message(2));
        for t in [a, b, c] {
            t.shutdown();
        }
    })
    .await
    .unwrap();
}

/// A new INVITE (`to_tag` empty) or one inside a dialog (`;tag=…`) from `me`, numbered `n`.
fn shed_invite(me: SocketAddr, n: u32, to_tag: &str) -> String {
    format!(
        "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-s{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:b@example.com>{to_tag}\r\nFrom: <sip:a@example.com>;tag=f{n}\r\n\
         Call-ID: shed-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Counts the 503s `caller` gets until it has heard nothing for `quiet`; each must carry
/// `Retry-After: retry_after`.
async fn count_503s(caller: &tokio::net::UdpSocket, quiet: Duration, retry_after: u32) -> u32 {
    let mut refused = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((len, _))) = timeout(quiet, caller.recv_from(&mut buf)).await {
        let m = Message::parse(Bytes::copy_from_slice(&buf[..len])).unwrap();
        assert_eq!(m.status(), Some(503));
        assert_eq!(m.retry_after().unwrap().unwrap().seconds, retry_after);
        refused += 1;
    }
    refused
}

/// A driver that has fallen a whole queue behind: new requests arriving over UDP are
/// answered 503 with Retry-After on arrival; responses and in-dialog requests wait their
/// turn; an exempt source waits too.
#[tokio::test]
async fn a_full_queue_sheds_new_requests_with_503() {
    let exempt = std::net::IpAddr::from([127, 0, 0, 9]);
    let cfg = NetConfig {
        shed: Some(rollover_net::Shed {
            retry_after: 9,
            exempt: std::sync::Arc::new(move |ip| ip == exempt),
        }),
        ..config(&["udp:127.0.0.1:0"])
    };
    let (t, mut rx) = Transports::bind(cfg).await.unwrap();
    let proxy = t.local_addr(Transport::Udp).unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = caller.local_addr().unwrap();
    let invite = |n: u32, to_tag: &str| shed_invite(me, n, to_tag);
    // Nobody reads the queue: 1024 requests fill it; the rest are refused as they come.
    let total = 1100u32;
    for n in 0..total {
        caller
            .send_to(invite(n, "").as_bytes(), proxy)
            .await
            .unwrap();
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let refused = count_503s(&caller, Duration::from_millis(500), 9).await;
    let mut buf = vec![0u8; 4096];
    assert!(
        (50..=76).contains(&refused),
        "about total - 1024 refused, got {refused}"
    );
    // A trusted (exempt) source is not refused either: its request waits its turn.
    let trusted = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    trusted
        .send_to(invite(6000, "").as_bytes(), proxy)
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(300), trusted.recv_from(&mut buf))
            .await
            .is_err(),
        "an exempt source is never shed"
    );
    // A request inside a dialog is not refused: it waits for room.
    caller
        .send_to(invite(5000, ";tag=x").as_bytes(), proxy)
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(300), caller.recv_from(&mut buf))
            .await
            .is_err(),
        "an in-dialog request is never shed"
    );
    // Once the driver reads, everything queued arrives, the waiting one included.
    let mut got = 0;
    while let Ok(Some(Inbound::Message { bytes, .. })) =
        timeout(Duration::from_millis(500), rx.recv()).await
    {
        got += 1;
        let _ = bytes;
    }
    assert_eq!(
        got,
        total - refused + 2,
        "the trusted and in-dialog ones too"
    );
    t.shutdown();
}

/// A UDP listener read by its driver (`claim_udp`, how `driver::run` reads), shedding new
/// requests with `Retry-After: 7`, its address, and a caller's socket. The queue is
/// returned too: dropping it would stop the transports.
async fn shedding_reader() -> (
    Transports,
    Receiver<Inbound>,
    rollover_net::UdpIn,
    SocketAddr,
    tokio::net::UdpSocket,
) {
    let cfg = NetConfig {
        shed: Some(rollover_net::Shed {
            retry_after: 7,
            exempt: std::sync::Arc::new(|_| false),
        }),
        ..config(&["udp:127.0.0.1:0"])
    };
    let (t, rx) = Transports::bind(cfg).await.unwrap();
    let udp = t.claim_udp();
    let proxy = t.local_addr(Transport::Udp).unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (t, rx, udp, proxy, caller)
}

/// The same when the driver reads its sockets itself (`claim_udp`, how `driver::run`
/// reads): a datagram past a whole queue read ahead is a new request refused with 503 on
/// arrival, while responses and in-dialog requests are still queued for it.
#[tokio::test]
async fn a_driver_a_whole_queue_behind_sheds_new_requests_with_503() {
    let (t, _rx, mut udp, proxy, caller) = shedding_reader().await;
    let me = caller.local_addr().unwrap();
    let invite = |n: u32, to_tag: &str| shed_invite(me, n, to_tag);
    // 4,200 new requests, then one inside a dialog, read ahead as they come (in rounds:
    // a socket buffer holds fewer than a whole queue of them), none handled.
    let total = 4200u32;
    for n in 0..total {
        caller
            .send_to(invite(n, "").as_bytes(), proxy)
            .await
            .unwrap();
        if n % 500 == 499 {
            udp.fill();
        }
    }
    caller
        .send_to(invite(9000, ";tag=x").as_bytes(), proxy)
        .await
        .unwrap();
    udp.fill();
    let mut queued = 0;
    let mut last_backlog = usize::MAX;
    while let Some((event, backlog)) = udp.take() {
        assert!(matches!(event, Inbound::Message { .. }));
        assert!(backlog < last_backlog, "the backlog counts down");
        last_backlog = backlog;
        queued += 1;
    }
    let refused = count_503s(&caller, Duration::from_millis(300), 7).await;
    assert_eq!(queued, 4096 + 1, "a whole queue, and the in-dialog request");
    assert_eq!(refused, total - 4096);
    t.shutdown();
}

/// Large datagrams fill the read-ahead by their bytes before their count: past 4 MiB queued,
/// new requests are refused as they arrive, however few datagrams that is.
#[tokio::test]
async fn a_read_ahead_full_of_bytes_sheds_new_requests_with_503() {
    let (t, _rx, mut udp, proxy, caller) = shedding_reader().await;
    let me = caller.local_addr().unwrap();
    // Each request carries a body that brings it to 40,000 bytes: 105 of them hold less
    // than 4 MiB (4,194,304 bytes), the 106th would go past.
    let big = |n: u32| {
        let invite = shed_invite(me, n, "");
        let head = invite.trim_end_matches("Content-Length: 0\r\n\r\n");
        let body = 40_000 - head.len() - "Content-Length: 00000\r\n\r\n".len();
        format!(
            "{head}Content-Length: {body:05}\r\n\r\n{}",
            "b".repeat(body)
        )
    };
    assert_eq!(big(0).len(), 40_000);
    let total = 120u32;
    for n in 0..total {
        caller.send_to(big(n).as_bytes(), proxy).await.unwrap();
        if n % 20 == 19 {
            // The runtime sees the socket readable only when it turns.
            tokio::task::yield_now().await;
            udp.fill();
        }
    }
    tokio::task::yield_now().await;
    udp.fill();
    let mut queued = 0;
    while udp.take().is_some() {
        queued += 1;
    }
    let refused = count_503s(&caller, Duration::from_millis(300), 7).await;
    assert_eq!(queued, 105, "4 MiB of requests");
    assert_eq!(refused, total - 105);
    t.shutdown();
}

/// What the driver's reader hands out, source and bytes, until at least `n` have come
/// (each wait for the socket bounded).
async fn read_at_least(
    udp: &mut rollover_net::UdpIn,
    n: usize,
    what: &str,
) -> Vec<(SocketAddr, Bytes)> {
    let mut got = Vec::new();
    while got.len() < n {
        timeout(WAIT, udp.readable())
            .await
            .unwrap_or_else(|_| panic!("{what}: not woken after {} datagrams", got.len()));
        udp.fill();
        while let Some((event, _)) = udp.take() {
            match event {
                Inbound::Message { source, bytes, .. } => got.push((source.addr, bytes)),
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }
    got
}

/// The driver reads up to 16 datagrams per system call, and a short read clears the
/// socket's readiness without a last read that finds it empty: every datagram sent after
/// that must wake it again, and a burst longer than one read must be read whole.
#[tokio::test]
async fn a_driver_reading_in_batches_gets_every_datagram_and_is_woken_for_later_ones() {
    let (t, _rx) = bind(&["udp:127.0.0.1:0"]).await;
    let mut udp = t.claim_udp();
    let proxy = t.local_addr(Transport::Udp).unwrap();
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sender.local_addr().unwrap();
    for (round, burst) in [1u32, 3, 16, 17, 40, 1].into_iter().enumerate() {
        let first = round as u32 * 100;
        for n in first..first + burst {
            sender.send_to(&message(n), proxy).await.unwrap();
        }
        let got = read_at_least(&mut udp, burst as usize, &format!("round {round}")).await;
        assert_eq!(got.len(), burst as usize, "nothing more than was sent");
        for (n, (source, bytes)) in (first..).zip(got) {
            assert_eq!(source, me);
            assert_eq!(bytes, message(n), "in order, whole");
        }
    }
    t.shutdown();
}

/// The driver's batched reads after an ICMP port unreachable (the next read reports
/// ECONNREFUSED once) and from an IPv6 source: the socket keeps working, and each datagram
/// comes with its sender's address.
#[tokio::test]
async fn a_driver_reading_in_batches_survives_icmp_errors_and_reads_ipv6_sources() {
    for (listen, peer) in [
        ("udp:127.0.0.1:0", "127.0.0.1:0"),
        ("udp:[::1]:0", "[::1]:0"),
    ] {
        let (t, _rx) = match Transports::bind(config(&[listen])).await {
            Ok(t) => t,
            Err(NetError::Bind { source, .. }) if listen.contains("::1") => {
                eprintln!("skipped IPv6: no loopback ({source})");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let mut udp = t.claim_udp();
        let proxy = t.local_addr(Transport::Udp).unwrap();
        let gone = std::net::UdpSocket::bind(peer)
            .unwrap()
            .local_addr()
            .unwrap();
        for n in 0..3 {
            let dest = Peer {
                transport: Transport::Udp,
                addr: gone,
            };
            t.send(dest, message(n), None);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sender = tokio::net::UdpSocket::bind(peer).await.unwrap();
        let me = sender.local_addr().unwrap();
        for n in 10..13 {
            sender.send_to(&message(n), proxy).await.unwrap();
        }
        let got = read_at_least(&mut udp, 3, &format!("{listen} after the ICMP errors")).await;
        let want: Vec<_> = (10..13).map(|n| (me, message(n))).collect();
        assert_eq!(got, want, "{listen}");
        t.shutdown();
    }
}
