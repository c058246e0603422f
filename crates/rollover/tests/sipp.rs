//! The real `rollover proxy` binary against SIPp callers and callees on 127.0.0.1.
//!
//! Every process is bounded (SIPp `-m` and `-timeout`, our own deadline) and stopped by
//! its PID. Timers are scaled down to about a second.
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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A callee SIPp on its own port running `scenario`, for `calls` calls.
fn callee(dir: &Dir, name: &str, scenario: &Path, calls: u32, transport: &str) -> (Proc, u16) {
    sipp_callee(dir, name, scenario, calls, transport, "40s", &[])
}

/// Runs a caller SIPp for `calls` calls; true when every call succeeded.
fn caller(dir: &Dir, proxy: &Proxy, scenario: &Path, calls: u32, rate: u32) -> bool {
    let ok = caller_to(dir, proxy.port, scenario, calls, rate);
    if !ok {
        eprintln!("proxy log:\n{}", proxy.log_text());
    }
    ok
}

/// Runs a caller SIPp against 127.0.0.1:`port`; true when every call succeeded.
fn caller_to(dir: &Dir, port_to: u16, scenario: &Path, calls: u32, rate: u32) -> bool {
    let code = Caller {
        scenario,
        service: "100",
        calls,
        rate,
        transport: "u1",
        timeout: "40s",
        extra: &[],
    }
    .run(dir, "caller", port_to, Duration::from_secs(45));
    code == Some(0)
}

fn answered(dir: &Dir) -> PathBuf {
    dir.scenario(
        "uac_answered.xml",
        "uac_answered.xml",
        &[("HOLD_MS", "100")],
    )
}

fn rejected_caller(dir: &Dir, code: &str) -> PathBuf {
    dir.scenario("uac_rejected.xml", "uac_rejected.xml", &[("CODE", code)])
}

fn reject_scenario(
    dir: &Dir,
    file: &str,
    code: &str,
    reason: &str,
    delay_ms: &str,
    contacts: &str,
) -> PathBuf {
    dir.scenario(
        "uas_reject.xml",
        file,
        &[
            ("CODE", code),
            ("REASON", reason),
            ("DELAY_MS", delay_ms),
            ("CONTACTS", contacts),
        ],
    )
}

fn answer_scenario(dir: &Dir, file: &str, ring_ms: &str, answer_ms: &str) -> PathBuf {
    dir.scenario(
        "uas_answer.xml",
        file,
        &[("RING_MS", ring_ms), ("ANSWER_MS", answer_ms)],
    )
}

fn config(route: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\", \"tcp:{{{{PROXY}}}}\"]\n\n[failover]\nno_response_timeout = \"1s\"\nring_timeout = \"1s\"\n\n{route}\n"
    )
}

#[test]
fn first_target_503_second_answers() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("503");
    let (_a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "503", "Service Unavailable", "0", ""),
        1,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let proxy = Proxy::start(&dir, &config(&format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n")));
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    let log = proxy.log_text();
    assert!(log.contains("503 (always rolls over"), "{log}");
    assert!(
        log.contains(&format!("sip:b@127.0.0.1:{pb} answered 200")),
        "{log}"
    );
}

#[test]
fn a_redirect_outside_the_reach_is_not_followed_and_the_next_target_answers() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("reach");
    // 127.0.0.9 is named nowhere in the plan and is not the redirecting target's host.
    let contacts = "Contact: <sip:premium@127.0.0.9:5999>\n";
    let (_a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "302", "Moved Temporarily", "0", contacts),
        1,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let proxy = Proxy::start(&dir, &config(&format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n")));
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    let log = proxy.log_text();
    assert!(
        log.contains(
            "redirected to sip:premium@127.0.0.9:5999: host outside the reach, not followed"
        ),
        "{log}"
    );
    assert!(!log.contains("trying sip:premium@"), "{log}");
    assert!(
        log.contains(&format!("sip:b@127.0.0.1:{pb} answered 200")),
        "{log}"
    );
}

#[test]
fn a_target_stalling_after_100_trying_is_left_at_the_ring_timeout() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("trying");
    let silent = dir.scenario("uas_trying_silent.xml", "a.xml", &[]);
    let (mut a, pa) = callee(&dir, "a", &silent, 1, "u1");
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    // no_response_timeout and ring_timeout are 1 s here; Timer C stays at 181 s.
    let proxy = Proxy::start(&dir, &config(&format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n")));
    let start = Instant::now();
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "not held for Timer C"
    );
    let log = proxy.log_text();
    assert!(log.contains("ring timeout after 1s; rolling over"), "{log}");
    assert!(
        log.contains(&format!("sip:b@127.0.0.1:{pb} answered 200")),
        "{log}"
    );
    assert_eq!(
        a.wait(Duration::from_secs(10)),
        Some(0),
        "the stalled target got its CANCEL"
    );
}

#[test]
fn ringing_past_ring_timeout_is_cancelled_and_second_answers() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("ring");
    let (mut a, pa) = callee(
        &dir,
        "a",
        &answer_scenario(&dir, "a.xml", "0", "20000"),
        1,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let proxy = Proxy::start(&dir, &config(&format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n")));
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    let log = proxy.log_text();
    assert!(log.contains("ring timeout after 1s"), "{log}");
    // The first callee took the CANCEL path of its scenario and finished cleanly.
    assert_eq!(
        a.wait(Duration::from_secs(10)),
        Some(0),
        "callee a: CANCEL, 487, ACK"
    );
}

#[test]
fn silent_first_target_rolls_over_after_no_response_timeout() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("silent");
    let silent = dir.scenario("uas_silent.xml", "a.xml", &[("HOLD_MS", "3000")]);
    let (_a, pa) = callee(&dir, "a", &silent, 1, "u1");
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let proxy = Proxy::start(&dir, &config(&format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n")));
    let start = Instant::now();
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    assert!(start.elapsed() >= Duration::from_secs(1));
    let log = proxy.log_text();
    assert!(log.contains("no response within 1s"), "{log}");
}

#[test]
fn redirect_with_two_contacts_is_tried_in_q_order() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("302");
    let (_low, plow) = callee(
        &dir,
        "low",
        &answer_scenario(&dir, "low.xml", "0", "100"),
        1,
        "u1",
    );
    let (_high, phigh) = callee(
        &dir,
        "high",
        &reject_scenario(&dir, "high.xml", "486", "Busy Here", "0", ""),
        1,
        "u1",
    );
    let contacts = format!(
        "Contact: <sip:low@127.0.0.1:{plow}>;q=0.5\nContact: <sip:high@127.0.0.1:{phigh}>;q=1.0\n"
    );
    let (_r, pr) = callee(
        &dir,
        "redir",
        &reject_scenario(&dir, "r.xml", "302", "Moved Temporarily", "0", &contacts),
        1,
        "u1",
    );
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[route]]\nname = \"t\"\ntargets = [\"sip:r@127.0.0.1:{pr}\"]\n"
        )),
    );
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    let log = proxy.log_text();
    let redirected =
        format!("redirected to [sip:high@127.0.0.1:{phigh}, sip:low@127.0.0.1:{plow}]");
    assert!(log.contains(&redirected), "{log}");
    let high = log
        .find(&format!("left sip:high@127.0.0.1:{phigh}"))
        .expect("high tried and left");
    let low = log
        .find(&format!("sip:low@127.0.0.1:{plow} answered 200"))
        .expect("low answered");
    assert!(high < low);
}

#[test]
fn parallel_group_486_and_200_gives_the_caller_200() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("parallel");
    let (mut a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "200", ""),
        1,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "600"),
        1,
        "u1",
    );
    let route = format!("[[route]]\nname = \"t\"\nmode = \"parallel\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n");
    let proxy = Proxy::start(&dir, &config(&route));
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    assert_eq!(
        a.wait(Duration::from_secs(5)),
        Some(0),
        "the 486 leg was ACKed and is gone"
    );
}

#[test]
fn all_targets_fail_and_the_caller_gets_the_best_response() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("allfail");
    let (_a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "503", "Service Unavailable", "0", ""),
        1,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &reject_scenario(&dir, "b.xml", "486", "Busy Here", "0", ""),
        1,
        "u1",
    );
    let (_c, pc) = callee(
        &dir,
        "c",
        &reject_scenario(&dir, "c.xml", "500", "Server Internal Error", "0", ""),
        1,
        "u1",
    );
    let route = format!("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\", \"sip:c@127.0.0.1:{pc}\"]\n");
    let proxy = Proxy::start(&dir, &config(&route));
    assert!(caller(&dir, &proxy, &rejected_caller(&dir, "486"), 1, 1));
    assert!(proxy
        .log_text()
        .contains("final response 486 sent upstream"));
}

#[test]
fn malformed_invite_gets_400_naming_the_fault() {
    let dir = Dir::new("bad");
    let proxy = Proxy::start(
        &dir,
        &config("[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:9\"]\n"),
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    let bad = format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bad\r\nTo: <sip:100@h>\r\nFrom: <sip:a@h>;tag=1\r\nCall-ID: bad-1\r\nCSeq: 99999999999 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), ("127.0.0.1", proxy.port))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(
        resp.starts_with("SIP/2.0 400 Bad Request (malformed CSeq header at byte"),
        "{resp}"
    );
    // Garbage is dropped without a reply, and the proxy keeps serving.
    sock.send_to(b"\x00\xffgarbage", ("127.0.0.1", proxy.port))
        .unwrap();
    sock.send_to(bad.as_bytes(), ("127.0.0.1", proxy.port))
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"));
}

#[test]
fn config_error_stops_the_start_with_file_line_and_key() {
    let dir = Dir::new("badcfg");
    let cfg = dir.path("bad.toml");
    std::fs::write(&cfg, "[failover]\nring_timeout = 20\n\n[[route]]\ntargets = [\"sip:a@h\"]\nfailover.on_response = \"4(\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .args(["proxy", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6:") && err.contains("route[1].failover.on_response"),
        "{err}"
    );
}

#[test]
fn two_workers_carry_every_call_and_share_the_calls() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("workers");
    let calls = 300;
    let (_a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
        calls,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "20"),
        calls,
        "u1",
    );
    let cfg = format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\"]\nworkers = 2\n\n[security]\nflood_rate = 1000\nflood_burst = 1000\n\n[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n"
    );
    let proxy = Proxy::start(&dir, &cfg);
    // Each call's INVITE, 486, ACK, 200, ACK and BYE must meet in one worker: a message
    // handed to the wrong one finds no transaction and the call fails.
    assert!(caller(&dir, &proxy, &answered(&dir), calls, 150));
    wait_stats(&proxy, "routed", u64::from(calls));
    let log = proxy.log_text();
    assert!(log.contains("2 worker(s)"), "{log}");
    for w in ["worker=0", "worker=1"] {
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("stats: routed=") && l.contains(w))
            .unwrap_or_else(|| panic!("no stats from {w}: {log}"));
        let routed: u64 = line
            .split("routed=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        // Call-IDs hash evenly: each worker has a fair share.
        assert!(routed > u64::from(calls) / 4, "{w}: {line}");
    }
    // Whatever sockets the system chose, about half of what arrives belongs to the other
    // worker's calls.
    assert!(stats_total(&log, "handed_off") > 0, "{log}");
}

#[path = "sipp/seeds.rs"]
mod seeds;

#[test]
fn ten_thousand_junk_datagrams_during_calls_fail_no_call() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("junk");
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "50"),
        40,
        "u1",
    );
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[route]]\nname = \"t\"\ntargets = [\"sip:b@127.0.0.1:{pb}\"]\n"
        )),
    );
    let port = proxy.port;
    let junk = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let samples: [&[u8]; 4] = [
            b"\x00\x01\x02garbage",
            b"INVITE sip:x SIP/2.0\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnope\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\nCSeq: x\r\n\r\n",
        ];
        for i in 0..10_000usize {
            let _ = s.send_to(samples[i % samples.len()], ("127.0.0.1", port));
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    assert!(caller(&dir, &proxy, &answered(&dir), 40, 20));
    junk.join().unwrap();
    assert!(proxy.log_text().contains("dropped unparseable message"));
}

#[test]
fn a_target_that_dies_mid_run_is_rolled_over_on_every_later_call() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("dies");
    let (mut a, pa) = callee(
        &dir,
        "a",
        &answer_scenario(&dir, "a.xml", "0", "50"),
        100,
        "u1",
    );
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "50"),
        100,
        "u1",
    );
    let route = format!(
        "[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n"
    );
    let proxy = Proxy::start(&dir, &config(&route));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        a.kill(); // stop the process by its PID
    });
    // 12 calls over 3 s: the first ones reach a, the later ones roll over to b.
    assert!(caller(&dir, &proxy, &answered(&dir), 12, 4));
    killer.join().unwrap();
    let log = proxy.log_text();
    assert!(
        log.contains(&format!("sip:a@127.0.0.1:{pa} answered 200")),
        "{log}"
    );
    assert!(
        log.contains(&format!("sip:b@127.0.0.1:{pb} answered 200")),
        "{log}"
    );
    let left = log.matches(&format!("left sip:a@127.0.0.1:{pa}")).count();
    let answered_b = log
        .matches(&format!("sip:b@127.0.0.1:{pb} answered 200"))
        .count();
    assert_eq!(
        left, answered_b,
        "every call after the death rolled over: {log}"
    );
}

#[test]
fn a_retransmitted_invite_from_sipp_is_absorbed() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("dupinvite");
    let (mut b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "200"),
        1,
        "u1",
    );
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[route]]\nname = \"t\"\ntargets = [\"sip:b@127.0.0.1:{pb}\"]\n"
        )),
    );
    let uac = dir.scenario("uac_duplicate.xml", "uac.xml", &[]);
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    // One INVITE reached the callee: it finished its single call cleanly.
    assert_eq!(b.wait(Duration::from_secs(5)), Some(0));
    assert_eq!(
        proxy.log_text().matches("trying sip:b@").count(),
        1,
        "{}",
        proxy.log_text()
    );
}

#[test]
fn a_retransmitted_final_from_sipp_is_acked_again() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("refinal");
    let twice = dir.scenario("uas_reject_twice.xml", "a.xml", &[]);
    let pa = port();
    let args: Vec<String> = [
        "-sf",
        twice.to_str().unwrap(),
        "-p",
        &pa.to_string(),
        "-m",
        "1",
        "-timeout",
        "20s",
        "-trace_msg",
        "-message_file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([dir.path("a.msg").display().to_string()])
    .collect();
    let mut a = sipp(&dir, "a", &args);
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let route = format!(
        "[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n"
    );
    let proxy = Proxy::start(&dir, &config(&route));
    assert!(caller(&dir, &proxy, &answered(&dir), 1, 1));
    assert_eq!(a.wait(Duration::from_secs(5)), Some(0));
    let trace = std::fs::read_to_string(dir.path("a.msg")).unwrap();
    let acks = trace
        .lines()
        .filter(|l| l.starts_with("ACK sip:a@"))
        .count();
    // SIPp answers a repeated ACK with its 486 again, so there may be more than two.
    assert!(acks >= 2, "the retransmitted 486 was ACKed again:\n{trace}");
}

#[path = "sipp/phones.rs"]
mod phones;
#[path = "sipp/scripts.rs"]
mod scripts;
#[path = "sipp/ua.rs"]
mod ua;

#[test]
fn the_readme_walk_through_runs_as_written() {
    if !sipp_available() {
        return;
    }
    // The README's commands, on free ports instead of 5060/5070/5080: the embedded default
    // plan, examples/sipp/uas_busy.xml, uas_answer.xml and uac.xml.
    let dir = Dir::new("walk");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sipp");
    let (mut busy, pbusy) = callee(&dir, "busy", &examples.join("uas_busy.xml"), 1, "u1");
    let (mut answer, panswer) = callee(&dir, "answer", &examples.join("uas_answer.xml"), 1, "u1");
    let default =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/default.toml"))
            .unwrap()
            .replace("127.0.0.1:5060", "{{PROXY}}")
            .replace("127.0.0.1:5070", &format!("127.0.0.1:{pbusy}"))
            .replace("127.0.0.1:5080", &format!("127.0.0.1:{panswer}"));
    let proxy = Proxy::start(&dir, &default);
    assert!(caller(&dir, &proxy, &examples.join("uac.xml"), 1, 1));
    assert_eq!(busy.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(
        answer.wait(Duration::from_secs(10)),
        Some(0),
        "ACK and BYE reached the callee"
    );
    let log = proxy.log_text();
    for line in [
        "rule \"demo\" matched: 2 target(s)",
        "486 matched pattern",
        "answered 200",
        "ACK from UDP:127.0.0.1:",
        "BYE from UDP:127.0.0.1:",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
}
