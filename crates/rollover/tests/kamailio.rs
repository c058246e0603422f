//! The real `rollover proxy` binary next to a real Kamailio (5.6), with SIPp callers and
//! callees, all on 127.0.0.1: Kamailio upstream of Rollover, Kamailio downstream of it,
//! and Kamailio's dispatcher probing Rollover with OPTIONS.
//!
//! Kamailio runs in the foreground (`-DD -E`), as the current user, with its pid file and
//! runtime directory in the test's temporary directory and its configuration from
//! `tests/kamailio/*.cfg`. Every process is bounded (SIPp `-m` and `-timeout`, our own
//! deadlines) and stopped by its PID.
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

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Kamailio from the PATH, or where Debian puts it (/usr/sbin is not on every user's PATH).
fn kamailio_bin() -> &'static str {
    let on_path = Command::new("kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path {
        "kamailio"
    } else {
        "/usr/sbin/kamailio"
    }
}

fn tools_available() -> bool {
    sipp_available() && available(kamailio_bin(), "-v", "kamailio")
}

/// Rollover's configuration: UDP on `{{PROXY}}`, every `sip:<digits>@…` to `target_host`
/// (`host:port`) keeping the number; the flood limit raised, as everything here comes
/// from 127.0.0.1.
fn rollover_config(target_host: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\"]\n\n[failover]\nno_response_timeout = \"2s\"\nring_timeout = \"5s\"\n\n[security]\nflood_rate = 1000\nflood_burst = 1000\n\n[[route]]\nname = \"numbers\"\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@{target_host}\"]\n"
    )
}

/// A Kamailio in the foreground, in its own process group; stopped by its PID with
/// SIGTERM (it stops its own children), SIGKILL to its group if it lingers.
struct Kamailio {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its group is the one we gave it: its id is the PID of the child we spawned.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Kamailio {
    /// Starts Kamailio on a free UDP port with `template` from `tests/kamailio/`
    /// (`{{PORT}}` filled here, the rest from `vars`), and waits until it answers.
    fn start(dir: &Dir, template: &str, vars: &[(&str, &str)]) -> Kamailio {
        let port = port();
        let port_s = port.to_string();
        let mut all: Vec<(&str, &str)> = vec![("PORT", &port_s)];
        all.extend_from_slice(vars);
        let cfg = dir.fill("kamailio", template, "kamailio.cfg", &all);
        let run = dir.path("kamailio-run");
        std::fs::create_dir_all(&run).unwrap();
        let log = dir.path("kamailio.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(kamailio_bin());
        cmd.arg("-DD") // no daemon: the process we spawn is Kamailio's main process
            .arg("-E") // log to stderr
            .arg("-f")
            .arg(&cfg)
            .args(["-x", "tlsf", "-m", "64", "-M", "8"])
            .arg("-P")
            .arg(dir.path("kamailio.pid"))
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(dir.root())
            .current_dir(dir.root())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .process_group(0); // its own group, which its shutdown may signal
        let child = cmd.spawn().expect("kamailio");
        let mut k = Kamailio { child, port, log };
        k.wait_ready();
        k
    }

    /// Kamailio answers 404 to an in-dialog request that is not along its route set: one
    /// such answer means its SIP worker runs.
    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("kamailio exited with {s}:\n{}", self.log_text());
            }
            n += 1;
            let probe = format!(
                "OPTIONS sip:probe@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ready-{n}\r\nFrom: <sip:test@127.0.0.1>;tag=a\r\nTo: <sip:probe@127.0.0.1>;tag=b\r\nCall-ID: ready-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                self.port
            );
            let _ = sock.send_to(probe.as_bytes(), ("127.0.0.1", self.port));
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        panic!("kamailio did not answer:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// SIPp's arguments to trace its messages to `<name>.msg`.
fn traced(dir: &Dir, name: &str) -> Vec<String> {
    vec![
        "-trace_msg".into(),
        "-message_file".into(),
        dir.path(&format!("{name}.msg")).display().to_string(),
    ]
}

/// A callee SIPp on its own port running `scenario` for one call.
fn callee(dir: &Dir, scenario: &Path) -> (Proc, u16) {
    sipp_callee(
        dir,
        "callee",
        scenario,
        1,
        "u1",
        "30s",
        &traced(dir, "callee"),
    )
}

/// Runs a caller SIPp for one call to `sip:100@127.0.0.1:port_to`; its exit code.
fn caller(dir: &Dir, port_to: u16, scenario: &Path) -> Option<i32> {
    Caller {
        scenario,
        service: "100",
        calls: 1,
        rate: 10, // SIPp's default
        transport: "u1",
        timeout: "30s",
        extra: &traced(dir, "caller"),
    }
    .run(dir, "caller", port_to, Duration::from_secs(35))
}

/// Everything the processes said, for a failed assertion.
fn dump(dir: &Dir, proxy: &Proxy, kam: &Kamailio) -> String {
    format!(
        "--- rollover:\n{}\n--- kamailio:\n{}\n--- caller errors:\n{}\n--- callee errors:\n{}\n--- caller messages:\n{}\n--- callee messages:\n{}",
        proxy.log_text(),
        kam.log_text(),
        dir.read("caller.err"),
        dir.read("callee.err"),
        dir.read("caller.msg"),
        dir.read("callee.msg"),
    )
}

/// The requests `method` a SIPp received, from its `-message_file`.
fn received(dir: &Dir, file: &str, method: &str) -> Vec<String> {
    dir.read(file)
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message received"))
        .filter_map(|m| m.split_once(" :\n\n").map(|(_, msg)| msg.trim_start()))
        .filter(|msg| msg.starts_with(&format!("{method} ")))
        .map(str::to_owned)
        .collect()
}

/// The caller re-INVITEs and the callee hangs up: both ACKs, the re-INVITE and the BYE
/// reach the other party through both proxies (a Via of each), along the route set both
/// recorded.
fn reinvite_call(dir: &Dir, first_hop: u16, proxy: &Proxy, kam: &Kamailio, mut callee: Proc) {
    let uac = dir.fill("kamailio", "uac_reinvite.xml", "uac.xml", &[]);
    let code = caller(dir, first_hop, &uac);
    assert_eq!(code, Some(0), "caller failed\n{}", dump(dir, proxy, kam));
    assert_eq!(
        callee.wait(Duration::from_secs(10)),
        Some(0),
        "callee failed\n{}",
        dump(dir, proxy, kam)
    );
    let vias = [
        format!("Via: SIP/2.0/UDP 127.0.0.1:{};", proxy.port),
        format!("Via: SIP/2.0/UDP 127.0.0.1:{};", kam.port),
    ];
    let through_both = |msgs: Vec<String>, what: &str, count: usize| {
        assert_eq!(msgs.len(), count, "{what}\n{}", dump(dir, proxy, kam));
        for m in msgs {
            for v in &vias {
                assert!(m.contains(v.as_str()), "{what} without {v}:\n{m}");
            }
        }
    };
    through_both(received(dir, "callee.msg", "ACK"), "ACKs at the callee", 2);
    // The initial INVITE and the re-INVITE (no retransmissions on 127.0.0.1).
    through_both(
        received(dir, "callee.msg", "INVITE"),
        "INVITEs at the callee",
        2,
    );
    through_both(received(dir, "caller.msg", "BYE"), "BYE at the caller", 1);
    // Rollover logs the in-dialog requests it relays statefully (an ACK for a 2xx is
    // forwarded statelessly, without a log line).
    let log = proxy.log_text();
    for method in ["INVITE", "BYE"] {
        assert!(
            log.lines().any(|l| l.contains(&format!("{method} from "))
                && l.contains("relayed along the route set")),
            "Rollover did not relay the in-dialog {method} along the route set\n{}",
            dump(dir, proxy, kam)
        );
    }
    assert!(!log.contains("Not Here"), "{}", dump(dir, proxy, kam));
    let klog = kam.log_text();
    assert_eq!(
        klog.matches("relayed along the route set (du=").count(),
        4,
        "Kamailio loose-routes both ACKs, the re-INVITE and the BYE\n{}",
        dump(dir, proxy, kam)
    );
    for method in ["ACK", "INVITE", "BYE"] {
        assert!(
            klog.contains(&format!("KAM in-dialog {method} ")),
            "Kamailio did not loose-route the in-dialog {method}\n{}",
            dump(dir, proxy, kam)
        );
    }
}

#[test]
fn kamailio_upstream_relays_a_call_through_rollover() {
    if !tools_available() {
        return;
    }
    let dir = Dir::new("upstream");
    let uas = dir.fill("kamailio", "uas_reinvite_hangup.xml", "uas.xml", &[]);
    let (callee, pb) = callee(&dir, &uas);
    let proxy = Proxy::start(&dir, &rollover_config(&format!("127.0.0.1:{pb}")));
    let next = format!("127.0.0.1:{}", proxy.port);
    let kam = Kamailio::start(&dir, "relay.cfg", &[("NEXT", &next)]);
    reinvite_call(&dir, kam.port, &proxy, &kam, callee);
    // The INVITE came from Kamailio, which record-routed it first.
    assert!(
        proxy
            .log_text()
            .contains(&format!("sip:100@127.0.0.1:{pb} answered 200")),
        "{}",
        dump(&dir, &proxy, &kam)
    );
}

#[test]
fn kamailio_downstream_relays_a_call_from_rollover() {
    if !tools_available() {
        return;
    }
    let dir = Dir::new("downstream");
    let uas = dir.fill("kamailio", "uas_reinvite_hangup.xml", "uas.xml", &[]);
    let (callee, pb) = callee(&dir, &uas);
    let next = format!("127.0.0.1:{pb}");
    let kam = Kamailio::start(&dir, "relay.cfg", &[("NEXT", &next)]);
    let proxy = Proxy::start(&dir, &rollover_config(&format!("127.0.0.1:{}", kam.port)));
    reinvite_call(&dir, proxy.port, &proxy, &kam, callee);
    assert!(
        proxy
            .log_text()
            .contains(&format!("sip:100@127.0.0.1:{} answered 200", kam.port)),
        "{}",
        dump(&dir, &proxy, &kam)
    );
}

#[test]
fn kamailio_dispatcher_pings_rollover_and_keeps_it_up() {
    if !tools_available() {
        return;
    }
    let dir = Dir::new("dispatcher");
    let uas = dir.fill("kamailio", "uas_reinvite_hangup.xml", "uas.xml", &[]);
    let (callee, pb) = callee(&dir, &uas);
    let proxy = Proxy::start_with(
        &dir,
        port(),
        &rollover_config(&format!("127.0.0.1:{pb}")),
        &[],
        "info,rollover_proxy=debug",
    );
    let list = dir.path("dispatcher.list");
    std::fs::write(&list, format!("1 sip:127.0.0.1:{}\n", proxy.port)).unwrap();
    let kam = Kamailio::start(&dir, "dispatcher.cfg", &[("LIST", list.to_str().unwrap())]);
    // Four probing rounds: one unanswered ping would mark Rollover down.
    std::thread::sleep(Duration::from_secs(4));
    let pings = proxy
        .log_text()
        .matches("OPTIONS to the proxy answered 200")
        .count();
    assert!(
        pings >= 3,
        "{pings} OPTIONS pings answered\n{}",
        dump(&dir, &proxy, &kam)
    );
    // ds_select_dst() finds Rollover active: the call goes through it.
    reinvite_call(&dir, kam.port, &proxy, &kam, callee);
    let klog = kam.log_text();
    assert!(
        klog.contains(&format!(
            "KAM dispatched INVITE to sip:127.0.0.1:{}",
            proxy.port
        )),
        "{}",
        dump(&dir, &proxy, &kam)
    );
    assert!(
        !klog.contains("destination down") && !klog.contains("no active destination"),
        "{}",
        dump(&dir, &proxy, &kam)
    );
}
