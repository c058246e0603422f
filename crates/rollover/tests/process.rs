//! The `rollover proxy` process as an operator runs it: `--listen … advertise …`, SIGHUP
//! reloads the dial plan while a call rings, SIGTERM drains, a worker that cannot start
//! stops it. Peers are plain UDP sockets
//! on 127.0.0.1; every wait is bounded and the process is stopped by its PID.
#![allow(clippy::disallowed_methods)] // real processes, real clock
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;
use support::*;

fn invite(caller: &UdpSocket, call_id: &str, user: &str, port: u16) -> String {
    let me = caller.local_addr().unwrap();
    format!(
        "INVITE sip:{user}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-{call_id}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A response to a request received as text: its Vias, From, To (tagged), Call-ID, CSeq.
fn respond(req: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.lines() {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("call-id:")
            || l.starts_with("cseq:")
            || l.starts_with("record-route:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if l.starts_with("to:") {
            out.push_str(line);
            out.push_str(";tag=callee\r\n");
        }
    }
    out.push_str("Contact: <sip:callee@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n");
    out
}

fn status_of(m: &str) -> &str {
    m.get(8..11).unwrap_or("")
}

fn plan(port: u16, target: u16) -> String {
    format!(
        "[server]\nlisten = [\"udp:127.0.0.1:{port}\"]\nt1 = \"100ms\"\ndrain_timeout = \"20s\"\n[security]\nsecret = \"process-test-secret-0123\"\n[[route]]\nname = \"to-{target}\"\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@127.0.0.1:{target}\"]\n"
    )
}

#[test]
fn a_wildcard_listen_advertises_the_given_address() {
    let d = Dir::new("advertise");
    let target = sock();
    let port = port();
    let listen = format!("udp:0.0.0.0:{port} advertise 127.0.0.5:{port}");
    let p = Proxy::start_with(
        &d,
        port,
        &plan(port, target.local_addr().unwrap().port()),
        &["--listen", &listen],
        "info",
    );
    let caller = sock();
    caller
        .send_to(
            invite(&caller, "adv", "100", p.port).as_bytes(),
            ("127.0.0.1", p.port),
        )
        .unwrap();
    let (fwd, _) = recv_where(&target, |m| m.starts_with("INVITE"));
    let via = fwd.lines().find(|l| l.starts_with("Via:")).unwrap();
    assert!(
        via.contains(&format!("SIP/2.0/UDP 127.0.0.5:{port};branch=")),
        "{via}"
    );
    let rr = fwd
        .lines()
        .find(|l| l.starts_with("Record-Route:"))
        .unwrap();
    assert!(
        rr.contains(&format!("<sip:127.0.0.5:{port};lr;tk=")),
        "{rr}"
    );
    assert!(p
        .log_text()
        .contains(&format!("advertise 127.0.0.5:{port}")));
    // A wildcard without advertise is refused at start, saying what to write.
    let out = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .args(["proxy", "--listen", "udp:0.0.0.0:5999"])
        .current_dir(d.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("advertise <that IP>:5999"), "{err}");
}

#[test]
fn sighup_reloads_the_plan_and_keeps_the_call_that_rings() {
    let d = Dir::new("reload");
    let (a, b) = (sock(), sock());
    let port = port();
    let plan_a = plan(port, a.local_addr().unwrap().port());
    let p = Proxy::start_with(&d, port, &plan_a, &[], "info");
    let cfg = p.config_path();
    let caller = sock();
    let to_proxy = ("127.0.0.1", p.port);
    // Call 1 rings at A.
    caller
        .send_to(invite(&caller, "one", "100", port).as_bytes(), to_proxy)
        .unwrap();
    let (inv1, a_from) = recv_where(&a, |m| m.starts_with("INVITE"));
    a.send_to(respond(&inv1, "180 Ringing").as_bytes(), a_from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "180");
    // The plan now routes to B: SIGHUP.
    std::fs::write(cfg, plan(port, b.local_addr().unwrap().port())).unwrap();
    p.signal("-HUP");
    p.wait_log("dial plan reloaded", Duration::from_secs(5));
    caller
        .send_to(invite(&caller, "two", "101", port).as_bytes(), to_proxy)
        .unwrap();
    recv_where(&b, |m| m.starts_with("INVITE sip:101@"));
    // Call 1 keeps its plan: A answers, the caller gets the 200.
    a.send_to(respond(&inv1, "200 OK").as_bytes(), a_from)
        .unwrap();
    let (ok, _) = recv_where(&caller, |m| {
        status_of(m) == "200" && m.contains("Call-ID: one")
    });
    assert!(ok.contains("Call-ID: one"));
    // SIGUSR1 logs the counters (one line per worker).
    wait_stats(&p, "routed", 2);
    // A file that does not load is refused; the running plan stays.
    std::fs::write(cfg, "[[route]]\nmode = \"sideways\"\n").unwrap();
    p.signal("-HUP");
    p.wait_log("reload refused", Duration::from_secs(5));
    caller
        .send_to(invite(&caller, "three", "102", port).as_bytes(), to_proxy)
        .unwrap();
    recv_where(&b, |m| m.starts_with("INVITE sip:102@"));
}

#[test]
fn sigterm_drains_new_calls_get_503_and_the_ringing_call_completes() {
    let d = Dir::new("drain");
    let a = sock();
    let port = port();
    let plan_a = plan(port, a.local_addr().unwrap().port());
    let mut p = Proxy::start_with(&d, port, &plan_a, &[], "info");
    let caller = sock();
    let to_proxy = ("127.0.0.1", p.port);
    caller
        .send_to(invite(&caller, "ringing", "100", port).as_bytes(), to_proxy)
        .unwrap();
    let (inv, a_from) = recv_where(&a, |m| m.starts_with("INVITE"));
    a.send_to(respond(&inv, "180 Ringing").as_bytes(), a_from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "180");
    p.signal("-TERM");
    p.wait_log("SIGTERM: draining", Duration::from_secs(5));
    // A new call is turned away with 503 and Retry-After…
    let late = sock();
    late.send_to(invite(&late, "late", "101", port).as_bytes(), to_proxy)
        .unwrap();
    let (busy, _) = recv_where(&late, |m| m.starts_with("SIP/2.0"));
    assert_eq!(status_of(&busy), "503", "{busy}");
    assert!(busy.contains("Retry-After:"), "{busy}");
    // …while the call under way is answered through the proxy.
    a.send_to(respond(&inv, "200 OK").as_bytes(), a_from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "200");
    // Then the process exits by itself, cleanly (Timer L/M with T1 = 100 ms: 6.4 s).
    assert_eq!(p.wait(Duration::from_secs(15)), Some(0), "{}", p.log_text());
    assert!(p.log_text().contains("shutting down"));
}

/// A script: every call to A, and on failure to B with `X-Version: {version}`.
fn versioned_script(version: u32, a: u16, b: u16) -> String {
    format!(
        r#"function request_route(req)
             req:on_failure("next")
             req:relay("sip:a@127.0.0.1:{a}")
           end
           function failure_route_next(req, failed)
             req:append_header("X-Version: {version}")
             req:relay("sip:b@127.0.0.1:{b}")
           end"#
    )
}

#[test]
fn sighup_reloads_the_script_and_the_ringing_call_keeps_its_version() {
    let d = Dir::new("reload-script");
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let port = port();
    let routes = d.path("routes.lua");
    std::fs::write(&routes, versioned_script(1, pa, pb)).unwrap();
    let cfg = format!("{}[script]\nfile = \"routes.lua\"\n", plan(port, pa));
    let p = Proxy::start_with(&d, port, &cfg, &[], "info");
    assert!(p.log_text().contains("routing with the script"));
    let caller = sock();
    let to_proxy = ("127.0.0.1", p.port);
    // Call 1 rings at A under version 1.
    caller
        .send_to(invite(&caller, "one", "100", port).as_bytes(), to_proxy)
        .unwrap();
    let (inv1, a_from) = recv_where(&a, |m| {
        m.starts_with("INVITE") && m.contains("Call-ID: one")
    });
    a.send_to(respond(&inv1, "180 Ringing").as_bytes(), a_from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "180");
    // Version 2, by SIGHUP.
    std::fs::write(&routes, versioned_script(2, pa, pb)).unwrap();
    p.signal("-HUP");
    p.wait_log("script ", Duration::from_secs(5));
    p.wait_log("reloaded; calls under way keep", Duration::from_secs(5));
    // Call 1 fails at A: its failure route is version 1's.
    a.send_to(respond(&inv1, "486 Busy Here").as_bytes(), a_from)
        .unwrap();
    let (to_b, _) = recv_where(&b, |m| {
        m.starts_with("INVITE") && m.contains("Call-ID: one")
    });
    assert!(to_b.contains("X-Version: 1"), "{to_b}");
    // Call 2 starts under version 2.
    caller
        .send_to(invite(&caller, "two", "100", port).as_bytes(), to_proxy)
        .unwrap();
    let (inv2, a_from) = recv_where(&a, |m| {
        m.starts_with("INVITE") && m.contains("Call-ID: two")
    });
    a.send_to(respond(&inv2, "486 Busy Here").as_bytes(), a_from)
        .unwrap();
    let (to_b, _) = recv_where(&b, |m| {
        m.starts_with("INVITE") && m.contains("Call-ID: two")
    });
    assert!(to_b.contains("X-Version: 2"), "{to_b}");
    // A script that does not load is refused, with its file and line; version 2 stays.
    std::fs::write(&routes, "function request_route(req)\n").unwrap();
    p.signal("-HUP");
    p.wait_log("reload refused", Duration::from_secs(5));
    assert!(p.log_text().contains("routes.lua:2:"), "{}", p.log_text());
}

#[test]
fn an_answered_call_lingers_five_seconds_by_default_not_thirty_two() {
    let d = Dir::new("linger");
    let target = sock();
    let port = port();
    let cfg = format!(
        "[server]\nlisten = [\"udp:127.0.0.1:{port}\"]\n[security]\nsecret = \"process-test-secret-0123\"\n[[route]]\nname = \"t\"\ntargets = [\"sip:100@127.0.0.1:{}\"]\n",
        target.local_addr().unwrap().port()
    );
    let p = Proxy::start_with(&d, port, &cfg, &[], "info");
    let caller = sock();
    caller
        .send_to(
            invite(&caller, "linger", "100", port).as_bytes(),
            ("127.0.0.1", port),
        )
        .unwrap();
    let (inv, from) = recv_where(&target, |m| m.starts_with("INVITE"));
    target
        .send_to(respond(&inv, "200 OK").as_bytes(), from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "200");
    // The answered call lingers (Timers L and M) to pass on a retransmitted 2xx…
    wait_stats(&p, "calls_in_progress", 1);
    // …for 5 s, Kamailio's wait_timer, not the RFC's 32 s.
    std::thread::sleep(Duration::from_millis(5500));
    wait_stats(&p, "calls_in_progress", 0);
    wait_stats(&p, "transactions", 0);
    // A 2xx retransmitted after that is still relayed, statelessly (its Via is ours).
    target
        .send_to(respond(&inv, "200 OK").as_bytes(), from)
        .unwrap();
    recv_where(&caller, |m| status_of(m) == "200");
}

/// How `rollover proxy` with two workers ended under a limit of `nofile` open files.
#[derive(Debug, PartialEq)]
enum UnderLimit {
    /// It stopped at start with an error of its own (too few files to bind its listeners
    /// or to install its signal handlers).
    Refused,
    /// Worker 1 could not start, and the proxy stopped with an error.
    WorkerFailedProxyStopped,
    /// It runs (stopped by the test after a second).
    Runs,
}

fn start_under_limit(d: &Dir, nofile: u32) -> UnderLimit {
    let port = port();
    let cfg = format!(
        "[server]\nlisten = [\"udp:127.0.0.1:{port}\"]\nworkers = 2\n[security]\nsecret = \"process-test-secret-0123\"\n[[route]]\nname = \"t\"\ntargets = [\"sip:100@127.0.0.1:9\"]\n"
    );
    let cfg_path = d.path("rollover.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = d.path(&format!("proxy-{nofile}.log"));
    let child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(binary())
        .args(["proxy", "--config"])
        .arg(&cfg_path)
        .current_dir(d.root())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(d.path("proxy.err")).unwrap())
        .spawn()
        .unwrap();
    let mut p = Proc::new(child, "rollover");
    let code = p.wait(Duration::from_secs(3));
    let text = std::fs::read_to_string(&log).unwrap() + &d.read("proxy.err");
    match code {
        None => {
            // Still up after 3 s: both workers must be running (not the bug this guards
            // against: one gone, the process up).
            let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", p.pid()))
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect();
            assert!(
                threads.iter().any(|t| t == "worker-1"),
                "worker 1 is gone and the proxy runs on (nofile={nofile}): threads {threads:?}; {text}"
            );
            UnderLimit::Runs
        }
        Some(code) if text.contains("a worker stopped on its own") => {
            assert!(text.contains("worker 1 failed"), "nofile={nofile}: {text}");
            assert_ne!(code, 0, "a failed worker must fail the process: {text}");
            UnderLimit::WorkerFailedProxyStopped
        }
        Some(code) => {
            assert_ne!(code, 0, "nofile={nofile}: {text}");
            UnderLimit::Refused
        }
    }
}

#[test]
fn a_worker_that_cannot_start_stops_the_proxy_instead_of_leaving_its_calls_unanswered() {
    // The calls whose Call-ID hashes to a worker go to that worker whichever socket they
    // arrive on: with one worker gone and the others running, its share would be lost.
    // Too few file descriptors for the second worker's runtime makes one fail at start.
    if !available("prlimit", "--version", "util-linux") {
        return;
    }
    let d = Dir::new("worker-fails");
    let mut seen = Vec::new();
    // From too few files to listen at all up to enough for everything, one at a time:
    // in between, the listeners are bound but the second worker cannot start.
    for nofile in 8..64 {
        let outcome = start_under_limit(&d, nofile);
        let runs = outcome == UnderLimit::Runs;
        seen.push(outcome);
        if runs {
            break;
        }
    }
    assert!(
        seen.contains(&UnderLimit::WorkerFailedProxyStopped),
        "no limit made the second worker fail alone: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&UnderLimit::Runs), "{seen:?}");
}
