//! The registrar and `location:` targets in the real binary: phones register (over UDP
//! from the test), SIPp plays the phones and the voicemail, the proxy forks by q value.
//!
//! Every process is bounded and stopped by its PID; timers are scaled down to a second.
#![allow(clippy::disallowed_methods)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const REGISTRAR: &str =
    "[registrar]\ndomains = [\"example.com\"]\nmin_expires = 30\nmax_contacts = 5\n";

fn config(route: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\", \"tcp:{{{{PROXY}}}}\"]\n\n{REGISTRAR}\n[failover]\nno_response_timeout = \"1s\"\nring_timeout = \"1s\"\n\n{route}\n"
    )
}

/// The route that calls a user's phones, then voicemail on `vm_port`.
fn users_route(vm_port: u16) -> String {
    format!(
        "[[route]]\nname = \"users\"\ntargets = [\"location:\", \"sip:vm@127.0.0.1:{vm_port}\"]\nfailover.on_response = \"4..\"\n"
    )
}

/// Sends one REGISTER for `user`@example.com from `s` to `proxy`; the response.
fn register(
    s: &UdpSocket,
    proxy: SocketAddr,
    user: &str,
    call_id: &str,
    cseq: u32,
    lines: &[&str],
) -> String {
    let local = s.local_addr().unwrap();
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=r{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for l in lines {
        m.push_str(l);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    s.send_to(m.as_bytes(), proxy).unwrap();
    recv_starting(s, "SIP/2.0 ")
}

fn status(resp: &str) -> &str {
    &resp[8..11]
}

fn answered(dir: &Dir) -> PathBuf {
    dir.scenario(
        "uac_answered.xml",
        "uac_answered.xml",
        &[("HOLD_MS", "100")],
    )
}

fn busy(dir: &Dir, file: &str) -> PathBuf {
    dir.scenario(
        "uas_reject.xml",
        file,
        &[
            ("CODE", "486"),
            ("REASON", "Busy Here"),
            ("DELAY_MS", "200"),
            ("CONTACTS", ""),
        ],
    )
}

fn answer(dir: &Dir, file: &str, ring_ms: &str, answer_ms: &str) -> PathBuf {
    dir.scenario(
        "uas_answer.xml",
        file,
        &[("RING_MS", ring_ms), ("ANSWER_MS", answer_ms)],
    )
}

/// Calls `user` through the proxy once; true when the call was answered.
fn call(dir: &Dir, proxy: &Proxy, user: &str, scenario: &Path) -> bool {
    let code = Caller {
        scenario,
        service: user,
        calls: 1,
        rate: 1,
        transport: "u1",
        timeout: "20s",
        extra: &[],
    }
    .run(dir, "caller", proxy.port, Duration::from_secs(25));
    if code != Some(0) {
        eprintln!("proxy log:\n{}", proxy.log_text());
    }
    code == Some(0)
}

/// Where `needle` first appears in `log` (panics with the log when it does not).
fn at(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
}

#[test]
fn register_rules_through_the_binary() {
    let dir = Dir::new("reg-rules");
    let proxy = Proxy::start(&dir, &config(&users_route(9)));
    let s = sock();
    let to = proxy.addr();
    // Too brief: 423 with Min-Expires.
    let r = register(
        &s,
        to,
        "alice",
        "c1",
        1,
        &["Contact: <sip:a@127.0.0.1:5071>;expires=5"],
    );
    assert_eq!(status(&r), "423", "{r}");
    assert_eq!(header(&r, "Min-Expires"), "30");
    // Two contacts; the 200 lists both with their expiry.
    let r = register(
        &s,
        to,
        "alice",
        "c1",
        2,
        &[
            "Contact: <sip:a@127.0.0.1:5071>;q=0.5, <sip:b@127.0.0.1:5072>",
            "Expires: 120",
        ],
    );
    assert_eq!(status(&r), "200", "{r}");
    assert!(
        r.contains("Contact: <sip:a@127.0.0.1:5071>;expires=120;q=0.5"),
        "{r}"
    );
    assert!(
        r.contains("Contact: <sip:b@127.0.0.1:5072>;expires=120"),
        "{r}"
    );
    // An older CSeq on the same Call-ID is refused; a query lists what is there.
    let r = register(
        &s,
        to,
        "alice",
        "c1",
        1,
        &["Contact: <sip:a@127.0.0.1:5071>;expires=0"],
    );
    assert_eq!(status(&r), "400", "{r}");
    let r = register(&s, to, "alice", "c1", 3, &[]);
    assert_eq!(r.matches("Contact:").count(), 2, "{r}");
    // Contact: * with Expires: 0 removes everything.
    let r = register(&s, to, "alice", "c1", 4, &["Contact: *", "Expires: 0"]);
    assert_eq!(status(&r), "200", "{r}");
    assert!(!r.contains("Contact:"), "{r}");
}

#[test]
fn three_phones_fork_by_q_then_voicemail_answers() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("reg-fork");
    let (_a, pa) = sipp_callee(&dir, "a", &busy(&dir, "a.xml"), 1, "u1", "20s", &[]);
    let (_b, pb) = sipp_callee(&dir, "b", &busy(&dir, "b.xml"), 1, "u1", "20s", &[]);
    // The third rings and never answers: the ring timer cancels it.
    let (_c, pc) = sipp_callee(
        &dir,
        "c",
        &answer(&dir, "c.xml", "0", "10000"),
        1,
        "u1",
        "20s",
        &[],
    );
    let (_v, pv) = sipp_callee(
        &dir,
        "vm",
        &answer(&dir, "vm.xml", "0", "100"),
        1,
        "u1",
        "20s",
        &[],
    );
    let proxy = Proxy::start(&dir, &config(&users_route(pv)));
    let s = sock();
    for (n, (port, q)) in [(pa, "1.0"), (pb, "1.0"), (pc, "0.5")].iter().enumerate() {
        let r = register(
            &s,
            proxy.addr(),
            "alice",
            &format!("phone{n}"),
            1,
            &[
                &format!("Contact: <sip:alice@127.0.0.1:{port}>;q={q}"),
                "Expires: 300",
            ],
        );
        assert_eq!(status(&r), "200", "{r}");
    }
    assert!(call(&dir, &proxy, "alice", &answered(&dir)));
    let log = proxy.log_text();
    // The two q=1.0 phones at once, the q=0.5 phone after both said busy, then voicemail.
    let a = at(&log, &format!("trying sip:alice@127.0.0.1:{pa}"));
    let b = at(&log, &format!("trying sip:alice@127.0.0.1:{pb}"));
    let a_busy = at(&log, &format!("left sip:alice@127.0.0.1:{pa}: 486"));
    let b_busy = at(&log, &format!("left sip:alice@127.0.0.1:{pb}: 486"));
    let c = at(&log, &format!("trying sip:alice@127.0.0.1:{pc}"));
    let c_timeout = at(
        &log,
        &format!("left sip:alice@127.0.0.1:{pc}: ring timeout"),
    );
    let vm = at(&log, &format!("sip:vm@127.0.0.1:{pv} answered 200"));
    assert!(a.max(b) < a_busy.min(b_busy), "{log}");
    assert!(
        a_busy.max(b_busy) < c && c < c_timeout && c_timeout < vm,
        "{log}"
    );
}

#[test]
fn a_user_without_bindings_goes_to_the_next_target_or_480() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("reg-none");
    let (_v, pv) = sipp_callee(
        &dir,
        "vm",
        &answer(&dir, "vm.xml", "0", "100"),
        1,
        "u1",
        "20s",
        &[],
    );
    let route = format!(
        "{}\n[[route]]\nname = \"only phones\"\nmatch.request_uri = \"^sip:bob@\"\ntargets = [\"location:\"]\n",
        users_route(pv)
    )
    .replace("name = \"users\"", "name = \"users\"\nmatch.request_uri = \"^sip:alice@\"");
    let proxy = Proxy::start(&dir, &config(&route));
    assert!(call(&dir, &proxy, "alice", &answered(&dir)));
    let rejected = dir.scenario("uac_rejected.xml", "uac_rejected.xml", &[("CODE", "480")]);
    assert!(call(&dir, &proxy, "bob", &rejected));
}

#[test]
fn a_binding_survives_restart_and_kill_9() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("reg-restart");
    let (_p, pp) = sipp_callee(
        &dir,
        "phone",
        &answer(&dir, "p.xml", "0", "100"),
        2,
        "u1",
        "30s",
        &[],
    );
    let cfg = config(&users_route(9));
    let port = port();
    let mut proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    let s = sock();
    let r = register(
        &s,
        proxy.addr(),
        "alice",
        "p1",
        1,
        &[
            &format!("Contact: <sip:alice@127.0.0.1:{pp}>"),
            "Expires: 300",
        ],
    );
    assert_eq!(status(&r), "200", "{r}");
    // kill -9 right after the 200: the binding was stored before it.
    proxy.kill9();
    let proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    assert!(call(&dir, &proxy, "alice", &answered(&dir)));
    // A clean stop and start too.
    proxy.signal("-TERM");
    let mut proxy = proxy;
    assert_eq!(proxy.wait(Duration::from_secs(10)), Some(0));
    let proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    assert!(call(&dir, &proxy, "alice", &answered(&dir)));
}
