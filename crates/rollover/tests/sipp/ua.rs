//! `rollover call` (the user agent) against SIPp callees, directly and through the proxy.

use super::*;
use std::io::Write;

/// Runs `rollover call ARGS`, feeding `stdin`; returns (exit code, stdout).
fn call(args: &[String], stdin: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .arg("call")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            return (out.status.code(), text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (None, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn primary_rejects_and_the_alternate_answers() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("ua486");
    let (_a, pa) = callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
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
    let (code, out) = call(
        &strings(&[
            &format!("sip:perry@127.0.0.1:{pa}"),
            "--alt",
            &format!("sip:benny@127.0.0.1:{pb}"),
            "--hold",
            "0",
        ]),
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("left sip:perry@127.0.0.1:{pa}: 486")),
        "{out}"
    );
    assert!(
        out.contains(&format!("answered by sip:benny@127.0.0.1:{pb}")) && out.contains("hung up"),
        "{out}"
    );
}

#[test]
fn silent_primary_then_the_alternate_after_the_timeout() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uasilent");
    let silent = dir.scenario("uas_silent.xml", "a.xml", &[("HOLD_MS", "3000")]);
    let (_a, pa) = callee(&dir, "a", &silent, 1, "u1");
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let (code, out) = call(
        &strings(&[
            &format!("sip:a@127.0.0.1:{pa}"),
            "--alt",
            &format!("sip:b@127.0.0.1:{pb}"),
            "--hold",
            "0",
            "--no-response-timeout",
            "1s",
        ]),
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no response within 1s"), "{out}");
}

#[test]
fn redirect_asked_at_the_terminal_second_contact_only() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uaask");
    let (_low, plow) = callee(
        &dir,
        "low",
        &answer_scenario(&dir, "low.xml", "0", "100"),
        1,
        "u1",
    );
    let contacts = format!(
        "Contact: <sip:low@127.0.0.1:{plow}>;q=0.5\nContact: <sip:high@127.0.0.1:9>;q=1.0\n"
    );
    let (_r, pr) = callee(
        &dir,
        "redir",
        &reject_scenario(&dir, "r.xml", "302", "Moved Temporarily", "0", &contacts),
        1,
        "u1",
    );
    // Asked about high (q=1.0) first: reject; then low: accept.
    let (code, out) = call(
        &strings(&[
            &format!("sip:r@127.0.0.1:{pr}"),
            "--redirect",
            "ask",
            "--hold",
            "0",
        ]),
        "j\na\n",
    );
    assert_eq!(code, Some(0), "{out}");
    let high = out
        .find("redirect to sip:high@127.0.0.1:9")
        .expect("asked about high");
    let low = out
        .find(&format!("redirect to sip:low@127.0.0.1:{plow}"))
        .expect("asked about low");
    assert!(high < low, "{out}");
    assert!(
        out.contains(&format!("answered by sip:low@127.0.0.1:{plow}")),
        "{out}"
    );
    assert!(!out.contains("trying sip:high"), "{out}");
}

#[test]
fn redirect_stopped_at_the_terminal_ends_with_the_3xx() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uastop");
    let contacts = "Contact: <sip:somewhere@127.0.0.1:9>\n".to_string();
    let (_r, pr) = callee(
        &dir,
        "redir",
        &reject_scenario(&dir, "r.xml", "302", "Moved Temporarily", "0", &contacts),
        1,
        "u1",
    );
    let (code, out) = call(
        &strings(&[
            &format!("sip:r@127.0.0.1:{pr}"),
            "--redirect",
            "ask",
            "--hold",
            "0",
        ]),
        "s\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not answered: 302"), "{out}");
    assert!(!out.contains("trying sip:somewhere"), "{out}");
}

#[test]
fn digest_challenges_are_answered() {
    if !sipp_available() {
        return;
    }
    // SIPp's verifier checks MD5; SHA-256 is checked against RFC 7616's own example in
    // the digest module's unit tests.
    for (alg, password, answered) in [("MD5", "secret", true), ("MD5", "other", false)] {
        let dir = Dir::new(&format!("uadigest-{alg}-{password}"));
        let scenario = dir.scenario(
            "uas_digest.xml",
            "a.xml",
            &[("ALGORITHM", alg), ("PASSWORD", password)],
        );
        let (_a, pa) = callee(&dir, "a", &scenario, 1, "u1");
        let (code, out) = call(
            &strings(&[
                &format!("sip:a@127.0.0.1:{pa}"),
                "--auth-user",
                "alice",
                "--auth-password",
                "secret",
                "--hold",
                "0",
            ]),
            "",
        );
        if answered {
            assert_eq!(code, Some(0), "{alg}: {out}");
        } else {
            assert_ne!(code, Some(0), "wrong password must not get in: {out}");
            assert!(out.contains("403"), "{out}");
        }
    }
}

#[test]
fn sipp_calls_the_library_which_accepts_then_hangs_up_on_bye() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uaincoming");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        rt.block_on(async {
            let mut ep = rollover_ua::Endpoint::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            port_tx.send(ep.local_addr().port()).unwrap();
            let inc = tokio::time::timeout(Duration::from_secs(10), ep.next_incoming())
                .await
                .unwrap()
                .unwrap();
            inc.answer(rollover_ua::Answer::Accept(None)).await;
            // Stay up for the ACK and the BYE.
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
    });
    let p = port_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        caller_to(&dir, p, &answered(&dir), 1, 1),
        "SIPp's call to the library was answered and hung up"
    );
    server.join().unwrap();
}

#[test]
fn the_same_call_through_rollover_proxy() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uaproxy");
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
    let route = format!(
        "[[route]]\nname = \"t\"\ntargets = [\"sip:a@127.0.0.1:{pa}\", \"sip:b@127.0.0.1:{pb}\"]\n"
    );
    let proxy = Proxy::start(&dir, &config(&route));
    let p = proxy.port;
    let (code, out) = call(
        &strings(&[
            &format!("sip:100@127.0.0.1:{p}"),
            "--via-proxy",
            &format!("sip:127.0.0.1:{p}"),
            "--hold",
            "0",
        ]),
        "",
    );
    assert_eq!(code, Some(0), "{out}\n{}", proxy.log_text());
    let log = proxy.log_text();
    assert!(
        log.contains(&format!("sip:b@127.0.0.1:{pb} answered 200")),
        "{log}"
    );
}

#[test]
fn redirect_ask_with_standard_input_at_its_end_stops() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uaeof");
    let contacts = "Contact: <sip:first@127.0.0.1:9>\nContact: <sip:second@127.0.0.1:9>\n";
    let (_r, pr) = callee(
        &dir,
        "redir",
        &reject_scenario(&dir, "r.xml", "302", "Moved Temporarily", "0", contacts),
        1,
        "u1",
    );
    // No answer at all on standard input (end of file): nothing is accepted.
    let (code, out) = call(
        &strings(&[
            &format!("sip:r@127.0.0.1:{pr}"),
            "--redirect",
            "ask",
            "--hold",
            "0",
        ]),
        "",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no answer on standard input"), "{out}");
    assert!(!out.contains("trying sip:first"), "{out}");
    assert!(!out.contains("trying sip:second"), "{out}");
}

#[test]
fn a_tcp_target_is_called_over_tcp() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("uatcp");
    let (_b, pb) = callee(
        &dir,
        "b",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "t1",
    );
    let (code, out) = call(
        &strings(&[&format!("sip:b@127.0.0.1:{pb}/TCP"), "--hold", "0"]),
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("answered by sip:b@"), "{out}");
}

/// SIPp checks that `regexp` is (or, with `[^…]`, is not) in the body of what it receives.
fn body_check(regexp: &str, var: &str) -> String {
    format!("<ereg regexp=\"{regexp}\" search_in=\"body\" check_it=\"true\" assign_to=\"{var}\" />")
}

#[test]
fn the_invite_carries_an_offer_and_a_late_offer_is_answered_in_the_ack() {
    if !sipp_available() {
        return;
    }
    // Default: an audio offer in the INVITE.
    let dir = Dir::new("uasdp1");
    let s = dir.scenario(
        "uas_offer_answer.xml",
        "a.xml",
        &[
            ("WHERE", "invite"),
            (
                "INVITE_CHECK",
                &body_check("m=audio [0-9]+ RTP/AVP 0 8", "offer"),
            ),
            ("ACK_CHECK", ""),
            ("REFS", "<Reference variables=\"offer\" />"),
        ],
    );
    let (_a, pa) = callee(&dir, "a", &s, 1, "u1");
    let (code, out) = call(
        &strings(&[&format!("sip:a@127.0.0.1:{pa}"), "--hold", "0"]),
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    // --no-sdp: the 200 carries the offer, the ACK our answer (RFC 3261 §13.2.2.4).
    let dir = Dir::new("uasdp2");
    let s = dir.scenario(
        "uas_offer_answer.xml",
        "a.xml",
        &[
            ("WHERE", "ack"),
            ("INVITE_CHECK", ""),
            (
                "ACK_CHECK",
                &body_check("m=audio [0-9]+ RTP/AVP 0", "answer"),
            ),
            ("REFS", "<Reference variables=\"answer\" />"),
        ],
    );
    let (mut a, pa) = callee(&dir, "a", &s, 1, "u1");
    let (code, out) = call(
        &strings(&[&format!("sip:a@127.0.0.1:{pa}"), "--no-sdp", "--hold", "0"]),
        "",
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        a.wait(Duration::from_secs(10)),
        Some(0),
        "the callee saw the answer in the ACK"
    );
}
