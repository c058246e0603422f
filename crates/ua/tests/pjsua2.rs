//! Interoperability with PJSIP itself (PJSUA2's Python bindings), both ways, on 127.0.0.1.
//! Skipped when `import pjsua2` fails outside CI (scripts/test.sh installs `pjsua2-python`;
//! under `CI` a missing peer fails the run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
// These tests drive a real peer process, so they read the wall clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rollover_failover::{Target, TargetPlan};
use rollover_ua::{Answer, CallEvent, CallOptions, Endpoint, IncomingEnd, Redirects, UaConfig};

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
        eprintln!("pjsua2 (Python) not importable: skipping the PJSIP interop test");
    }
    ok
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The PJSUA2 peer process; its stdout lines arrive on a channel. Killed by PID on drop.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(args: &[String]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pjsua2_peer.py");
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
        let peer = Peer { child, lines };
        peer.wait_for("READY");
        peer
    }

    fn wait_for(&self, word: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.starts_with(word) => return l,
                Ok(_) => {}
                Err(e) => panic!("PJSUA2 peer never said {word}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn rollover_calls_pjsua2_through_a_busy_target_and_a_redirect() {
    if !pjsua2_available() {
        return;
    }
    let port = free_port();
    let peer = Peer::start(&["uas".into(), port.to_string()]);
    let mut ep = Endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let plan = TargetPlan::serial(vec![
        Target::parse(&format!("sip:busy@127.0.0.1:{port}")).unwrap(),
        Target::parse(&format!("sip:redir@127.0.0.1:{port}")).unwrap(),
    ]);
    let opts = CallOptions::new(
        "<sip:rollover@127.0.0.1>",
        ep.local_addr(),
        plan,
        "pj-interop-1@127.0.0.1",
        "pjt1",
    );
    let mut call = ep.call(opts, Redirects::Follow).await.unwrap();
    let mut answered = None;
    let mut hung_up = false;
    let run = async {
        while let Some(e) = call.next_event().await {
            match e {
                CallEvent::Answered(t, _) => {
                    answered = Some(t.uri.clone());
                    call.hangup().await;
                }
                CallEvent::HungUp { .. } => {
                    hung_up = true;
                    break;
                }
                CallEvent::Ended(o) if o.answered_by.is_none() => panic!("not answered: {o:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("call finished in time");
    assert_eq!(answered, Some(format!("sip:answer@127.0.0.1:{port}")));
    assert!(hung_up);
    peer.wait_for("INCOMING answer");
}

#[tokio::test]
async fn pjsua2_calls_rollover_as_a_redirect_server() {
    if !pjsua2_available() {
        return;
    }
    let port = free_port();
    let mut ep = Endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let us = ep.local_addr();
    let target = format!("sip:answer@127.0.0.1:{port}");
    let redirect_to = target.clone();
    tokio::spawn(async move {
        while let Some(inc) = ep.next_incoming().await {
            inc.answer(Answer::Redirect(vec![redirect_to.clone()]))
                .await;
        }
    });
    let peer = Peer::start(&["uac".into(), port.to_string(), format!("sip:someone@{us}")]);
    let redirected = tokio::task::spawn_blocking(move || {
        let r = peer.wait_for("REDIRECTED");
        let i = peer.wait_for("INCOMING");
        let c = peer.wait_for("CONFIRMED");
        (r, i, c)
    })
    .await
    .unwrap();
    // PJSUA prints the target without its port.
    assert!(
        redirected.0.contains("sip:answer@127.0.0.1"),
        "{redirected:?} (sent {target})"
    );
    assert_eq!(
        redirected.1, "INCOMING answer",
        "the redirect target took the call"
    );
}

/// An SDP answer to PJSUA's offer: G.711 µ-law, which PJSUA offers by default.
fn sdp_answer() -> bytes::Bytes {
    bytes::Bytes::from_static(
        b"v=0\r\no=rollover 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    )
}

/// Rollover answers PJSUA's call, then hangs up from its side: the BYE it sends inside the
/// dialog its 200 set up (RFC 3261 §12.1.1) is one PJSIP accepts and ends the call on.
#[tokio::test]
async fn rollover_answers_pjsua2_then_hangs_up_with_a_bye_pjsip_accepts() {
    if !pjsua2_available() {
        return;
    }
    let port = free_port();
    let config = UaConfig {
        t1: Duration::from_millis(100),
        ..UaConfig::default()
    };
    let mut ep = Endpoint::bind_with("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let us = ep.local_addr();
    let peer = Peer::start(&[
        "uac_hold".into(),
        port.to_string(),
        format!("sip:someone@{us}"),
    ]);
    let mut incoming = tokio::time::timeout(Duration::from_secs(10), ep.next_incoming())
        .await
        .expect("PJSUA's INVITE in time")
        .unwrap();
    incoming.answer(Answer::Accept(Some(sdp_answer()))).await;
    let peer = tokio::task::spawn_blocking(move || {
        peer.wait_for("CONFIRMED");
        peer
    })
    .await
    .unwrap();
    // Longer than 64·T1 (6.4 s here): PJSUA's ACK came, so no BYE of our own was due.
    tokio::time::sleep(Duration::from_secs(7)).await;
    incoming.hangup().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), incoming.ended())
        .await
        .expect("the call ended");
    assert_eq!(ended, Some(IncomingEnd::HungUpHere));
    let line = tokio::task::spawn_blocking(move || peer.wait_for("DISCONNECTED"))
        .await
        .unwrap();
    assert!(line.starts_with("DISCONNECTED"), "{line}");
}
