//! The real `rollover proxy` binary attacked on 127.0.0.1: relay attempts over UDP and TCP,
//! amplification, a flood of INVITEs and junk during legitimate SIPp calls. (Idle and slow
//! TCP connections: `connections.rs`.)
//!
//! Attackers, victims and callers use 127.x.y.z addresses only, or, inside a user and network
//! namespace a test makes for itself, IPv6 documentation addresses (2001:db8::/32) sending to
//! `::1`. Every loop is bounded in
//! count and time; every process is stopped by its PID. The figures (RSS, log growth,
//! durations) are printed; `--nocapture` shows them. `ROLLOVER_BIN=target/release/rollover`
//! runs the proxy from a release build, and the flood at its full rate.
// These tests drive real processes, so they read the wall clock.
#![allow(clippy::disallowed_methods)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::attack::*;
use support::*;

/// The embedded default plan with its addresses moved to free ports.
fn default_like_config(first: u16, second: u16) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/default.toml"))
            .unwrap();
    assert!(text.contains("127.0.0.1:5060") && text.contains("127.0.0.1:5080"));
    text.replace("127.0.0.1:5060", "{{PROXY}}")
        .replace("127.0.0.1:5070", &format!("127.0.0.1:{first}"))
        .replace("127.0.0.1:5080", &format!("127.0.0.1:{second}"))
}

// ---------------------------------------------------------------------------------------
// Relay attacks
// ---------------------------------------------------------------------------------------

/// Sockets nobody but an open relay would send to: UDP and TCP on 127.0.0.1:port and
/// 127.0.0.9:port.
struct Victim {
    port: u16,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Victim {
    fn new() -> Victim {
        let port = port();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for ip in ["127.0.0.1", "127.0.0.9"] {
            let u = UdpSocket::bind((ip, port)).unwrap();
            u.set_nonblocking(true).unwrap();
            udp.push(u);
            let t = TcpListener::bind((ip, port)).unwrap();
            t.set_nonblocking(true).unwrap();
            tcp.push(t);
        }
        Victim { port, udp, tcp }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn alt(&self) -> String {
        format!("127.0.0.9:{}", self.port)
    }

    /// Everything that reached the victim until `until`.
    fn hits(&self, until: Instant) -> Vec<String> {
        let mut hits = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            for u in &self.udp {
                while let Ok((n, from)) = u.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let first = text.lines().next().unwrap_or_default().to_owned();
                    hits.push(format!(
                        "UDP datagram to {} from {from}: {first}",
                        u.local_addr().unwrap()
                    ));
                }
            }
            for t in &self.tcp {
                while let Ok((_, from)) = t.accept() {
                    hits.push(format!(
                        "TCP connection to {} from {from}",
                        t.local_addr().unwrap()
                    ));
                }
            }
            if Instant::now() >= until {
                return hits;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The attacks, written as an attacker at `me` would send them over `transport` ("UDP" or
/// "TCP") to the proxy at `proxy`, aimed at `v`.
fn attacks(proxy: SocketAddr, v: &Victim, transport: &str, me: SocketAddr) -> Vec<String> {
    let (va, v9, vp) = (v.addr(), v.alt(), v.port);
    let mut n = 0u32;
    let mut req = |method: &str, ruri: &str, to_tag: bool, headers: &str| -> String {
        n += 1;
        let tag = if to_tag { ";tag=victimtag" } else { "" };
        let cseq_method = method;
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{transport} {me};branch=z9hG4bK-attack-{transport}-{n}\r\nMax-Forwards: 70\r\nFrom: <sip:mallory@{me}>;tag=m{n}\r\nTo: <sip:alice@example.com>{tag}\r\nCall-ID: attack-{transport}-{n}-{me}\r\nCSeq: 1 {cseq_method}\r\n{headers}Contact: <sip:mallory@{me}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let route_v = format!("Route: <sip:{va};lr>\r\n");
    let mut out = vec![
        // A preloaded Route to the victim, on an unrouted and on a routed Request-URI.
        req("INVITE", &format!("sip:alice@{va}"), false, &route_v),
        req("INVITE", &format!("sip:123@{va}"), false, &route_v),
        // The proxy first, the victim next.
        req(
            "INVITE",
            &format!("sip:alice@{va}"),
            false,
            &format!("Route: <sip:{proxy};lr>, <sip:{va};lr>\r\n"),
        ),
        req(
            "INVITE",
            &format!("sip:123@{va}"),
            false,
            &format!("Route: <sip:{proxy};lr>\r\nRoute: <sip:{va};lr>\r\n"),
        ),
        // Strict-route trick: the Request-URI is the proxy, the last Route the victim.
        req(
            "INVITE",
            &format!("sip:{proxy}"),
            false,
            &format!("Route: <sip:{v9};lr>, <sip:x@{va}>\r\n"),
        ),
        req(
            "INVITE",
            &format!("sip:{proxy}"),
            true,
            &format!("Route: <sip:{v9};lr>, <sip:x@{va}>\r\n"),
        ),
        // A forged token of ours, then the victim.
        req(
            "BYE",
            &format!("sip:x@{va}"),
            true,
            &format!("Route: <sip:{proxy};lr;tk=AAAAAAAAAAAAAAAAAAAAAA>, <sip:{va};lr>\r\n"),
        ),
    ];
    // In-dialog (To tag) requests with the victim as Request-URI, plain and with maddr.
    for m in ["INVITE", "BYE", "OPTIONS"] {
        out.push(req(m, &format!("sip:x@{va}"), true, ""));
        out.push(req(
            m,
            &format!("sip:x@127.0.0.9:{vp};maddr=127.0.0.1"),
            true,
            "",
        ));
        out.push(req(m, &format!("sip:x@{va}"), true, &route_v));
    }
    // Out-of-dialog requests with a Route to the victim.
    for m in ["MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE"] {
        out.push(req(m, &format!("sip:alice@{va}"), false, &route_v));
        out.push(req(m, &format!("sip:123@{va}"), false, &route_v));
    }
    // ACKs matching no transaction.
    out.push(req("ACK", &format!("sip:x@{va}"), true, ""));
    out.push(req("ACK", &format!("sip:x@{va}"), false, ""));
    out.push(req("ACK", &format!("sip:x@{v9}"), true, &route_v));
    out.push(req(
        "ACK",
        &format!("sip:x@{v9}"),
        true,
        &format!("Route: <sip:{va};transport=tcp;lr>\r\n"),
    ));
    // To the victim's TCP listener.
    let route_tcp = format!("Route: <sip:{va};transport=tcp;lr>\r\n");
    out.push(req("INVITE", &format!("sip:alice@{va}"), false, &route_tcp));
    out.push(req("INVITE", &format!("sip:123@{va}"), false, &route_tcp));
    out.push(req("BYE", &format!("sip:x@{va};transport=tcp"), true, ""));
    out.push(req("BYE", &format!("sip:x@{va}"), true, &route_tcp));
    out.push(req(
        "INVITE",
        &format!("sip:x@{va};transport=tcp"),
        true,
        "",
    ));
    // Forged stray 2xx: top Via the proxy with a branch of our shape, next Via the victim.
    for next in [
        format!("UDP {va}"),
        format!("TCP {va}"),
        format!("UDP {v9}"),
    ] {
        n += 1;
        out.push(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {proxy};branch=z9hG4bKrl12345678.1abcdef.0011223344556677\r\nVia: SIP/2.0/{next};branch=z9hG4bK-victim-{n}\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\nTo: <sip:bob@example.com>;tag=b{n}\r\nCall-ID: stray-{transport}-{n}-{me}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{va}>\r\nContent-Length: 0\r\n\r\n"
        ));
    }
    out
}

/// First lines of the SIP messages in `text`.
fn first_lines(text: &str) -> Vec<String> {
    text.split("\r\n\r\n")
        .filter_map(|m| m.trim_start().lines().next())
        .filter(|l| l.starts_with("SIP/2.0 ") || l.contains(" SIP/2.0"))
        .map(str::to_owned)
        .collect()
}

/// Sends every attack over UDP and over one TCP connection; returns what came back to the
/// attacker (first lines), after waiting until everything reaching the victim was seen.
fn attack(proxy: &Proxy, victim: &Victim) -> (Vec<String>, Vec<String>) {
    let mut replies = Vec::new();
    // UDP, from 127.0.0.5.
    let udp = UdpSocket::bind("127.0.0.5:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let me = udp.local_addr().unwrap();
    let msgs = attacks(proxy.addr(), victim, "UDP", me);
    for m in &msgs {
        udp.send_to(m.as_bytes(), proxy.addr()).unwrap();
    }
    // TCP, one connection from 127.0.0.6.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 6], 0)).into())
        .unwrap();
    sock.connect(&proxy.addr().into()).unwrap();
    let mut tcp: TcpStream = sock.into();
    let me = tcp.local_addr().unwrap();
    let tcp_msgs = attacks(proxy.addr(), victim, "TCP", me);
    for m in &tcp_msgs {
        tcp.write_all(m.as_bytes()).unwrap();
    }
    tcp.set_nonblocking(true).unwrap();
    eprintln!(
        "sent {} attacks over UDP and {} over TCP",
        msgs.len(),
        tcp_msgs.len()
    );
    let until = Instant::now() + Duration::from_millis(1200);
    let hits = victim.hits(until);
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = udp.recv_from(&mut buf) {
        replies.extend(first_lines(&String::from_utf8_lossy(&buf[..n])));
    }
    let mut stream = Vec::new();
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stream.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    replies.extend(
        first_lines(&String::from_utf8_lossy(&stream))
            .into_iter()
            .map(|l| format!("tcp: {l}")),
    );
    (hits, replies)
}

/// Everything a plain UDP callee socket received (first lines and Route headers).
fn drain(sock: &UdpSocket) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

fn check_relay_attacks(name: &str, proxy: &Proxy, victim: &Victim, callees: &[&UdpSocket]) {
    let (hits, replies) = attack(proxy, victim);
    let reached: Vec<String> = callees.iter().flat_map(|c| drain(c)).collect();
    eprintln!(
        "{name}: victim got {} messages/connections; attacker got {} replies: {replies:?}; callee got {} requests",
        hits.len(),
        replies.len(),
        reached.len()
    );
    assert!(
        hits.is_empty(),
        "{name}: the proxy relayed to the victim: {hits:#?}\nproxy log:\n{}",
        proxy.log_text()
    );
    // The attacks were read and handled: the in-dialog ones refused over both transports,
    // and the routed ones sent to the plan's target with the stranger's Route removed.
    assert!(
        replies.iter().any(|r| r == "SIP/2.0 404 Not Here"),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r == "tcp: SIP/2.0 404 Not Here"),
        "{replies:?}"
    );
    assert!(!reached.is_empty(), "{name}: nothing routed to the callee");
    for m in &reached {
        assert!(
            !m.lines()
                .any(|l| l.to_ascii_lowercase().starts_with("route:")
                    && l.contains(&victim.port.to_string())),
            "{name}: the victim's Route was relayed:\n{m}"
        );
    }
    assert!(
        proxy.log_text().contains("preloaded Route entr"),
        "{name}: no Route removal logged:\n{}",
        proxy.log_text()
    );
}

#[test]
fn relay_attacks_over_udp_and_tcp_reach_no_victim() {
    // A plan routing only sip:<digits>@… to a plain socket.
    let dir = Dir::new("relay-digits");
    let victim = Victim::new();
    let cp = port();
    let callee = UdpSocket::bind(("127.0.0.1", cp)).unwrap();
    callee.set_nonblocking(true).unwrap();
    let proxy = Proxy::start(&dir, &config("", &digits_plan(&format!("127.0.0.1:{cp}"))));
    check_relay_attacks("digits plan", &proxy, &victim, &[&callee]);
    drop(proxy);

    // The embedded default plan (record_route, follow_redirects), moved to free ports.
    let dir = Dir::new("relay-default");
    let (p1, p2) = (port(), port());
    let first = UdpSocket::bind(("127.0.0.1", p1)).unwrap();
    let second = UdpSocket::bind(("127.0.0.1", p2)).unwrap();
    first.set_nonblocking(true).unwrap();
    second.set_nonblocking(true).unwrap();
    let proxy = Proxy::start(&dir, &default_like_config(p1, p2));
    check_relay_attacks("default plan", &proxy, &victim, &[&first, &second]);
}

// ---------------------------------------------------------------------------------------
// Amplification
// ---------------------------------------------------------------------------------------

/// Sends `msg` once from a fresh UDP socket; every datagram back within `wait`.
fn replies_to_one(proxy: u16, msg: &str, wait: Duration) -> Vec<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = msg.replace("{{ME}}", &s.local_addr().unwrap().to_string());
    s.send_to(msg.as_bytes(), ("127.0.0.1", proxy)).unwrap();
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        s.set_read_timeout(Some(left)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            got.push(text.lines().next().unwrap_or_default().to_owned());
        }
    }
}

#[test]
fn refusals_are_one_datagram_each_never_retransmitted() {
    let dir = Dir::new("amplify");
    let proxy = Proxy::start(
        &dir,
        &config("t1 = \"100ms\"\n", &digits_plan("127.0.0.1:9")),
    );
    let p = proxy.port;
    let invite = |ruri: &str, mf: u32, to_tag: &str, id: &str| {
        format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {{{{ME}}}};branch=z9hG4bK-amp-{id}\r\nMax-Forwards: {mf}\r\nFrom: <sip:a@example.com>;tag=f{id}\r\nTo: <sip:b@example.com>{to_tag}\r\nCall-ID: amp-{id}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{{{{ME}}}}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let cases = [
        (
            "unrouted URI",
            invite("sip:nobody@127.0.0.1", 70, "", "1"),
            "SIP/2.0 404 ",
        ),
        (
            "Max-Forwards 0",
            invite("sip:123@127.0.0.1", 0, "", "2"),
            "SIP/2.0 483 ",
        ),
        (
            "in-dialog without our Route",
            invite("sip:123@127.0.0.1:9", 70, ";tag=t", "3"),
            "SIP/2.0 404 Not Here",
        ),
    ];
    let start = Instant::now();
    let results: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(_, msg, _)| s.spawn(move || replies_to_one(p, msg, Duration::from_secs(3))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, _, want), got) in cases.iter().zip(&results) {
        eprintln!("{name}: {got:?}");
        assert_eq!(got.len(), 1, "{name}: exactly one datagram back: {got:?}");
        assert!(got[0].starts_with(want), "{name}: {got:?}");
    }
    eprintln!("amplification checks took {:?}", start.elapsed());
}

// ---------------------------------------------------------------------------------------
// Legitimate dialogs
// ---------------------------------------------------------------------------------------

#[test]
fn dialogs_follow_the_signed_record_route_both_ways() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("dialog");
    // The caller hangs up: ACK and BYE go through the proxy along its Record-Route.
    let (mut b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml"),
        1,
        "u1",
        &[
            "-trace_msg".into(),
            "-message_file".into(),
            dir.path("b.msg").display().to_string(),
        ],
    );
    // The callee hangs up: its BYE goes back through the proxy to the caller.
    let pc = port();
    let proxy = Proxy::start(
        &dir,
        &config(
            "",
            &format!(
                "[[route]]\nname = \"callee hangs up\"\nmatch.request_uri = '^sip:200@'\ntargets = [\"sip:200@127.0.0.1:{pc}\"]\n\n{}",
                digits_plan(&format!("127.0.0.1:{pb}"))
            ),
        ),
    );
    let proxy_addr = proxy.addr().to_string();
    let uas = dir.scenario(
        "uas_answer_hangup.xml",
        "c.xml",
        &[("PROXY", &proxy_addr), ("HOLD_MS", "200")],
    );
    let mut args = strings(&["-sf", &uas.display().to_string()]);
    args.extend(strings(&[
        "-p",
        &pc.to_string(),
        "-m",
        "1",
        "-timeout",
        "20s",
    ]));
    let mut c = sipp(&dir, "c", &args);

    let code = Caller {
        scenario: &answered(&dir, "100"),
        service: "100",
        calls: 1,
        rate: 1,
        transport: "u1",
        timeout: "80s",
        extra: &[],
    }
    .run(&dir, "caller", proxy.port, Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", proxy.log_text());
    assert_eq!(b.wait(Duration::from_secs(5)), Some(0), "callee b");
    let trace = dir.read("b.msg");
    let rr = format!("Record-Route: <sip:{proxy_addr};lr;tk=");
    assert!(trace.contains(&rr), "no signed Record-Route:\n{trace}");
    for m in ["ACK sip:", "BYE sip:"] {
        let at = trace.find(m).unwrap_or_else(|| panic!("no {m}:\n{trace}"));
        let via = trace[at..].lines().find(|l| l.starts_with("Via:")).unwrap();
        assert!(
            via.contains(&format!("SIP/2.0/UDP {proxy_addr};branch=z9hG4bKrl")),
            "{m} did not come through the proxy: {via}"
        );
    }

    let uac = dir.scenario(
        "uac_callee_hangs_up.xml",
        "uac_hangup.xml",
        &[("PROXY", &proxy_addr)],
    );
    let code = Caller {
        scenario: &uac,
        service: "200",
        calls: 1,
        rate: 1,
        transport: "u1",
        timeout: "80s",
        extra: &[],
    }
    .run(&dir, "caller2", proxy.port, Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", proxy.log_text());
    assert_eq!(
        c.wait(Duration::from_secs(5)),
        Some(0),
        "callee c: {}",
        dir.read("c.err")
    );
    let log = proxy.log_text();
    assert!(!log.contains("Not Here"), "{log}");
}

// ---------------------------------------------------------------------------------------
// Flood
// ---------------------------------------------------------------------------------------

/// Sends `msgs` (cycled) from `from` to the proxy at `rate` per second, for at most `limit`
/// or until `stop`; returns how many were sent.
fn paced_sender(
    from: Ipv4Addr,
    to: SocketAddr,
    rate: u64,
    limit: Duration,
    stop: &AtomicBool,
    msgs: &[Vec<u8>],
) -> u64 {
    let s = UdpSocket::bind((from, 0)).unwrap();
    let start = Instant::now();
    let max = rate * limit.as_secs().max(1);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit && sent < max {
        let due = (start.elapsed().as_micros() as u64 * rate / 1_000_000).min(max);
        while sent < due {
            let _ = s.send_to(&msgs[(sent % msgs.len() as u64) as usize], to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

fn flood_invites(from: Ipv4Addr) -> Vec<Vec<u8>> {
    (0..256)
        .map(|i| {
            format!(
                "INVITE sip:nobody{i}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from}:5060;branch=z9hG4bK-flood-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{from}>;tag=f{i}\r\nTo: <sip:nobody{i}@127.0.0.1>\r\nCall-ID: flood-{i}@{from}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{from}:5060>\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        })
        .collect()
}

fn junk() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..512)
        .map(|i| {
            let len = 8 + (i * 37) % 600;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8
                })
                .collect()
        })
        .collect()
}

#[test]
fn flood_and_junk_during_1500_calls_fail_no_call() {
    if !sipp_available() {
        return;
    }
    const WARMUP_CALLS: u32 = 250;
    const CALLS: u32 = 1500;
    const CPS: u32 = 50;
    let dir = Dir::new("flood");
    let (mut b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml"),
        WARMUP_CALLS + CALLS,
        "u1",
        &[],
    );
    // The failover timers of the embedded default (10 s, 20 s): a legitimate answer delayed
    // behind the flood is still an answer.
    let cfg = format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\", \"tcp:{{{{PROXY}}}}\"]\n\n[failover]\nno_response_timeout = \"10s\"\nring_timeout = \"20s\"\n\n[security]\nflood_rate = 100\n\n{}",
        digits_plan(&format!("127.0.0.1:{pb}"))
    );
    let proxy = Proxy::start(&dir, &cfg);
    let uac = answered(&dir, "100");
    let legit = |calls| Caller {
        scenario: &uac,
        service: "100",
        calls,
        rate: CPS,
        transport: "u1",
        timeout: "80s",
        extra: &[],
    };

    // Baseline: the same legitimate load, shorter, without the flood; RSS and log size are
    // measured right after it, before the flood starts.
    let t = Instant::now();
    let code = legit(WARMUP_CALLS).run(&dir, "warmup", proxy.port, Duration::from_secs(30));
    assert_eq!(code, Some(0), "warm-up calls failed");
    let warmup_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_base = proxy.rss_kb();
    let log_base = proxy.log_len();
    let log_per_call = log_base as f64 / f64::from(WARMUP_CALLS);

    // The flood: 30,000 INVITEs/s to unrouted URIs from 127.0.0.2, 5,000 junk datagrams/s
    // from 127.0.0.3, for as long as the legitimate calls last (at most 45 s). An unoptimized
    // proxy cannot read that many datagrams on a small machine (the kernel then drops
    // legitimate ones with the rest), so against a debug build the rates are a third.
    let (invite_rate, junk_rate) = if cfg!(debug_assertions)
        && std::env::var_os("ROLLOVER_BIN").is_none()
    {
        eprintln!("flood: debug build of the proxy: 10,000 INVITEs/s and 1,700 junk/s (set ROLLOVER_BIN to a release build for the full 30,000 and 5,000)");
        (10_000, 1_700)
    } else {
        (30_000, 5_000)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let to = proxy.addr();
    let limit = Duration::from_secs(45);
    let invites = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let from = Ipv4Addr::new(127, 0, 0, 2);
            paced_sender(from, to, invite_rate, limit, &stop, &flood_invites(from))
        })
    };
    let garbage = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            paced_sender(
                Ipv4Addr::new(127, 0, 0, 3),
                to,
                junk_rate,
                limit,
                &stop,
                &junk(),
            )
        })
    };
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), proxy.pid());
        std::thread::spawn(move || {
            let end = Instant::now() + limit + Duration::from_secs(5);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let t = Instant::now();
    let cpu = cpu_ticks(proxy.pid());
    let code = legit(CALLS).run(&dir, "caller", proxy.port, Duration::from_secs(60));
    let flood_secs = t.elapsed().as_secs_f64();
    let cpu_pct = (cpu_ticks(proxy.pid()) - cpu) as f64 / flood_secs;
    stop.store(true, Ordering::Relaxed);
    let sent_invites = invites.join().unwrap();
    let sent_junk = garbage.join().unwrap();
    sampler.join().unwrap();
    let callee_code = b.wait(Duration::from_secs(10));
    let rss_peak = peak.load(Ordering::Relaxed).max(proxy.rss_kb());
    let log_growth = proxy.log_len().saturating_sub(log_base);
    let legit_log = (log_per_call * f64::from(CALLS)) as u64;
    let flood_log = log_growth.saturating_sub(legit_log);
    let log = proxy.log_text();
    let flood_lines = log.lines().filter(|l| l.contains("127.0.0.2")).count();
    let junk_lines = log.lines().filter(|l| l.contains("127.0.0.3")).count();
    eprintln!(
        "flood: warm-up {WARMUP_CALLS} calls in {warmup_secs:.1}s; {CALLS} calls at {CPS} cps in {flood_secs:.1}s, caller exit {code:?}, callee exit {callee_code:?}; proxy CPU {cpu_pct:.0}%\n\
         flood: sent {sent_invites} INVITEs from 127.0.0.2 ({:.0}/s) and {sent_junk} junk datagrams from 127.0.0.3 ({:.0}/s)\n\
         flood: RSS baseline {} kB, peak during flood {} kB (+{} kB)\n\
         flood: log {} B after warm-up ({log_per_call:.0} B/call); grew {log_growth} B during the flood, {legit_log} B of it expected from the calls, {flood_log} B left for the flood; {flood_lines} lines name 127.0.0.2, {junk_lines} name 127.0.0.3",
        sent_invites as f64 / flood_secs,
        sent_junk as f64 / flood_secs,
        rss_base,
        rss_peak,
        rss_peak.saturating_sub(rss_base),
        log_base,
    );
    assert_eq!(code, Some(0), "legitimate calls failed during the flood");
    assert_eq!(callee_code, Some(0), "callee: {}", dir.read("b.err"));
    assert!(
        sent_invites > invite_rate * 9 / 10 * (flood_secs as u64).min(30),
        "the flood was not sent at rate"
    );
    assert!(
        log.contains("source=127.0.0.2") && log.contains("flood: more than 100"),
        "the flood was not seen: {log}"
    );
    assert!(
        rss_peak < rss_base + 50 * 1024,
        "RSS grew by more than 50 MB under the flood"
    );
    assert!(
        log_growth < 1024 * 1024,
        "the log grew by {log_growth} B during the flood"
    );
    // The burst admitted before the block (60 refusals, one line each), the block itself;
    // junk is summed up every 10 s.
    assert!(
        flood_lines <= 60 + 3 && junk_lines <= 2 * (flood_secs as usize / 10 + 2),
        "flood sources logged per message"
    );
}

// ---------------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------------

/// With two workers, one address that floods from many source ports meets the one flood
/// limit, as with one worker: the kernel hands every request of an address to the same
/// worker (before, each worker counted the ports that hashed to it against the whole
/// limit, so two workers let twice the burst through).
#[test]
fn a_flood_from_many_ports_of_one_address_meets_one_limit_with_two_workers() {
    const BURST: usize = 20;
    let dir = Dir::new("flood-ports");
    let cfg = format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\"]\nworkers = 2\n\n[security]\nflood_rate = 1\nflood_burst = {BURST}\n\n{}",
        digits_plan("127.0.0.1:9")
    );
    let proxy = Proxy::start(&dir, &cfg);
    let from = Ipv4Addr::new(127, 0, 0, 4);
    let socks: Vec<UdpSocket> = (0..16)
        .map(|_| UdpSocket::bind((from, 0)).unwrap())
        .collect();
    let started = Instant::now();
    for i in 0..160 {
        let s = &socks[i % socks.len()];
        let me = s.local_addr().unwrap();
        let invite = format!(
            "INVITE sip:nobody{i}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK-ports-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{from}>;tag=f{i}\r\nTo: <sip:nobody{i}@127.0.0.1>\r\nCall-ID: ports-{i}@{from}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{me}>\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(invite.as_bytes(), ("127.0.0.1", proxy.port))
            .unwrap();
    }
    let sent_in = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let mut answered = std::collections::BTreeSet::new();
    let mut buf = [0u8; 65536];
    for s in &socks {
        s.set_nonblocking(true).unwrap();
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .map(str::to_owned)
            {
                answered.insert(id);
            }
        }
    }
    // The burst, plus one a second for the time the sending took.
    let allowed = BURST + 1 + sent_in.as_secs() as usize;
    assert!(
        answered.len() >= BURST / 2 && answered.len() <= allowed,
        "{} of 160 INVITEs from 16 ports answered (limit {allowed}): {answered:?}",
        answered.len()
    );
    let log = dir.read("proxy.log");
    let blocks = log
        .lines()
        .filter(|l| l.contains("flood: more than") && l.contains("127.0.0.4"))
        .count();
    assert_eq!(blocks, 1, "one block of the address, by one worker:\n{log}");
}

/// Set for a test run inside the namespace [`in_ipv6_sites`] makes.
const IN_NAMESPACE: &str = "ROLLOVER_TEST_IN_V6_NAMESPACE";
/// The /64 the attacks come from, and its neighbour, both local inside that namespace.
const SITE: &str = "2001:db8:0:66";
const NEIGHBOUR: &str = "2001:db8:0:67";

/// Runs the `#[ignore]`d test `name` of this binary in a new user and network namespace
/// whose loopback holds the whole of two IPv6 /64s (an AnyIP route), so that it can send
/// from any of their 2^64 addresses to the proxy on `::1`. Without user namespaces (a
/// locked-down kernel) the test is skipped, except under `CI=true`, where it fails.
fn in_ipv6_sites(name: &str) {
    let routes = format!(
        "ip link set lo up && ip -6 route add local {SITE}::/64 dev lo && ip -6 route add local {NEIGHBOUR}::/64 dev lo"
    );
    let probe = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", &routes])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = format!("no network namespace for the IPv6 /64 test: {probe:?}");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c"])
        .arg(format!(
            "{routes} && exec \"$0\" --ignored --exact \"$1\" --nocapture"
        ))
        .arg(std::env::current_exe().unwrap())
        .arg(name)
        .env(IN_NAMESPACE, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed") && text.contains("checked inside the namespace"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.contains("checked inside")) {
        println!("{line}");
    }
}

/// A socket bound to `addr` (an address of a /64 routed locally, not configured).
fn bound_anywhere(addr: &str, kind: socket2::Type) -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV6, kind, None).unwrap();
    s.set_freebind_v6(true).unwrap();
    let addr: SocketAddr = format!("[{addr}]:0").parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s
}

/// One IPv6 host sends from any address of its /64: flooding from 160 of them, each used
/// once, it meets one flood limit (counted per address, each would have had its own
/// burst and all 160 would be answered), and the next /64 is another source.
#[test]
fn a_flood_from_many_addresses_of_one_ipv6_64_meets_one_limit() {
    in_ipv6_sites("a_flood_from_many_addresses_of_one_ipv6_64_meets_one_limit_inside");
}

#[test]
#[ignore = "run by a_flood_from_many_addresses_of_one_ipv6_64_meets_one_limit in its namespace"]
fn a_flood_from_many_addresses_of_one_ipv6_64_meets_one_limit_inside() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        return;
    }
    const BURST: usize = 20;
    let dir = Dir::new("flood-v6");
    let port = port();
    let cfg = format!(
        "[server]\nlisten = [\"udp:[::1]:{port}\"]\nworkers = 2\n\n[security]\nflood_rate = 1\nflood_burst = {BURST}\n\n{}",
        digits_plan("127.0.0.1:9")
    );
    let proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let invite = |i: usize, me: SocketAddr| {
        format!(
            "INVITE sip:nobody{i}@[::1] SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK-v6-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{}>;tag=f{i}\r\nTo: <sip:nobody{i}@[::1]>\r\nCall-ID: v6-{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            me
        )
    };
    let send = |addr: &str, i: usize| {
        let s: UdpSocket = bound_anywhere(addr, socket2::Type::DGRAM).into();
        s.send_to(invite(i, s.local_addr().unwrap()).as_bytes(), to)
            .unwrap();
        s
    };
    let started = Instant::now();
    let socks: Vec<UdpSocket> = (0..160)
        .map(|i| send(&format!("{SITE}:{:x}:{:x}::1", i + 1, i * 7 + 3), i))
        .collect();
    let sent_in = started.elapsed();
    let neighbour = send(&format!("{NEIGHBOUR}::1"), 1000);
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = [0u8; 65536];
    let mut answered = 0;
    for s in &socks {
        s.set_nonblocking(true).unwrap();
        while s.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    let allowed = BURST + 1 + sent_in.as_secs() as usize;
    assert!(
        (BURST / 2..=allowed).contains(&answered),
        "{answered} of 160 INVITEs from 160 addresses of one /64 answered (limit {allowed})"
    );
    neighbour
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(
        neighbour.recv_from(&mut buf).is_ok(),
        "the next /64 is another source, not blocked"
    );
    let log = proxy.log_text();
    let blocks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("flood: more than"))
        .collect();
    assert_eq!(blocks.len(), 1, "{log}");
    assert!(blocks[0].contains(&format!("{SITE}::/64")), "{log}");
    println!("{answered} of 160 answered; checked inside the namespace");
}

/// Incoming TCP connections are counted per /64 too: ten from ten addresses of one /64
/// against `max_connections_per_ip = 4` leave four open; one from the next /64 is let in.
#[test]
fn tcp_connections_from_many_addresses_of_one_ipv6_64_meet_one_limit() {
    in_ipv6_sites("tcp_connections_from_many_addresses_of_one_ipv6_64_meet_one_limit_inside");
}

#[test]
#[ignore = "run by tcp_connections_from_many_addresses_of_one_ipv6_64_meet_one_limit in its namespace"]
fn tcp_connections_from_many_addresses_of_one_ipv6_64_meet_one_limit_inside() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        return;
    }
    let dir = Dir::new("tcp-v6");
    let port = port();
    let cfg = format!(
        "[server]\nlisten = [\"tcp:[::1]:{port}\"]\nmax_connections_per_ip = 4\n\n{}",
        digits_plan("127.0.0.1:9")
    );
    let _proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let connect = |addr: &str| {
        let s = bound_anywhere(addr, socket2::Type::STREAM);
        s.connect(&to.into()).unwrap();
        let s: TcpStream = s.into();
        s
    };
    let streams: Vec<TcpStream> = (0..10)
        .map(|i| connect(&format!("{SITE}::{:x}", i + 1)))
        .collect();
    let neighbour = connect(&format!("{NEIGHBOUR}::1"));
    std::thread::sleep(Duration::from_millis(300));
    // A refused connection is closed at once (end of stream); one let in stays open.
    let open = |s: &TcpStream| {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 16];
        matches!((&*s).read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    };
    let kept = streams.iter().filter(|s| open(s)).count();
    assert_eq!(kept, 4, "connections left open of ten from one /64");
    assert!(open(&neighbour), "the next /64 is another source");
    println!("{kept} of 10 kept; checked inside the namespace");
}
