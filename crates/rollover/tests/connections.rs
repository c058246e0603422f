//! The real `rollover proxy` binary against thousands of idle TCP connections and headers
//! trickled a byte at a time, while TCP calls go on.
//!
//! Sources are 127.x.y.z addresses only. Every loop is bounded in count and time; every
//! process is stopped by its PID. The figures (RSS, open files, durations) are printed;
//! `--nocapture` shows them.
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

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::attack::*;
use support::*;

/// A TCP connection to `to` from `from` (bound before connecting).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

/// The soft open-files limit of this process (from /proc/self/limits).
fn nofile_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// Whether the peer has closed the connection (read gives 0 or an error).
fn closed(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 512];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// 50 connections sending one byte every 500 ms; how long after its first byte each was
/// closed by the proxy (None: still open after `limit`).
fn slow_headers(to: SocketAddr, count: u8, limit: Duration) -> Vec<Option<Duration>> {
    let msg = b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut conns: Vec<(TcpStream, Option<Duration>)> = (1..=count)
        .map(|i| {
            let s = connect_from(Ipv4Addr::new(127, 0, 2, i), to).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, None)
        })
        .collect();
    let start = Instant::now();
    let mut next_byte = start;
    let mut sent = 0usize;
    while start.elapsed() < limit && conns.iter().any(|c| c.1.is_none()) {
        let now = Instant::now();
        if now >= next_byte {
            for (s, done) in conns.iter_mut().filter(|c| c.1.is_none()) {
                if s.write(&msg[sent % msg.len()..][..1]).is_err() {
                    *done = Some(start.elapsed());
                }
            }
            sent += 1;
            next_byte += Duration::from_millis(500);
        }
        for (s, done) in conns.iter_mut().filter(|c| c.1.is_none()) {
            if closed(s) {
                *done = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    conns.into_iter().map(|c| c.1).collect()
}

#[test]
fn idle_and_slow_tcp_connections_leave_calls_working() {
    if !sipp_available() {
        return;
    }
    const IDLE: usize = 4_000;
    let soft = nofile_soft_limit();
    let idle = if soft < 4_200 {
        let n = soft.saturating_sub(200) as usize;
        eprintln!("tcp: open-files soft limit is {soft}: opening {n} idle connections, not {IDLE}");
        n
    } else {
        IDLE
    };
    let dir = Dir::new("tcp");
    let (mut udp_callee, pu) = callee(&dir, "u", &answer_scenario(&dir, "u.xml"), 1, "u1", &[]);
    let (mut tcp_callee, pt) = callee(&dir, "t", &answer_scenario(&dir, "t.xml"), 1, "t1", &[]);
    let routes = format!(
        "[[route]]\nname = \"tcp target\"\nmatch.request_uri = '^sip:tcp(\\d+)@'\ntargets = [\"sip:$1@127.0.0.1:{pt}/TCP\"]\n\n{}",
        digits_plan(&format!("127.0.0.1:{pu}"))
    );
    let proxy = Proxy::start(&dir, &config("header_timeout = \"3s\"\n", &routes));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let proxy_nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("tcp: test soft nofile {soft}; proxy: {proxy_nofile}");
    std::thread::sleep(Duration::from_millis(300));
    let rss_start = proxy.rss_kb();
    let fds_start = fd_count(proxy.pid());

    // Strangers' idle connections, 20 per source address (the per-IP limit is 32).
    let t = Instant::now();
    let mut conns = Vec::with_capacity(idle);
    for i in 0..idle {
        let from = Ipv4Addr::new(127, 0, 1, 1 + (i / 20) as u8);
        conns.push(connect_from(from, proxy.addr()).unwrap());
    }
    for c in &conns {
        c.set_nonblocking(true).unwrap();
    }
    let connect_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = proxy.rss_kb();

    // 50 slowloris connections while two calls go through: TCP caller to a UDP callee,
    // UDP caller to a TCP callee.
    let to = proxy.addr();
    let slow = std::thread::spawn(move || slow_headers(to, 50, Duration::from_secs(10)));
    let uac = answered(&dir, "100");
    let t = Instant::now();
    let tcp_caller = Caller {
        scenario: &uac,
        service: "100",
        calls: 1,
        rate: 1,
        transport: "t1",
        timeout: "80s",
        extra: &[],
    }
    .run(&dir, "tcp-caller", proxy.port, Duration::from_secs(20));
    let to_tcp = Caller {
        scenario: &uac,
        service: "tcp100",
        calls: 1,
        rate: 1,
        transport: "u1",
        timeout: "80s",
        extra: &[],
    }
    .run(&dir, "to-tcp", proxy.port, Duration::from_secs(20));
    let calls_secs = t.elapsed().as_secs_f64();
    let slow = slow.join().unwrap();
    let still_open = conns.iter().filter(|c| !closed(c)).count();
    let rss_busy = proxy.rss_kb();

    let fds_busy = fd_count(proxy.pid());
    drop(conns);
    let t = Instant::now();
    let fds_closed = wait_fds(proxy.pid(), fds_start, Duration::from_secs(5));
    let close_secs = t.elapsed().as_secs_f64();
    // Freed memory goes back to the system within a few seconds (jemalloc's background
    // purge): wait for RSS to settle within 20 MB of the start, bounded.
    let settle = |proxy: &Proxy| {
        let t = Instant::now();
        let mut rss = proxy.rss_kb();
        while rss > rss_start + 20 * 1024 && t.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(200));
            rss = proxy.rss_kb();
        }
        (rss, t.elapsed().as_secs_f64())
    };
    let (rss_closed, settle_secs) = settle(&proxy);

    // The same again: memory kept by the allocator after the first round is reused, so a
    // leak would show as a higher peak.
    let mut again = Vec::with_capacity(idle);
    for i in 0..idle {
        let from = Ipv4Addr::new(127, 0, 1, 1 + (i / 20) as u8);
        again.push(connect_from(from, proxy.addr()).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_again = proxy.rss_kb();
    drop(again);
    let fds_end = wait_fds(proxy.pid(), fds_start, Duration::from_secs(5));
    let (rss_end, _) = settle(&proxy);

    let closed_at: Vec<f64> = slow.iter().flatten().map(Duration::as_secs_f64).collect();
    let (min, max) = closed_at
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    eprintln!(
        "tcp: {idle} idle connections opened in {connect_secs:.1}s, {still_open} still open after the calls ({calls_secs:.1}s)\n\
         tcp: slow-header connections closed by the proxy: {} of {}, {min:.2}s to {max:.2}s after the first byte\n\
         tcp: proxy files open: {fds_start} at the start, {fds_busy} with the connections, {fds_closed} {close_secs:.1}s after closing them, {fds_end} after a second round\n\
         tcp: RSS start {rss_start} kB, with idle connections {rss_idle} kB, after the calls {rss_busy} kB, after closing them {rss_closed} kB ({settle_secs:.1}s later); second round {rss_again} kB, after it {rss_end} kB",
        closed_at.len(),
        slow.len(),
    );
    assert_eq!(tcp_caller, Some(0), "TCP caller: {}", proxy.log_text());
    assert_eq!(
        to_tcp,
        Some(0),
        "call to a TCP target: {}",
        proxy.log_text()
    );
    assert_eq!(udp_callee.wait(Duration::from_secs(5)), Some(0));
    assert_eq!(tcp_callee.wait(Duration::from_secs(5)), Some(0));
    assert_eq!(
        still_open, idle,
        "idle connections were dropped during the test"
    );
    assert_eq!(
        closed_at.len(),
        slow.len(),
        "slow connections left open: {slow:?}"
    );
    assert!(
        min >= 2.5 && max <= 6.5,
        "slow connections closed at {min:.2}..{max:.2}s, not at the 3 s deadline"
    );
    assert_eq!(fds_closed, fds_start, "connections not released");
    assert_eq!(fds_end, fds_start, "connections not released");
    // Once they are gone, RSS returns to within 20 MB of its start, after each round.
    assert!(
        rss_closed <= rss_start + 20 * 1024 && rss_end <= rss_start + 20 * 1024,
        "RSS stayed up after the connections closed: {rss_start} kB at the start, {rss_closed} kB and {rss_end} kB after"
    );
    let high = rss_idle.max(rss_busy);
    assert!(
        rss_again <= high + 5 * 1024,
        "RSS grew from one round of {idle} connections to the next: {high} kB, then {rss_again} kB"
    );
}
