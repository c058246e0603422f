//! Transaction behaviour of the real binary over real sockets on 127.0.0.1: retransmitted
//! requests absorbed, lost responses retransmitted, transport errors acted on at once.
//! The caller and the callee are plain sockets here, so each packet can be held back.
// These tests drive a real process, so they read the wall clock.
#![allow(clippy::disallowed_methods)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The proxy under test, its address and its directory (its secret file and
/// `rollover.toml` are there); the proxy stops before the directory goes.
struct Running {
    _proxy: Proxy,
    addr: SocketAddr,
    dir: Dir,
}

fn proxy(route: &str) -> Running {
    let port = port();
    let dir = Dir::new(&port.to_string());
    let proxy = Proxy::start_with(
        &dir,
        port,
        &format!("[server]\nlisten = [\"udp:{{{{PROXY}}}}\", \"tcp:{{{{PROXY}}}}\"]\n[failover]\nno_response_timeout = 5\n{route}"),
        &[],
        "info",
    );
    Running {
        addr: proxy.addr(),
        _proxy: proxy,
        dir,
    }
}

fn invite(caller: &UdpSocket, proxy: SocketAddr, call: &str) -> String {
    let me = caller.local_addr().unwrap();
    format!(
        "INVITE sip:100@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\nMax-Forwards: 70\r\nTo: <sip:100@{proxy}>\r\nFrom: <sip:caller@{me}>;tag=c-{call}\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A response from the callee socket to the request it received.
fn respond(req: &str, code: u16, reason: &str, tag: &str) -> String {
    let vias: Vec<&str> = req.lines().filter(|l| l.starts_with("Via:")).collect();
    format!(
        "SIP/2.0 {code} {reason}\r\n{}\r\nFrom: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        vias.join("\r\n"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq")
    )
}

#[test]
fn retransmitted_invite_is_absorbed_and_answered_with_the_last_provisional() {
    let callee = sock();
    let p = proxy(&format!(
        "[[route]]\nmatch.method = \"^INVITE$\"\ntargets = [\"sip:a@{}\"]\n",
        callee.local_addr().unwrap()
    ));
    let caller = sock();
    let inv = invite(&caller, p.addr, "retrans-1");
    caller.send_to(inv.as_bytes(), p.addr).unwrap();
    assert!(recv(&caller).starts_with("SIP/2.0 100"));
    let fwd = recv(&callee);
    assert!(fwd.starts_with("INVITE sip:a@"));
    callee
        .send_to(respond(&fwd, 180, "Ringing", "t1").as_bytes(), p.addr)
        .unwrap();
    assert!(recv(&caller).starts_with("SIP/2.0 180"));
    // The caller did not hear the 180 (say) and retransmits.
    caller.send_to(inv.as_bytes(), p.addr).unwrap();
    assert!(
        recv(&caller).starts_with("SIP/2.0 180"),
        "the last provisional is resent"
    );
    assert_eq!(
        quiet(&callee, Duration::from_millis(700), |_| false),
        None,
        "no second INVITE downstream"
    );
}

#[test]
fn lost_responses_are_retransmitted_and_acked() {
    let callee = sock();
    let p = proxy(&format!(
        "[[route]]\nmatch.method = \"^INVITE$\"\ntargets = [\"sip:a@{}\"]\n",
        callee.local_addr().unwrap()
    ));
    let caller = sock();
    let inv = invite(&caller, p.addr, "lost-1");
    caller.send_to(inv.as_bytes(), p.addr).unwrap();
    assert!(recv(&caller).starts_with("SIP/2.0 100"));
    let fwd = recv(&callee);
    let busy = respond(&fwd, 486, "Busy Here", "t2");
    callee.send_to(busy.as_bytes(), p.addr).unwrap();
    let ack = recv(&callee);
    assert!(ack.starts_with("ACK sip:a@"), "{ack}");
    assert!(
        header(&ack, "To").contains("tag=t2"),
        "the ACK carries the response's To tag"
    );
    // Our ACK was lost: the callee retransmits its 486; the proxy ACKs again.
    callee.send_to(busy.as_bytes(), p.addr).unwrap();
    assert!(recv(&callee).starts_with("ACK sip:a@"));
    // Upstream, the caller gets the 486 once and does not ACK: Timer G resends it at T1.
    let first = Instant::now();
    assert!(recv(&caller).starts_with("SIP/2.0 486"));
    let again = recv(&caller);
    assert!(again.starts_with("SIP/2.0 486"), "{again}");
    assert!(first.elapsed() >= Duration::from_millis(400));
    // Now the caller ACKs: retransmissions stop.
    let me = caller.local_addr().unwrap();
    let to = header(&again, "To");
    let ack = format!("ACK sip:100@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-lost-1\r\nMax-Forwards: 70\r\nTo: {to}\r\nFrom: <sip:caller@{me}>;tag=c-lost-1\r\nCall-ID: lost-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", p.addr);
    caller.send_to(ack.as_bytes(), p.addr).unwrap();
    assert_eq!(quiet(&caller, Duration::from_millis(1600), |_| false), None);
}

#[test]
fn closed_tcp_target_rolls_over_at_once_not_after_timer_b() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // dropped: closed
    let callee = sock();
    let route = format!("[[route]]\nmatch.method = \"^INVITE$\"\ntargets = [\"sip:dead@{closed}/TCP\", \"sip:b@{}\"]\n", callee.local_addr().unwrap());
    let p = proxy(&route);
    let caller = sock();
    let start = Instant::now();
    caller
        .send_to(invite(&caller, p.addr, "tcp-1").as_bytes(), p.addr)
        .unwrap();
    let fwd = recv(&callee);
    let took = start.elapsed();
    assert!(fwd.starts_with("INVITE sip:b@"));
    assert!(
        took < Duration::from_millis(500),
        "rolled over after {took:?}, not after a timer"
    );
}

#[test]
fn unparseable_requests_with_a_readable_via_get_400_or_513() {
    let p = proxy("");
    let caller = sock();
    // A UDP request shorter than its Content-Length: 400 (RFC 3261 §18.3).
    let short = invite(&caller, p.addr, "short").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 300\r\n\r\nv=0\r\n",
    );
    caller.send_to(short.as_bytes(), p.addr).unwrap();
    let r = recv(&caller);
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert_eq!(header(&r, "Call-ID"), "short");
    // Too many header fields: 513 Message Too Large (§21.5.14), no larger than the request.
    let many = invite(&caller, p.addr, "many").replace(
        "Content-Length: 0",
        &format!("{}Content-Length: 0", "X-Pad: 1\r\n".repeat(200)),
    );
    caller.send_to(many.as_bytes(), p.addr).unwrap();
    let r = recv(&caller);
    assert!(r.starts_with("SIP/2.0 513 Message Too Large"), "{r}");
    assert!(r.len() < many.len());
    // Junk with no Via: nothing comes back.
    caller
        .send_to(b"\x01\x02 not sip at all\r\n\r\n", p.addr)
        .unwrap();
    assert_eq!(quiet(&caller, Duration::from_millis(500), |_| false), None);
}

#[test]
fn a_200_crossing_the_callers_cancel_answers_the_call_and_nobody_is_left_half_open() {
    let callee = sock();
    let p = proxy(&format!(
        "[[route]]\ntargets = [\"sip:a@{}\"]\n",
        callee.local_addr().unwrap()
    ));
    let caller = sock();
    let me = caller.local_addr().unwrap();
    let inv = invite(&caller, p.addr, "crossed-1");
    caller.send_to(inv.as_bytes(), p.addr).unwrap();
    let fwd = recv_starting(&callee, "INVITE");
    callee
        .send_to(respond(&fwd, 180, "Ringing", "t1").as_bytes(), p.addr)
        .unwrap();
    recv_starting(&caller, "SIP/2.0 180");
    // The caller gives up…
    let cancel = format!("CANCEL sip:100@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-crossed-1\r\nMax-Forwards: 70\r\nTo: <sip:100@{}>\r\nFrom: <sip:caller@{me}>;tag=c-crossed-1\r\nCall-ID: crossed-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n", p.addr, p.addr);
    caller.send_to(cancel.as_bytes(), p.addr).unwrap();
    // …while the callee's 200 is already on its way: it answered before the CANCEL reached
    // it. The proxy has cancelled its branch when the 200 arrives; waiting for the
    // forwarded CANCEL first makes that order certain (sending both at once would race
    // them inside the proxy, and a 200 that wins leaves nothing to cancel).
    let fwd_cancel = recv_starting(&callee, "CANCEL");
    let ok = respond(&fwd, 200, "OK", "t1").replace(
        "Content-Length: 0",
        &format!(
            "Contact: <sip:a@{}>\r\nRecord-Route: {}\r\nContent-Length: 0",
            callee.local_addr().unwrap(),
            header(&fwd, "Record-Route")
        ),
    );
    callee.send_to(ok.as_bytes(), p.addr).unwrap();
    callee
        .send_to(respond(&fwd_cancel, 200, "OK", "t1").as_bytes(), p.addr)
        .unwrap();
    // The caller gets the 200 for the CANCEL and the 200 for the INVITE, and no 487.
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end && seen.len() < 2 {
        let m = recv(&caller);
        if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
            seen.push(format!("{} {}", &m[8..11], header(&m, "CSeq")));
        }
    }
    seen.sort();
    assert_eq!(seen, ["200 1 CANCEL", "200 1 INVITE"]);
    assert_eq!(
        quiet(&caller, Duration::from_millis(600), |m| !m
            .starts_with("SIP/2.0 487")),
        None,
        "no 487 after the 200"
    );
    // The caller completes the dialog along the route set: ACK and BYE reach the callee.
    let rr = header(&ok, "Record-Route").to_owned();
    for (method, seq) in [("ACK", 1), ("BYE", 2)] {
        let req = format!("{method} sip:a@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-crossed-{method}\r\nMax-Forwards: 70\r\nRoute: {rr}\r\nTo: <sip:100@{}>;tag=t1\r\nFrom: <sip:caller@{me}>;tag=c-crossed-1\r\nCall-ID: crossed-1\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n", callee.local_addr().unwrap(), p.addr);
        caller.send_to(req.as_bytes(), p.addr).unwrap();
        recv_starting(&callee, method);
    }
}

#[test]
fn a_source_outside_allow_gets_403_whatever_its_route_or_to_tag() {
    let callee = sock();
    let p = proxy(&format!(
        "[security]\nallow = [\"10.0.0.0/8\"]\n[[route]]\ntargets = [\"sip:a@{}\"]\n",
        callee.local_addr().unwrap()
    ));
    let caller = sock();
    let inv = invite(&caller, p.addr, "allow-1");
    caller.send_to(inv.as_bytes(), p.addr).unwrap();
    let r = recv_starting(&caller, "SIP/2.0");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    let me = caller.local_addr().unwrap();
    let bye = format!("BYE sip:a@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-allow-bye\r\nMax-Forwards: 70\r\nRoute: <sip:{};lr;tk=0011223344556677>\r\nTo: <sip:100@{}>;tag=t1\r\nFrom: <sip:caller@{me}>;tag=c-allow\r\nCall-ID: allow-2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", callee.local_addr().unwrap(), p.addr, p.addr);
    caller.send_to(bye.as_bytes(), p.addr).unwrap();
    let r = recv_starting(&caller, "SIP/2.0");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert_eq!(quiet(&callee, Duration::from_millis(300), |_| false), None);
}

#[test]
fn an_unframeable_tcp_request_gets_513_before_the_connection_closes() {
    use std::io::{Read, Write};
    let p = proxy("");
    let mut tcp = std::net::TcpStream::connect(p.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = tcp.local_addr().unwrap();
    let many = format!(
        "INVITE sip:100@{} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-tcp-many\r\nMax-Forwards: 70\r\nTo: <sip:100@{}>\r\nFrom: <sip:caller@{me}>;tag=c-many\r\nCall-ID: tcp-many\r\nCSeq: 1 INVITE\r\n{}Content-Length: 0\r\n\r\n",
        p.addr,
        p.addr,
        "X-Pad: 1\r\n".repeat(200)
    );
    tcp.write_all(many.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got); // until the proxy closes it
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SIP/2.0 513 Message Too Large"), "{text}");
    assert!(text.contains("Call-ID: tcp-many"), "{text}");
}

#[test]
fn simulate_answers_malformed_and_forged_requests_as_the_live_proxy_does() {
    let callee = sock();
    let p = proxy(&format!(
        "[[route]]\ntargets = [\"sip:a@{}\"]\n",
        callee.local_addr().unwrap()
    ));
    let caller = sock();
    let me = caller.local_addr().unwrap();
    let malformed = invite(&caller, p.addr, "sim-short").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 300\r\n\r\nv=0\r\n",
    );
    let forged = format!("BYE sip:x@203.0.113.66 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sim-bye\r\nMax-Forwards: 70\r\nRoute: <sip:{};lr;tk=0011223344556677>\r\nTo: <sip:b@example.com>;tag=t1\r\nFrom: <sip:a@example.com>;tag=f1\r\nCall-ID: sim-forged\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", p.addr);
    for (name, bytes) in [("malformed", malformed), ("forged", forged)] {
        // The live proxy's answer…
        caller.send_to(bytes.as_bytes(), p.addr).unwrap();
        let live = recv_starting(&caller, "SIP/2.0");
        let live_line = live.lines().next().unwrap().to_owned();
        // …and the simulator's, for the same bytes from the same source.
        let file = p.dir.path(&format!("{name}.sip"));
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rollover"))
            .args(["simulate", "-c"])
            .arg(p.dir.path("rollover.toml"))
            .arg("-r")
            .arg(&file)
            .args(["-w", "", "--source", &me.to_string()])
            .current_dir(p.dir.root())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let sim_line = text
            .lines()
            .find_map(|l| l.split_once("caller ← ").map(|(_, r)| r.to_owned()))
            .unwrap_or_else(|| panic!("{name}: no answer in the simulation:\n{text}"));
        assert_eq!(sim_line, live_line, "{name}");
    }
}
