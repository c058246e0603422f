//! Real phones through the proxy: PJSUA2 (PJSIP's own user agent) with its normal INVITE and
//! SDP (about 1.2 KB, so 1.3 KB once the proxy's Via and Record-Route are in), a busy SIPp
//! target, and a PJSUA2 callee over UDP or TCP. The callee printing CONFIRMED means the
//! caller's ACK reached it through the proxy; DISCONNECTED, that the BYE did.

use super::*;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;

fn pjsua2_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "pjsua2 is required in CI (scripts/test.sh installs pjsua2-python)"
        );
        eprintln!("pjsua2 (Python) not importable: skipping");
    }
    ok
}

/// A PJSUA2 peer process (`crates/ua/tests/pjsua2_peer.py`); its stdout lines arrive on a
/// channel. Killed by PID on drop.
struct Phone {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Phone {
    fn start(args: &[String]) -> Phone {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ua/tests/pjsua2_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut p = Phone {
            _proc: Proc::new(child, "pjsua2"),
            lines,
            seen: Vec::new(),
        };
        p.wait_for("READY");
        p
    }

    fn wait_for(&mut self, word: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(word) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("phone stopped before {word}: {e}; said {:?}", self.seen),
            }
        }
        panic!("phone never said {word}; said {:?}", self.seen);
    }
}

fn phone_call_through_the_proxy(name: &str, callee_transport: &str) {
    if !sipp_available() || !pjsua2_available() {
        return;
    }
    let dir = Dir::new(name);
    let (_busy, pbusy) = callee(
        &dir,
        "busy",
        &reject_scenario(&dir, "busy.xml", "486", "Busy Here", "0", ""),
        1,
        "u1",
    );
    let pj_port = port();
    let mut uas_args = vec!["uas".to_owned(), pj_port.to_string()];
    let target_param = if callee_transport == "tcp" {
        uas_args.push("tcp".into());
        ";transport=tcp"
    } else {
        ""
    };
    let mut callee_phone = Phone::start(&uas_args);
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[route]]\nname = \"phones\"\nmatch.request_uri = '^sip:answer@'\ntargets = [\"sip:busy@127.0.0.1:{pbusy}\", \"sip:answer@127.0.0.1:{pj_port}{target_param}\"]\n"
        )),
    );
    let caller_port = port();
    let mut caller_phone = Phone::start(&[
        "uac".into(),
        caller_port.to_string(),
        format!("sip:answer@127.0.0.1:{}", proxy.port),
    ]);
    let confirmed = caller_phone.wait_for("CONFIRMED");
    assert!(confirmed.contains("answer@127.0.0.1"), "{confirmed}");
    // The callee got the ACK (its call is confirmed) and the BYE, through the proxy.
    callee_phone.wait_for("CONFIRMED");
    callee_phone.wait_for("DISCONNECTED");
    caller_phone.wait_for("RESULT ok");
    let log = proxy.log_text();
    assert!(log.contains("486 matched pattern"), "{log}");
    assert!(
        log.contains("relayed along the route set"),
        "ACK/BYE followed our Record-Route: {log}"
    );
}

#[test]
fn a_pjsua2_call_with_its_sdp_rolls_over_from_busy_to_a_pjsua2_callee_over_udp() {
    phone_call_through_the_proxy("pj-udp", "udp");
}

#[test]
fn a_pjsua2_udp_caller_reaches_a_pjsua2_tcp_callee_and_ack_and_bye_arrive() {
    phone_call_through_the_proxy("pj-tcp", "tcp");
}

fn baresip_available() -> bool {
    available("baresip", "-h", "baresip-core")
}

#[test]
fn a_baresip_caller_rolls_over_from_busy_to_an_answering_target() {
    if !sipp_available() || !baresip_available() {
        return;
    }
    let dir = Dir::new("baresip");
    let (_busy, pbusy) = callee(
        &dir,
        "busy",
        &reject_scenario(&dir, "busy.xml", "486", "Busy Here", "0", ""),
        1,
        "u1",
    );
    let (mut answer, panswer) = callee(
        &dir,
        "answer",
        &answer_scenario(&dir, "answer.xml", "0", "200"),
        1,
        "u1",
    );
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[route]]\nname = \"phones\"\nmatch.request_uri = '^sip:100@'\ntargets = [\"sip:busy@127.0.0.1:{pbusy}\", \"sip:answer@127.0.0.1:{panswer}\"]\n"
        )),
    );
    // baresip with no sound device: the aubridge module stands in for one.
    let conf = dir.path("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let sip_port = port();
    let rtp = port();
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t127.0.0.1:{sip_port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule\taubridge.so\nmodule_app\tmenu.so\nmodule_app\taccount.so\naudio_player\taubridge,nil\naudio_source\taubridge,nil\naudio_alert\taubridge,nil\nrtp_ports\t{rtp}-{}\n",
            rtp + 20
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!("<sip:alice@127.0.0.1:{sip_port}>;regint=0\n"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args(["20", "baresip", "-f"])
        .arg(&conf)
        .args([
            "-e",
            &format!("/dial sip:100@127.0.0.1:{}", proxy.port),
            "-t",
            "4",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Call established"), "{text}");
    // The answering SIPp got the ACK and, when baresip quit, the BYE: its scenario ends.
    assert_eq!(answer.wait(Duration::from_secs(10)), Some(0), "{text}");
    let log = proxy.log_text();
    assert!(log.contains("486 matched pattern"), "{log}");
}
