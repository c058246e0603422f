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

/// One test per store, the same body: `sqlite_name` on the embedded SQLite store,
/// `redis_name` on a redis-server of the test's own.
macro_rules! on_both_stores {
    ($($sqlite:ident, $redis:ident => $body:ident;)*) => {$(
        #[test]
        fn $sqlite() {
            $body(&Store::Sqlite);
        }

        #[test]
        fn $redis() {
            if let Some(redis) = RedisServer::start() {
                $body(&Store::Redis(redis));
            }
        }
    )*};
}

#[path = "registrar/auth.rs"]
mod auth;
use auth::add_user;

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

/// A UDP socket on 127.0.0.1:`port` (a phone's), reads bounded to 3 s.
fn sock_on(port: u16) -> UdpSocket {
    let s = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
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

fn register_rules_through_the_binary_on(store: &Store) {
    let dir = Dir::new(&format!("reg-rules-{}", store.name()));
    let proxy = Proxy::start(&dir, &store.config(&users_route(9)));
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

fn three_phones_fork_by_q_then_voicemail_answers_on(store: &Store) {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new(&format!("reg-fork-{}", store.name()));
    let (pa, pb, pc) = (port(), port(), port());
    let (_v, pv) = sipp_callee(
        &dir,
        "vm",
        &answer(&dir, "vm.xml", "0", "100"),
        1,
        "u1",
        "20s",
        &[],
    );
    let proxy = Proxy::start(&dir, &store.config(&users_route(pv)));
    // Each phone registers from the port it then answers on.
    for (n, (port, q)) in [(pa, "1.0"), (pb, "1.0"), (pc, "0.5")].iter().enumerate() {
        let r = register(
            &sock_on(*port),
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
    let (_a, _) = sipp_callee_on(&dir, "a", pa, &busy(&dir, "a.xml"));
    let (_b, _) = sipp_callee_on(&dir, "b", pb, &busy(&dir, "b.xml"));
    // The third rings and never answers: the ring timer cancels it.
    let (_c, _) = sipp_callee_on(&dir, "c", pc, &answer(&dir, "c.xml", "0", "10000"));
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

fn a_binding_survives_restart_and_kill_9_on(store: &Store) {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new(&format!("reg-restart-{}", store.name()));
    let pp = port();
    let cfg = store.config(&users_route(9));
    let port = port();
    let mut proxy = Proxy::start_with(&dir, port, &cfg, &[], "info");
    let r = register(
        &sock_on(pp),
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
    let (_p, _) = sipp_callee_on_for(&dir, "phone", pp, &answer(&dir, "p.xml", "0", "100"), 2);
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

/// A SIPp callee on a given port (a phone answering where it registered from).
fn sipp_callee_on(dir: &Dir, name: &str, p: u16, scenario: &Path) -> (Proc, u16) {
    sipp_callee_on_for(dir, name, p, scenario, 1)
}

/// [`sipp_callee_on`] for `calls` calls.
fn sipp_callee_on_for(dir: &Dir, name: &str, p: u16, scenario: &Path, calls: u32) -> (Proc, u16) {
    let args = strings(&[
        "-sf",
        &scenario.display().to_string(),
        "-p",
        &p.to_string(),
        "-m",
        &calls.to_string(),
        "-t",
        "u1",
        "-timeout",
        "20s",
    ]);
    (sipp(dir, name, &args), p)
}

/// An INVITE to `to` from a stranger's socket `s`.
fn invite_from(s: &UdpSocket, from: &str, to: &str, call_id: &str) -> String {
    let local = s.local_addr().unwrap();
    format!(
        "INVITE {to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=f1\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:x@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn a_phone_behind_nat_is_called_on_the_flow_it_registered_from_on(store: &Store) {
    let dir = Dir::new(&format!("reg-nat-{}", store.name()));
    let proxy = Proxy::start(
        &dir,
        &store.config("[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n"),
    );
    // The phone's Contact names its private address; its REGISTER came from `phone`.
    let phone = sock();
    let r = register(
        &phone,
        proxy.addr(),
        "alice",
        "n1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    let caller = sock();
    let m = invite_from(
        &caller,
        "sip:eve@evil.test",
        "sip:alice@example.com",
        "nat1",
    );
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let got = recv_starting(&phone, "INVITE ");
    // The Request-URI is the registered Contact; the datagram came to the flow.
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{got}"
    );
}

#[test]
fn a_phone_registered_through_an_edge_proxy_is_called_along_its_path() {
    let dir = Dir::new("reg-path");
    let proxy = Proxy::start(
        &dir,
        &config("[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n"),
    );
    let edge = sock();
    let edge_addr = edge.local_addr().unwrap();
    let path = format!("Path: <sip:{edge_addr};lr>");
    let r = register(
        &edge,
        proxy.addr(),
        "alice",
        "p1",
        1,
        &[
            "Contact: <sip:alice@10.0.0.7:5060>",
            &path,
            "Supported: path",
        ],
    );
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains(&path), "the Path is echoed: {r}");
    let caller = sock();
    let m = invite_from(
        &caller,
        "sip:eve@evil.test",
        "sip:alice@example.com",
        "path1",
    );
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let got = recv_starting(&edge, "INVITE ");
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{got}"
    );
    assert!(
        got.contains(&format!("Route: <sip:{edge_addr};lr>")),
        "{got}"
    );
}

on_both_stores! {
    register_rules_through_the_binary, register_rules_through_the_binary_on_redis => register_rules_through_the_binary_on;
    three_phones_fork_by_q_then_voicemail_answers, three_phones_fork_by_q_then_voicemail_answers_on_redis => three_phones_fork_by_q_then_voicemail_answers_on;
    a_binding_survives_restart_and_kill_9, a_binding_survives_restart_and_kill_9_on_redis => a_binding_survives_restart_and_kill_9_on;
    a_phone_behind_nat_is_called_on_the_flow_it_registered_from, a_phone_behind_nat_is_called_on_the_flow_it_registered_from_on_redis => a_phone_behind_nat_is_called_on_the_flow_it_registered_from_on;
}

/// Which store the proxy under test keeps its bindings and users in.
enum Store {
    /// The embedded default.
    Sqlite,
    /// A redis-server of the test's own.
    Redis(RedisServer),
}

impl Store {
    /// A name for the test's directory.
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Redis(_) => "redis",
        }
    }

    /// [`config`] with this store's `[store]` section.
    fn config(&self, route: &str) -> String {
        match self {
            Store::Sqlite => config(route),
            Store::Redis(r) => format!("[store]\nurl = \"{}\"\n\n{}", r.url(), config(route)),
        }
    }

    /// `rollover user add` into this store.
    fn add_user(&self, dir: &Dir, user: &str, password: &str) {
        if let Store::Redis(r) = self {
            std::fs::write(
                dir.path("users.toml"),
                format!("[store]\nurl = \"{}\"\n", r.url()),
            )
            .unwrap();
        }
        add_user(dir, user, password);
    }
}

/// `redis-server` on a free loopback port without persistence, killed by its PID on drop.
struct RedisServer {
    _proc: Proc,
    port: u16,
}

impl RedisServer {
    /// Starts one; `None` (skip) when it is not installed, except under `CI=true`.
    fn start() -> Option<RedisServer> {
        if !available("redis-server", "--version", "redis-server") {
            return None;
        }
        let port = port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let r = RedisServer {
            _proc: Proc::new(child, "redis-server"),
            port,
        };
        wait_listening(port);
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

#[test]
fn two_nodes_on_one_redis_see_each_others_registrations() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = Store::Redis(redis);
    let phones = "[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n";
    let dir_a = Dir::new("reg-node-a");
    let dir_b = Dir::new("reg-node-b");
    let a = Proxy::start(&dir_a, &store.config(phones));
    let b = Proxy::start(&dir_b, &store.config(phones));
    let caller = sock();
    // Node b looks alice up first: no binding (480), and that answer is cached.
    let m = invite_from(&caller, "sip:eve@evil.test", "sip:alice@example.com", "n0");
    caller.send_to(m.as_bytes(), b.addr()).unwrap();
    let r = recv_starting(&caller, "SIP/2.0 4");
    assert_eq!(status(&r), "480", "{r}");
    // Alice registers on node a; node b hears of it and calls her.
    let phone = sock();
    let r = register(
        &phone,
        a.addr(),
        "alice",
        "n1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    let mut reached = false;
    for i in 0..20 {
        let m = invite_from(
            &caller,
            "sip:eve@evil.test",
            "sip:alice@example.com",
            &format!("n{}", i + 2),
        );
        caller.send_to(m.as_bytes(), b.addr()).unwrap();
        if quiet(&phone, Duration::from_millis(200), |_| false)
            .is_some_and(|m| m.starts_with("INVITE "))
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "node b never called the phone:\n{}", b.log_text());
}

#[test]
fn a_phone_registered_over_tcp_is_called_on_its_connection() {
    use std::io::{Read, Write};
    let dir = Dir::new("reg-tcp");
    let proxy = Proxy::start(
        &dir,
        &config("[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n"),
    );
    // The phone keeps its connection open; its Contact names an address nobody listens on.
    let mut phone = std::net::TcpStream::connect(proxy.addr()).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let local = phone.local_addr().unwrap();
    let reg = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-tcp1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=t1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: tcp1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@10.0.0.7:5060;transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone.write_all(reg.as_bytes()).unwrap();
    let mut buf = vec![0u8; 8192];
    let n = phone.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status(&resp), "200", "{resp}");
    let caller = sock();
    let m = invite_from(
        &caller,
        "sip:eve@evil.test",
        "sip:alice@example.com",
        "tcp2",
    );
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let n = phone.read(&mut buf).unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060;transport=tcp SIP/2.0"),
        "{got}\n{}",
        proxy.log_text()
    );
}

#[test]
fn with_two_workers_every_call_finds_a_binding_whichever_worker_took_the_register() {
    let dir = Dir::new("reg-workers");
    let cfg = config("[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n")
        .replace("[server]\n", "[server]\nworkers = 2\n");
    let proxy = Proxy::start(&dir, &cfg);
    let phone = sock();
    let r = register(
        &phone,
        proxy.addr(),
        "alice",
        "w1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    // Calls with many Call-IDs: they hash to both workers; each reaches the phone.
    let caller = sock();
    for i in 0..8 {
        let m = invite_from(
            &caller,
            "sip:eve@evil.test",
            "sip:alice@example.com",
            &format!("wk{i}"),
        );
        caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
        let got = recv_starting(&phone, "INVITE ");
        assert!(got.contains(&format!("Call-ID: wk{i}")), "{got}");
    }
}

#[test]
fn a_script_reaches_registered_phones_through_the_rules() {
    let dir = Dir::new("reg-script");
    std::fs::write(
        dir.path("routes.lua"),
        "function request_route(req)\n  req:dialplan()\nend\n",
    )
    .unwrap();
    let cfg = config("[script]\nfile = \"routes.lua\"\n\n[[route]]\nname = \"phones\"\ntargets = [\"location:\"]\n");
    let proxy = Proxy::start(&dir, &cfg);
    let phone = sock();
    let r = register(
        &phone,
        proxy.addr(),
        "alice",
        "s1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    let caller = sock();
    let m = invite_from(&caller, "sip:eve@evil.test", "sip:alice@example.com", "sc1");
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let got = recv_starting(&phone, "INVITE ");
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{got}"
    );
}

#[test]
fn a_script_calls_registered_phones_with_req_lookup() {
    let dir = Dir::new("reg-lookup");
    std::fs::write(
        dir.path("routes.lua"),
        "function request_route(req)\n  req:lookup()\nend\n",
    )
    .unwrap();
    let cfg = config("[script]\nfile = \"routes.lua\"\n");
    let proxy = Proxy::start(&dir, &cfg);
    let caller = sock();
    // No phone yet: 480.
    let m = invite_from(&caller, "sip:eve@evil.test", "sip:alice@example.com", "lk0");
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let r = recv_starting(&caller, "SIP/2.0 4");
    assert_eq!(status(&r), "480", "{r}");
    let phone = sock();
    let r = register(
        &phone,
        proxy.addr(),
        "alice",
        "l1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    let m = invite_from(&caller, "sip:eve@evil.test", "sip:alice@example.com", "lk1");
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let got = recv_starting(&phone, "INVITE ");
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{got}"
    );
}

#[test]
fn a_failure_route_falls_back_to_registered_phones() {
    // The desk phone (nobody on port 9) fails; the failure route calls alice's phones.
    let dir = Dir::new("reg-failure-lookup");
    std::fs::write(
        dir.path("routes.lua"),
        "function request_route(req)\n  req:on_failure(\"phones\")\n  req:relay(\"sip:desk@127.0.0.1:9\", { no_response_timeout = 1 })\nend\n\
         function failure_route_phones(req, failed)\n  req:lookup()\nend\n",
    )
    .unwrap();
    let proxy = Proxy::start(&dir, &config("[script]\nfile = \"routes.lua\"\n"));
    let phone = sock();
    let r = register(
        &phone,
        proxy.addr(),
        "alice",
        "f1",
        1,
        &["Contact: <sip:alice@10.0.0.7:5060>"],
    );
    assert_eq!(status(&r), "200", "{r}");
    let caller = sock();
    let m = invite_from(&caller, "sip:eve@evil.test", "sip:alice@example.com", "fl1");
    caller.send_to(m.as_bytes(), proxy.addr()).unwrap();
    let got = quiet(&phone, Duration::from_secs(4), |_| false)
        .unwrap_or_else(|| panic!("no INVITE:\n{}", proxy.log_text()));
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{got}"
    );
}
