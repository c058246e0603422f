//! Every timer and retransmission schedule, in virtual time: no test sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::{Message, Method, RequestBuilder};

use crate::*;

struct Harness {
    layer: TxnLayer,
    start: Instant,
    now: Instant,
    /// (time since start, bytes) of everything sent.
    sent: Vec<(Duration, Bytes)>,
    events: Vec<(Duration, Event)>,
}

fn peer(transport: Transport) -> Peer {
    let addr: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    Peer { transport, addr }
}

impl Harness {
    fn new() -> Harness {
        // One arbitrary origin; everything after it is virtual.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Harness {
            layer: TxnLayer::new(Config::default()),
            start,
            now: start,
            sent: vec![],
            events: vec![],
        }
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) {
        while let Some(t) = self.layer.poll_transmit() {
            self.sent.push((self.at(), t.bytes));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((self.at(), e));
        }
    }

    /// Jumps from deadline to deadline until `until` (since start).
    fn run_until(&mut self, until: Duration) {
        self.drain();
        while let Some(t) = self.layer.poll_timeout() {
            if t - self.start > until {
                break;
            }
            self.now = t;
            self.layer.handle_timeout(t);
            self.drain();
        }
        self.now = self.start + until;
    }

    fn recv(&mut self, transport: Transport, msg: Bytes) {
        let m = Message::parse(msg).unwrap();
        self.layer.handle_message(self.now, peer(transport), m);
        self.drain();
    }

    fn send_times(&self) -> Vec<f64> {
        self.sent.iter().map(|(t, _)| t.as_secs_f64()).collect()
    }

    fn responses(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Response { response, .. } => response.status(),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

fn request(method: Method, branch: &str, transport: Transport) -> Message {
    let b = RequestBuilder::new(method, "sip:bob@127.0.0.1:5070")
        .via(&format!(
            "SIP/2.0/{transport} 127.0.0.1:5060;branch={branch}"
        ))
        .from("<sip:alice@example.com>;tag=a1")
        .to("<sip:bob@example.com>")
        .call_id("call-1@example.com")
        .cseq(1)
        .build()
        .unwrap();
    Message::parse(b).unwrap()
}

fn response_to(req: &Message, code: u16) -> Bytes {
    req.response(code, "Reason").to_tag("b1").build()
}

fn secs(v: &[f64]) -> Vec<f64> {
    v.to_vec()
}

#[test]
fn invite_client_udp_silence_fires_timer_b_at_64_t1() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Udp);
    h.layer
        .send_request(h.now, inv, peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_secs(40));
    // Timer A: T1, 2T1, 4T1, … from the first send; Timer B at 32 s.
    assert_eq!(h.send_times(), secs(&[0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]));
    let timeouts: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Timeout(_)))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(timeouts, [Duration::from_secs(32)]);
    assert_eq!(h.count(|e| matches!(e, Event::Terminated(_))), 1);
    assert!(h.layer.is_empty());
}

#[test]
fn invite_client_tcp_does_not_retransmit() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Tcp);
    h.layer
        .send_request(h.now, inv, peer(Transport::Tcp))
        .unwrap();
    h.run_until(Duration::from_secs(40));
    assert_eq!(h.send_times(), secs(&[0.0]));
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 1);
}

#[test]
fn invite_client_ringing_then_silence_never_times_out() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Udp);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_secs(1));
    h.recv(Transport::Udp, response_to(&inv, 180));
    h.run_until(Duration::from_secs(300));
    // Retransmissions stopped at the 180; Timer B never fires after a provisional.
    assert_eq!(h.send_times(), secs(&[0.0, 0.5]));
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 0);
    assert_eq!(h.responses(), [180]);
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn invite_client_acks_non_2xx_and_absorbs_retransmissions() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Udp);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_millis(100));
    let busy = response_to(&inv, 486);
    h.recv(Transport::Udp, busy.clone());
    let ack = Message::parse(h.sent[1].1.clone()).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(
        ack.to_tag(),
        Some("b1"),
        "ACK carries the response's To tag"
    );
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK-1"));
    h.run_until(Duration::from_secs(2));
    h.recv(Transport::Udp, busy);
    assert_eq!(h.sent.len(), 3, "ACK resent for the retransmitted 486");
    assert_eq!(h.responses(), [486], "retransmission not passed up");
    // Timer D: 32 s on UDP.
    h.run_until(Duration::from_secs(31));
    assert_eq!(h.layer.len(), 1);
    h.run_until(Duration::from_secs(33));
    assert!(h.layer.is_empty());
}

/// A request sent with the branch its sender just wrote is the same transaction as one
/// whose top Via is parsed for it: its responses match, the ACK of a 4xx goes along it,
/// and a second one on that branch is refused.
#[test]
fn a_request_sent_on_its_branch_matches_as_if_its_via_were_parsed() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-2", Transport::Udp);
    h.layer
        .send_request_on_branch(h.now, inv.clone(), peer(Transport::Udp), "z9hG4bK-2")
        .unwrap();
    assert!(matches!(
        h.layer
            .send_request(h.now, inv.clone(), peer(Transport::Udp)),
        Err(crate::TxnError::Duplicate)
    ));
    h.recv(Transport::Udp, response_to(&inv, 486));
    assert_eq!(h.responses(), [486]);
    let ack = Message::parse(h.sent[1].1.clone()).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
}

/// In a debug build, a branch that is not the request's top Via's is caught at once.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "not the request's top Via's")]
fn a_request_sent_on_another_branch_is_caught_in_debug_builds() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    let _ = h
        .layer
        .send_request_on_branch(h.now, inv, peer(Transport::Udp), "z9hG4bK-other");
}

#[test]
fn invite_client_tcp_timer_d_is_zero() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Tcp);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Tcp))
        .unwrap();
    h.recv(Transport::Tcp, response_to(&inv, 503));
    h.run_until(Duration::ZERO);
    assert!(h.layer.is_empty());
}

#[test]
fn invite_client_passes_up_every_2xx_and_a_late_2xx_after_a_4xx() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-1", Transport::Udp);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 200));
    h.recv(Transport::Udp, response_to(&inv, 200));
    assert_eq!(h.responses(), [200, 200]);
    h.run_until(Duration::from_secs(33)); // Timer M = 64·T1
    assert!(h.layer.is_empty());

    let mut h = Harness::new();
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 404));
    h.recv(Transport::Udp, response_to(&inv, 200));
    assert_eq!(h.responses(), [404, 200]);
}

#[test]
fn non_invite_client_retransmits_capped_at_t2() {
    let mut h = Harness::new();
    let opt = request(Method::Options, "z9hG4bK-2", Transport::Udp);
    h.layer
        .send_request(h.now, opt, peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_secs(40));
    assert_eq!(
        h.send_times(),
        secs(&[0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    let timeouts: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Timeout(_)))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(timeouts, [Duration::from_secs(32)], "Timer F");
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_then_k() {
    let mut h = Harness::new();
    let opt = request(Method::Options, "z9hG4bK-2", Transport::Udp);
    h.layer
        .send_request(h.now, opt.clone(), peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_millis(600));
    h.recv(Transport::Udp, response_to(&opt, 100));
    h.run_until(Duration::from_millis(9000));
    assert_eq!(h.send_times(), secs(&[0.0, 0.5, 1.5, 5.5]));
    h.recv(Transport::Udp, response_to(&opt, 200));
    h.recv(Transport::Udp, response_to(&opt, 200));
    assert_eq!(h.responses(), [100, 200]);
    h.run_until(Duration::from_millis(13_999)); // Timer K = T4 = 5 s
    assert_eq!(h.layer.len(), 1);
    h.run_until(Duration::from_millis(14_001));
    assert!(h.layer.is_empty());
}

fn server_txn(h: &Harness) -> ServerTxn {
    h.events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Request { txn, .. } => Some(*txn),
            _ => None,
        })
        .unwrap()
}

#[test]
fn invite_server_sends_100_after_200ms_and_resends_on_retransmission() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    assert_eq!(h.count(|e| matches!(e, Event::Request { .. })), 1);
    h.run_until(Duration::from_millis(199));
    assert!(h.sent.is_empty());
    h.run_until(Duration::from_millis(200));
    assert_eq!(
        Message::parse(h.sent[0].1.clone()).unwrap().status(),
        Some(100)
    );
    h.recv(Transport::Udp, inv.as_bytes().clone());
    assert_eq!(h.sent.len(), 2, "retransmitted INVITE gets the 100 again");
    assert_eq!(
        h.count(|e| matches!(e, Event::Request { .. })),
        1,
        "duplicate absorbed"
    );
}

#[test]
fn invite_server_no_100_when_tu_answers_first() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 180))
        .unwrap();
    h.run_until(Duration::from_secs(1));
    let codes: Vec<_> = h
        .sent
        .iter()
        .map(|(_, b)| Message::parse(b.clone()).unwrap().status())
        .collect();
    assert_eq!(codes, [Some(180)]);
}

#[test]
fn stateless_reply_sends_once_and_forgets_the_transaction() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer.reply_stateless(txn, response_to(&inv, 404));
    h.run_until(Duration::from_secs(40));
    assert_eq!(h.send_times(), secs(&[0.0]), "no Timer G, no 100");
    assert!(h.layer.is_empty());
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 0);
    // A retransmission is a new request, answered by the user again: one out per one in.
    h.recv(Transport::Udp, inv.as_bytes().clone());
    assert_eq!(h.count(|e| matches!(e, Event::Request { .. })), 2);
    assert!(h
        .layer
        .send_response(h.now, txn, response_to(&inv, 404))
        .is_err());
}

#[test]
fn invite_server_retransmits_final_until_ack_then_timer_h() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 486))
        .unwrap();
    h.run_until(Duration::from_secs(40));
    // Timer G: T1, 2T1, … capped at T2; Timer H at 64·T1.
    assert_eq!(
        h.send_times(),
        secs(&[0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    let timeouts: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Timeout(TxnRef::Server(_))))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(timeouts, [Duration::from_secs(32)]);
    assert!(h.layer.is_empty());
}

#[test]
fn invite_server_ack_stops_retransmissions() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    let resp = response_to(&inv, 486);
    h.layer.send_response(h.now, txn, resp.clone()).unwrap();
    h.run_until(Duration::from_secs(2));
    let ack = inv.ack_for(&Message::parse(resp).unwrap()).unwrap();
    h.recv(Transport::Udp, ack.clone());
    h.recv(Transport::Udp, ack);
    assert_eq!(
        h.count(|e| matches!(e, Event::Ack { .. })),
        0,
        "ACK for non-2xx absorbed"
    );
    h.run_until(Duration::from_secs(6));
    assert_eq!(h.send_times(), secs(&[0.0, 0.5, 1.5]));
    h.run_until(Duration::from_secs(8)); // Timer I = T4
    assert!(h.layer.is_empty());
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 0);
}

#[test]
fn invite_server_2xx_enters_accepted_and_absorbs_retransmissions() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-3", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 200))
        .unwrap();
    h.recv(Transport::Udp, inv.as_bytes().clone());
    assert_eq!(
        h.sent.len(),
        1,
        "the transaction does not retransmit 2xx (the TU does)"
    );
    h.layer
        .send_response(h.now, txn, response_to(&inv, 200))
        .unwrap();
    h.drain();
    assert_eq!(h.sent.len(), 2);
    assert_eq!(
        h.layer.send_response(h.now, txn, response_to(&inv, 486)),
        Err(TxnError::Send(SendError::AlreadyFinal))
    );
    // The ACK for a 2xx has its own branch: it belongs to no transaction here.
    let ack = RequestBuilder::new(Method::Ack, "sip:bob@127.0.0.1:5070")
        .via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ack")
        .from("<sip:alice@example.com>;tag=a1")
        .to("<sip:bob@example.com>;tag=b1")
        .call_id("call-1@example.com")
        .cseq(1)
        .build()
        .unwrap();
    h.recv(Transport::Udp, ack);
    assert_eq!(h.count(|e| matches!(e, Event::Ack { .. })), 1);
    h.run_until(Duration::from_secs(33)); // Timer L
    assert!(h.layer.is_empty());
}

#[test]
fn non_invite_server_absorbs_then_resends_final_until_timer_j() {
    let mut h = Harness::new();
    let opt = request(Method::Options, "z9hG4bK-4", Transport::Udp);
    h.recv(Transport::Udp, opt.as_bytes().clone());
    h.recv(Transport::Udp, opt.as_bytes().clone());
    assert!(h.sent.is_empty(), "retransmission in Trying absorbed");
    assert_eq!(h.count(|e| matches!(e, Event::Request { .. })), 1);
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&opt, 200))
        .unwrap();
    h.recv(Transport::Udp, opt.as_bytes().clone());
    assert_eq!(h.sent.len(), 2, "final resent");
    h.run_until(Duration::from_secs(31));
    assert_eq!(h.layer.len(), 1);
    h.run_until(Duration::from_secs(33));
    assert!(h.layer.is_empty());

    let mut h = Harness::new();
    h.recv(Transport::Tcp, opt.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&opt, 200))
        .unwrap();
    h.run_until(Duration::ZERO);
    assert!(h.layer.is_empty(), "Timer J is zero on TCP");
}

#[test]
fn cancel_matches_its_invite() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-5", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let invite_txn = server_txn(&h);
    h.recv(Transport::Udp, inv.cancel(None).unwrap());
    let cancels = h.events.iter().find_map(|(_, e)| match e {
        Event::Request {
            cancels: Some(c),
            request,
            ..
        } if request.method() == Some(&Method::Cancel) => Some(*c),
        _ => None,
    });
    assert_eq!(cancels, Some(invite_txn));
    // A CANCEL for nothing known still gets its own transaction (the TU answers 481).
    let other = request(Method::Invite, "z9hG4bK-unknown", Transport::Udp);
    h.recv(Transport::Udp, other.cancel(None).unwrap());
    let last = h.events.iter().rev().find_map(|(_, e)| match e {
        Event::Request { cancels, .. } => Some(*cancels),
        _ => None,
    });
    assert_eq!(last, Some(None));
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "old-style-1", Transport::Udp);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    h.recv(Transport::Udp, inv.as_bytes().clone());
    assert_eq!(h.count(|e| matches!(e, Event::Request { .. })), 1);
    let txn = server_txn(&h);
    let resp = response_to(&inv, 404);
    h.layer.send_response(h.now, txn, resp.clone()).unwrap();
    h.recv(
        Transport::Udp,
        inv.ack_for(&Message::parse(resp).unwrap()).unwrap(),
    );
    assert_eq!(
        h.count(|e| matches!(e, Event::Ack { .. })),
        0,
        "ACK matched the INVITE"
    );
}

#[test]
fn cancel_waits_for_a_provisional() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-6", Transport::Udp);
    let txn = h
        .layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    assert_eq!(h.layer.cancel(h.now, txn, None), Ok(None));
    h.run_until(Duration::from_secs(2));
    assert_eq!(
        h.sent.len(),
        1,
        "no CANCEL and no retransmission before a provisional"
    );
    h.recv(Transport::Udp, response_to(&inv, 180));
    let cancel = Message::parse(h.sent.last().unwrap().1.clone()).unwrap();
    assert_eq!(cancel.method(), Some(&Method::Cancel));

    let mut h = Harness::new();
    let txn = h
        .layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 183));
    let c = h
        .layer
        .cancel(
            h.now,
            txn,
            Some("SIP;cause=200;text=\"Call completed elsewhere\""),
        )
        .unwrap();
    assert!(c.is_some());
    h.drain();
    let cancel = Message::parse(h.sent.last().unwrap().1.clone()).unwrap();
    assert_eq!(cancel.reasons().next().unwrap().unwrap().cause, Some(200));
}

#[test]
fn cancelled_invite_without_a_final_ends_after_64_t1() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-12", Transport::Udp);
    let txn = h
        .layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 180));
    h.layer.cancel(h.now, txn, None).unwrap();
    // The target never answers the CANCEL nor the INVITE (§9.1): both end by themselves.
    h.run_until(Duration::from_secs(31));
    assert_eq!(h.layer.len(), 2);
    h.run_until(Duration::from_secs(33));
    assert!(h.layer.is_empty());
}

#[test]
fn transport_error_is_its_own_event() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-7", Transport::Tcp);
    let txn = h
        .layer
        .send_request(h.now, inv, peer(Transport::Tcp))
        .unwrap();
    h.layer
        .handle_transport_error(TxnRef::Client(txn), TransportError::Refused);
    h.drain();
    assert_eq!(
        h.count(|e| matches!(e, Event::TransportError(_, TransportError::Refused))),
        1
    );
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 0);
    assert!(h.layer.is_empty());
}

#[test]
fn abandoned_invite_stops_retransmitting_but_keeps_a_late_answer() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-8", Transport::Udp);
    let txn = h
        .layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_secs(1));
    h.layer.abandon(txn);
    h.run_until(Duration::from_secs(10));
    assert_eq!(h.send_times(), secs(&[0.0, 0.5]));
    h.recv(Transport::Udp, response_to(&inv, 200));
    assert_eq!(h.responses(), [200]);
}

#[test]
fn stray_response_is_reported() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bK-9", Transport::Udp);
    h.recv(Transport::Udp, response_to(&inv, 200));
    assert_eq!(h.count(|e| matches!(e, Event::StrayResponse { .. })), 1);
}

#[test]
fn stale_handles_are_refused() {
    let mut h = Harness::new();
    let opt = request(Method::Options, "z9hG4bK-10", Transport::Tcp);
    h.recv(Transport::Tcp, opt.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&opt, 200))
        .unwrap();
    h.run_until(Duration::ZERO);
    // Reuse the slot with a new transaction; the old handle must not reach it.
    let opt2 = request(Method::Options, "z9hG4bK-11", Transport::Tcp);
    h.recv(Transport::Tcp, opt2.as_bytes().clone());
    assert!(h
        .layer
        .send_response(h.now, txn, response_to(&opt, 200))
        .is_err());
}

#[test]
fn stats_count_what_the_layer_and_its_front_door_did() {
    struct AcceptAll;
    impl TransactionUser for AcceptAll {
        fn handle_txn_event(&mut self, _: Instant, _: Event, _: &mut TxnLayer) {}
        fn handle_timeout(&mut self, _: Instant, _: &mut TxnLayer) {}
        fn poll_timeout(&mut self) -> Option<Instant> {
            None
        }
    }
    let mut h = Harness::new();
    // A client INVITE that times out: 6 retransmissions, one timeout.
    let inv = request(Method::Invite, "z9hG4bK-s1", Transport::Udp);
    h.layer
        .send_request(h.now, inv, peer(Transport::Udp))
        .unwrap();
    h.run_until(Duration::from_secs(40));
    // A server transaction with one retransmission absorbed.
    let opts = request(Method::Options, "z9hG4bK-s2", Transport::Udp);
    let bytes = opts.as_bytes().clone();
    h.recv(Transport::Udp, bytes.clone());
    h.recv(Transport::Udp, bytes);
    // A response nobody asked for.
    h.recv(Transport::Udp, response_to(&opts, 200));
    // Through the front door: one admitted, one unparseable, one invalid.
    let mut door = FrontDoor::new(rollover_sip::Limits::default());
    let mut user = AcceptAll;
    let reg = request(Method::Register, "z9hG4bK-s3", Transport::Udp);
    let reg = reg.as_bytes().clone();
    let (now, src) = (h.now, peer(Transport::Udp));
    door.handle(now, &mut user, &mut h.layer, src, reg, 0);
    door.handle(
        now,
        &mut user,
        &mut h.layer,
        src,
        Bytes::from_static(b"\x00junk"),
        0,
    );
    let no_call_id = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-s4\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    door.handle(now, &mut user, &mut h.layer, src, no_call_id.into(), 0);
    let s = h.layer.stats();
    assert_eq!(
        (s.client_started, s.retransmitted, s.timeouts),
        (1, 6, 1),
        "{s}"
    );
    assert_eq!((s.server_started, s.absorbed), (2, 1), "{s}");
    assert_eq!(s.stray_responses, 1, "{s}");
    assert_eq!(
        (s.front.admitted, s.front.unparseable, s.front.invalid),
        (1, 1, 1),
        "{s}"
    );
}

#[test]
fn stale_deadlines_are_compacted_and_live_ones_kept() {
    let mut h = Harness::new();
    // 1,000 OPTIONS over UDP never answered: they must still retransmit and time out at
    // 64·T1 whatever is compacted around them. Their Timer E (at T1) stays on top of the
    // deadline heap, so what is stale below it is not dropped on the way.
    for i in 0..1000 {
        let req = request(Method::Options, &format!("z9hG4bK-u{i}"), Transport::Udp);
        h.layer
            .send_request(h.now, req, peer(Transport::Udp))
            .unwrap();
    }
    // 5,000 over TCP answered at once: each leaves its Timer F behind, stale.
    for i in 0..5000 {
        let req = request(Method::Options, &format!("z9hG4bK-a{i}"), Transport::Tcp);
        h.layer
            .send_request(h.now, req.clone(), peer(Transport::Tcp))
            .unwrap();
        h.recv(Transport::Tcp, response_to(&req, 200));
    }
    h.run_until(Duration::from_millis(1));
    assert_eq!(h.layer.len(), 1000);
    assert!(
        h.layer.heap_len() <= 4 * h.layer.len() + 1024,
        "{} deadlines for {} transactions",
        h.layer.heap_len(),
        h.layer.len()
    );
    h.run_until(Duration::from_secs(40));
    assert_eq!(h.count(|e| matches!(e, Event::Timeout(_))), 1000);
    assert!(h.layer.is_empty());
}

#[test]
fn linger_caps_timers_d_j_l_and_m_but_not_h() {
    let linger = Config {
        linger: Some(Duration::from_secs(5)),
        ..Config::default()
    };
    let with = |cfg: Config| {
        let mut h = Harness::new();
        h.layer = TxnLayer::new(cfg);
        h
    };
    // Timer D: a client INVITE that got a 486.
    let mut h = with(linger);
    let inv = request(Method::Invite, "z9hG4bK-d", Transport::Udp);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 486));
    h.run_until(Duration::from_millis(4900));
    assert_eq!(h.layer.len(), 1, "Timer D still running");
    h.run_until(Duration::from_millis(5100));
    assert!(h.layer.is_empty(), "Timer D capped at 5 s");
    // Timer M: a client INVITE that got a 2xx.
    let mut h = with(linger);
    h.layer
        .send_request(h.now, inv.clone(), peer(Transport::Udp))
        .unwrap();
    h.recv(Transport::Udp, response_to(&inv, 200));
    h.run_until(Duration::from_millis(5100));
    assert!(h.layer.is_empty(), "Timer M capped at 5 s");
    // Timer L: a server INVITE that sent a 2xx.
    let mut h = with(linger);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 200))
        .unwrap();
    h.run_until(Duration::from_millis(4900));
    assert_eq!(h.layer.len(), 1);
    h.run_until(Duration::from_millis(5100));
    assert!(h.layer.is_empty(), "Timer L capped at 5 s");
    // Timer J: a server non-INVITE that sent its final; it still answers a retransmission
    // inside the window.
    let mut h = with(linger);
    let bye = request(Method::Bye, "z9hG4bK-j", Transport::Udp);
    h.recv(Transport::Udp, bye.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&bye, 200))
        .unwrap();
    h.run_until(Duration::from_secs(4));
    h.recv(Transport::Udp, bye.as_bytes().clone());
    assert_eq!(h.sent.len(), 2, "the 200 resent for the retransmission");
    h.run_until(Duration::from_millis(5100));
    assert!(h.layer.is_empty(), "Timer J capped at 5 s");
    // Timer H waits for the ACK the full 64·T1: it is not lingering, it is waiting.
    let mut h = with(linger);
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 486))
        .unwrap();
    h.run_until(Duration::from_secs(20));
    assert_eq!(h.layer.len(), 1, "Timer H is not capped");
    // Without `linger`, the RFC's 32 s.
    let mut h = with(Config::default());
    h.recv(Transport::Udp, inv.as_bytes().clone());
    let txn = server_txn(&h);
    h.layer
        .send_response(h.now, txn, response_to(&inv, 200))
        .unwrap();
    h.run_until(Duration::from_secs(31));
    assert_eq!(h.layer.len(), 1, "Timer L is 64·T1 by default");
}

#[test]
fn shed_refuses_new_requests_only() {
    let limits = rollover_sip::Limits::default();
    let inv = request(Method::Invite, "z9hG4bK-shed", Transport::Udp);
    let busy = crate::shed(inv.as_bytes(), &limits, 7).expect("a new INVITE is shed");
    let busy = Message::parse(busy).unwrap();
    assert_eq!(busy.status(), Some(503));
    assert_eq!(busy.retry_after().unwrap().unwrap().seconds, 7);
    assert_eq!(busy.top_via().unwrap().branch(), Some("z9hG4bK-shed"));
    assert!(busy.to_tag().is_some());
    // The same tag for a retransmission.
    let again = Message::parse(crate::shed(inv.as_bytes(), &limits, 7).unwrap()).unwrap();
    assert_eq!(again.to_tag(), busy.to_tag());
    // Never: responses, ACK, CANCEL, in-dialog requests, junk.
    assert!(crate::shed(&response_to(&inv, 200), &limits, 7).is_none());
    for m in [Method::Ack, Method::Cancel] {
        let r = request(m.clone(), "z9hG4bK-shed", Transport::Udp);
        assert!(crate::shed(r.as_bytes(), &limits, 7).is_none(), "{m:?}");
    }
    let bye = RequestBuilder::new(Method::Bye, "sip:bob@127.0.0.1:5070")
        .via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye")
        .from("<sip:alice@example.com>;tag=a1")
        .to("<sip:bob@example.com>;tag=b1")
        .call_id("call-1@example.com")
        .cseq(2)
        .build()
        .unwrap();
    assert!(crate::shed(&bye, &limits, 7).is_none());
    assert!(crate::shed(&bytes::Bytes::from_static(b"\x00junk"), &limits, 7).is_none());
}

/// A value kept by transaction handle is found by that handle only: a transaction that
/// ended leaves its slot to the next one, whose handle neither sees nor removes the old
/// value, and the old handle finds nothing once the new value is in.
#[test]
fn a_txn_map_tells_a_reused_slot_from_the_transaction_that_ended() {
    let mut h = Harness::new();
    let mut map: crate::TxnMap<crate::ClientTxn, &str> = crate::TxnMap::new();
    let options = |h: &mut Harness, branch: &str| {
        let req = request(Method::Options, branch, Transport::Udp);
        h.layer
            .send_request(h.now, req, peer(Transport::Udp))
            .unwrap()
    };
    let first = options(&mut h, "z9hG4bKmap1");
    assert_eq!(map.insert(first, "first"), None);
    assert_eq!(map.insert(first, "first again"), Some("first"));
    assert_eq!(map.get(&first), Some(&"first again"));
    assert_eq!(map.len(), 1);
    // A 200 ends it; once Timer K has run out, its slot is free.
    h.drain();
    let req = h
        .sent
        .last()
        .map(|(_, b)| Message::parse(b.clone()).unwrap())
        .unwrap();
    h.recv(Transport::Udp, response_to(&req, 200));
    h.run_until(Duration::from_secs(40));
    assert!(h.count(|e| matches!(e, Event::Terminated(TxnRef::Client(c)) if *c == first)) == 1);
    let second = options(&mut h, "z9hG4bKmap2");
    assert_eq!(
        first.slot_gen_raw().0,
        second.slot_gen_raw().0,
        "the slot is reused"
    );
    assert_eq!(map.get(&second), None);
    assert_eq!(map.remove(&second), None);
    assert_eq!(map.len(), 1);
    assert_eq!(map.insert(second, "second"), None);
    assert_eq!(map.get(&first), None);
    assert_eq!(map.remove(&first), None);
    assert_eq!(map.get(&second), Some(&"second"));
    assert_eq!(map.len(), 1);
    assert_eq!(map.remove(&second), Some("second"));
    assert!(map.is_empty());
}
