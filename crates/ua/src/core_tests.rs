//! The core's server side in virtual time: the 2xx retransmitted until its ACK, BYE and
//! CANCEL; and an outgoing call placed through the core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rollover_sip::{Message, Method, RequestBuilder, StatusCode};
use rollover_testkit::{Targets, World};
use rollover_txn::{Peer, TransactionUser, Transport, TxnLayer};

use crate::*;

const CALLER: &str = "192.0.2.50:5060";

/// A core and its transaction layer, with what they sent and told, in virtual time.
struct Bench {
    txn: TxnLayer,
    core: UaCore,
    start: Instant,
    now: Instant,
    /// (seconds since start, message) of everything sent.
    sent: Vec<(f64, Message)>,
    /// Where each of `sent` went.
    dests: Vec<Peer>,
    events: Vec<UaEvent>,
}

impl Bench {
    fn new(cfg: UaConfig) -> Bench {
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; later times are virtual
        let start = Instant::now();
        let local: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        Bench {
            txn: TxnLayer::new(cfg.txn_config()),
            core: UaCore::new(cfg, local),
            start,
            now: start,
            sent: vec![],
            dests: vec![],
            events: vec![],
        }
    }

    fn at(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.txn.poll_event() {
                busy = true;
                self.core.handle_txn_event(self.now, ev, &mut self.txn);
            }
            while let Some(t) = self.txn.poll_transmit() {
                busy = true;
                let at = self.at();
                self.sent.push((at, Message::parse(t.bytes).unwrap()));
                self.dests.push(t.dest);
            }
            while let Some(e) = self.core.poll_event() {
                busy = true;
                self.events.push(e);
            }
            if !busy {
                break;
            }
        }
    }

    /// A message from the caller.
    fn deliver(&mut self, bytes: bytes::Bytes) {
        let source = Peer {
            transport: Transport::Udp,
            addr: CALLER.parse().unwrap(),
        };
        self.txn
            .handle_message(self.now, source, Message::parse(bytes).unwrap());
        self.pump();
    }

    /// Runs every timer up to `secs` after the start.
    fn run_to(&mut self, secs: f64) {
        let until = self.start + Duration::from_secs_f64(secs);
        loop {
            let next = [self.txn.poll_timeout(), self.core.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = t.max(self.now);
                    self.txn.handle_timeout(self.now);
                    self.core.handle_timeout(self.now, &mut self.txn);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn answer(&mut self, r: CallRef, answer: Answer) {
        self.core.answer(self.now, r, answer, &mut self.txn);
        self.pump();
    }

    /// The incoming call announced last.
    fn incoming(&self) -> CallRef {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                UaEvent::Incoming(r, _) => Some(*r),
                _ => None,
            })
            .expect("an incoming call")
    }

    /// When each response with this status and CSeq method was sent.
    fn times(&self, status: u16, method: Method) -> Vec<f64> {
        self.sent
            .iter()
            .filter(|(_, m)| {
                m.status() == Some(status) && m.cseq().is_ok_and(|c| c.method == method)
            })
            .map(|(t, _)| *t)
            .collect()
    }

    /// Our To tag, from the last response we sent.
    fn our_tag(&self) -> String {
        self.sent
            .iter()
            .rev()
            .find_map(|(_, m)| m.to_tag().map(str::to_owned))
            .expect("a tagged response")
    }
}

fn request(method: Method, branch: &str, cseq: u32, to_tag: Option<&str>) -> bytes::Bytes {
    let to = match to_tag {
        Some(t) => format!("<sip:rollover@198.51.100.7>;tag={t}"),
        None => "<sip:rollover@198.51.100.7>".to_owned(),
    };
    RequestBuilder::new(method, "sip:rollover@198.51.100.7")
        .via(&format!("SIP/2.0/UDP {CALLER};branch={branch}"))
        .from("<sip:bob@example.com>;tag=caller")
        .to(&to)
        .call_id("in-1@example.com")
        .cseq(cseq)
        .header("Contact", &format!("<sip:bob@{CALLER}>"))
        .build()
        .unwrap()
}

fn invite() -> bytes::Bytes {
    request(Method::Invite, "z9hG4bK-in1", 1, None)
}

/// The retransmission times RFC 3261 §13.3.1.4 gives: T1, then doubling up to T2, while
/// before 64·T1.
fn expected(t1: f64, t2: f64) -> Vec<f64> {
    let (mut at, mut interval, mut out) = (0.0, t1, vec![0.0]);
    loop {
        at += interval;
        if at >= 64.0 * t1 {
            return out;
        }
        out.push(at);
        interval = (interval * 2.0).min(t2);
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn the_2xx_is_retransmitted_at_t1_doubling_to_t2_until_the_ack() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    b.run_to(10.0);
    assert!(
        close(&b.times(200, Method::Invite), &[0.0, 0.5, 1.5, 3.5, 7.5]),
        "{:?}",
        b.times(200, Method::Invite)
    );
    let tag = b.our_tag();
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 1, Some(&tag)));
    b.run_to(60.0);
    assert_eq!(b.times(200, Method::Invite).len(), 5, "none after the ACK");
    assert!(b.core.contains(r), "the call goes on after the ACK");
}

#[test]
fn without_an_ack_the_2xx_stops_at_64_t1_with_the_configured_timers() {
    let cfg = UaConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
    };
    let mut b = Bench::new(cfg);
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    b.run_to(30.0);
    let sent = b.times(200, Method::Invite);
    assert!(close(&sent, &expected(0.1, 0.4)), "{sent:?}");
    assert!(sent.iter().all(|t| *t < 6.4));
    // The RFC's own values give 0, 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5.
    let rfc = expected(0.5, 4.0);
    assert_eq!(rfc.last().copied(), Some(31.5));
    assert_eq!(rfc.len(), 11);
}

#[test]
fn a_bye_is_answered_200_and_ends_the_call() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 1, Some(&tag)));
    b.now += Duration::from_secs(5);
    b.deliver(request(Method::Bye, "z9hG4bK-bye1", 2, Some(&tag)));
    assert_eq!(b.times(200, Method::Bye), [5.0]);
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::HungUp)));
    assert!(!b.core.contains(r));
    // A BYE for a dialog that is over finds nothing.
    b.deliver(request(Method::Bye, "z9hG4bK-bye2", 3, Some(&tag)));
    assert_eq!(b.times(200, Method::Bye).len(), 1);
}

#[test]
fn a_bye_before_the_ack_stops_the_2xx_too() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.run_to(1.0);
    b.deliver(request(Method::Bye, "z9hG4bK-bye1", 2, Some(&tag)));
    b.run_to(40.0);
    assert!(close(&b.times(200, Method::Invite), &[0.0, 0.5]));
    assert!(b.core.poll_timeout().is_none());
}

#[test]
fn a_cancel_before_the_answer_gets_200_and_the_invite_487() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.now += Duration::from_secs(2);
    b.deliver(request(Method::Cancel, "z9hG4bK-in1", 1, None));
    assert_eq!(b.times(200, Method::Cancel), [2.0]);
    assert_eq!(b.times(487, Method::Invite), [2.0]);
    let (_, resp) = b
        .sent
        .iter()
        .find(|(_, m)| m.status() == Some(487))
        .unwrap();
    assert!(resp.to_tag().is_some_and(|t| t.starts_with("rl")));
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::Cancelled)));
    // The application's answer comes too late: nothing more is sent.
    let before = b.sent.len();
    b.answer(r, Answer::Accept(None));
    b.run_to(40.0);
    assert_eq!(b.times(200, Method::Invite), Vec::<f64>::new());
    assert!(b.sent[before..]
        .iter()
        .all(|(_, m)| m.status() != Some(200)));
    let s = b.core.stats();
    assert_eq!(
        (s.incoming, s.incoming_cancelled, s.incoming_accepted),
        (1, 1, 0),
        "{s}"
    );
}

#[test]
fn a_rejected_call_is_over_and_a_cancel_after_it_only_gets_200() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Reject(StatusCode::BUSY_HERE, "Busy Here".into()));
    assert_eq!(b.times(486, Method::Invite), [0.0]);
    assert!(!b.core.contains(r));
    b.deliver(request(Method::Cancel, "z9hG4bK-in1", 1, None));
    assert_eq!(b.times(200, Method::Cancel), [0.0]);
    assert!(b.times(487, Method::Invite).is_empty());
}

#[test]
fn an_outgoing_call_through_the_core_reports_by_its_handle_and_finishes() {
    let world = World::parse("a=486 b=180,200@1s").unwrap();
    let mut scripted = Targets::new(&world);
    let mut b = Bench::new(UaConfig::default());
    let local: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let plan = TargetPlan::serial(vec![
        Target::parse("sip:a@192.0.2.10").unwrap(),
        Target::parse("sip:b@192.0.2.11").unwrap(),
    ]);
    let opts = CallOptions::new("<sip:alice@example.com>", local, plan, "out-1@x", "ot1");
    let r = b.core.call(
        b.now,
        opts,
        Redirects::Follow,
        Box::new(LiteralResolver),
        &mut b.txn,
    );
    for _ in 0..50 {
        b.pump();
        for (_, m) in std::mem::take(&mut b.sent) {
            let t = rollover_txn::Transmit {
                dest: Peer {
                    transport: Transport::Udp,
                    addr: "192.0.2.10:5060".parse().unwrap(),
                },
                bytes: m.as_bytes().clone(),
                txn: None,
            };
            scripted.on_request(b.now, &t, &m, &mut b.txn);
        }
        b.pump();
        if let Some(due) = scripted.next_due() {
            b.now = due.max(b.now);
            scripted.fire(b.now, &mut b.txn);
        }
        if b.events.contains(&UaEvent::Finished(r)) {
            break;
        }
        // Hang up once answered; the BYE is answered by the script.
        if b.events
            .iter()
            .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Answered(..))))
        {
            b.core.hangup(b.now, r, &mut b.txn);
        }
    }
    let ours: Vec<&CallEvent> = b
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Call(c, e) if *c == r => Some(e),
            _ => None,
        })
        .collect();
    assert!(matches!(ours.first(), Some(CallEvent::Trying(t)) if t.uri == "sip:a@192.0.2.10"));
    assert!(ours
        .iter()
        .any(|e| matches!(e, CallEvent::Answered(t, _) if t.uri == "sip:b@192.0.2.11")));
    assert!(ours
        .iter()
        .any(|e| matches!(e, CallEvent::HungUp { remote: false })));
    assert!(b.events.contains(&UaEvent::Finished(r)), "{:?}", b.events);
    assert!(!b.core.contains(r));
    let s = b.core.stats();
    assert_eq!(
        (
            s.calls,
            s.targets_tried,
            s.rolled_over,
            s.answered,
            s.unanswered
        ),
        (1, 2, 1, 1, 0),
        "{s}"
    );
}

/// An INVITE with this Contact and Record-Route (first hop first, as received).
fn invite_via(contact: &str, record_route: &[&str]) -> bytes::Bytes {
    let mut b = RequestBuilder::new(Method::Invite, "sip:rollover@198.51.100.7")
        .via(&format!("SIP/2.0/UDP {CALLER};branch=z9hG4bK-in1"))
        .from("\"Bob\" <sip:bob@example.com>;tag=caller")
        .to("<sip:rollover@198.51.100.7>")
        .call_id("in-1@example.com")
        .cseq(7)
        .header("Contact", &format!("<{contact}>"));
    for r in record_route {
        b = b.header("Record-Route", &format!("<{r}>"));
    }
    b.build().unwrap()
}

impl Bench {
    /// The BYEs sent (each once: not its retransmissions), with when and where.
    fn byes(&self) -> Vec<(f64, Message, Peer)> {
        let mut out: Vec<(f64, Message, Peer)> = Vec::new();
        let sent = self.sent.iter().zip(&self.dests);
        for ((t, m), d) in sent {
            let bye = m.method() == Some(&Method::Bye) && m.status().is_none();
            if bye && !out.iter().any(|(_, o, _)| o.as_bytes() == m.as_bytes()) {
                out.push((*t, m.clone(), *d));
            }
        }
        out
    }
}

impl Bench {
    /// An incoming call from an INVITE with this Contact and Record-Route, answered,
    /// acknowledged, then hung up here: the BYEs sent.
    fn answered_then_hung_up(
        &mut self,
        contact: &str,
        record_route: &[&str],
    ) -> (CallRef, Vec<(f64, Message, Peer)>) {
        self.deliver(invite_via(contact, record_route));
        let r = self.incoming();
        self.answer(r, Answer::Accept(None));
        let tag = self.our_tag();
        self.deliver(request(Method::Ack, "z9hG4bK-ack1", 7, Some(&tag)));
        self.core.hangup(self.now, r, &mut self.txn);
        self.pump();
        (r, self.byes())
    }
}

fn header(m: &Message, name: rollover_sip::HeaderName) -> Vec<String> {
    m.headers_named(name)
        .map(|h| String::from_utf8_lossy(m.value_bytes(h)).into_owned())
        .collect()
}

/// RFC 3261 §13.3.1.4: a 2xx never acknowledged ends the call with a BYE at 64·T1, in the
/// dialog the INVITE set up (§12.1.1: its Contact, its Record-Route in order, the tags
/// swapped), to the first hop; the call is then over, and a late ACK finds nothing.
#[test]
fn without_an_ack_the_call_is_ended_with_a_bye_at_64_t1() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite_via(
        "sip:bob@192.0.2.51:5070",
        &["sip:192.0.2.60:5062;lr", "sip:192.0.2.61;lr"],
    ));
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.run_to(31.9);
    assert!(b.byes().is_empty());
    assert!(b.core.contains(r));
    b.run_to(40.0);
    let byes = b.byes();
    assert_eq!(byes.len(), 1, "{byes:?}");
    let (at, bye, dest) = &byes[0];
    assert!((at - 32.0).abs() < 1e-6, "{at}");
    assert_eq!(dest.addr, "192.0.2.60:5062".parse().unwrap());
    assert_eq!(dest.transport, Transport::Udp);
    assert_eq!(bye.request_uri_str(), Some("sip:bob@192.0.2.51:5070"));
    use rollover_sip::HeaderName as H;
    assert_eq!(
        header(bye, H::Route),
        ["<sip:192.0.2.60:5062;lr>", "<sip:192.0.2.61;lr>"]
    );
    assert_eq!(
        header(bye, H::To),
        ["\"Bob\" <sip:bob@example.com>;tag=caller"]
    );
    assert_eq!(
        header(bye, H::From),
        [format!("<sip:rollover@198.51.100.7>;tag={tag}")]
    );
    assert_eq!(bye.call_id().unwrap(), "in-1@example.com");
    assert_eq!(bye.cseq().unwrap().method, Method::Bye);
    // The 2xx is not sent again once the BYE is out.
    assert!(b.times(200, Method::Invite).iter().all(|t| *t < 32.0));
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::NoAck)));
    assert!(!b.core.contains(r));
    let before = b.sent.len();
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 7, Some(&tag)));
    b.run_to(80.0);
    assert_eq!(b.byes().len(), 1);
    assert!(b.sent[before..]
        .iter()
        .all(|(_, m)| m.status().is_some() || m.method() == Some(&Method::Bye)));
}

#[test]
fn an_acknowledged_call_gets_no_bye_at_64_t1() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.run_to(3.0);
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 1, Some(&tag)));
    b.run_to(100.0);
    assert!(b.byes().is_empty());
    assert!(b.core.contains(r));
    assert!(!b
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::IncomingEnded(..))));
}

/// The application hangs up an answered incoming call: a BYE to the Contact (no route
/// set), and the call is over at once.
#[test]
fn hanging_up_an_answered_incoming_call_sends_a_bye_to_its_contact() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite_via("sip:bob@192.0.2.51:5070", &[]));
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 7, Some(&tag)));
    b.now += Duration::from_secs(3);
    b.core.hangup(b.now, r, &mut b.txn);
    b.pump();
    let byes = b.byes();
    assert_eq!(byes.len(), 1, "{byes:?}");
    let (at, bye, dest) = &byes[0];
    assert_eq!(*at, 3.0);
    assert_eq!(dest.addr, "192.0.2.51:5070".parse().unwrap());
    assert!(header(bye, rollover_sip::HeaderName::Route).is_empty());
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::HungUpHere)));
    assert!(!b.core.contains(r));
    // Twice is once.
    b.core.hangup(b.now, r, &mut b.txn);
    b.pump();
    assert_eq!(b.byes().len(), 1);
}

/// A first hop named by a host name, with no resolver given to the core: the BYE goes back
/// where the INVITE came from (the previous hop).
#[test]
fn a_bye_whose_first_hop_is_a_name_goes_to_the_previous_hop() {
    let mut b = Bench::new(UaConfig::default());
    let (_, byes) =
        b.answered_then_hung_up("sip:bob@192.0.2.51:5070", &["sip:edge.example.com;lr"]);
    assert_eq!(byes.len(), 1, "{byes:?}");
    assert_eq!(byes[0].2.addr, CALLER.parse().unwrap());
    assert_eq!(
        header(&byes[0].1, rollover_sip::HeaderName::Route),
        ["<sip:edge.example.com;lr>"]
    );
}

#[test]
fn hanging_up_before_the_answer_declines_the_call() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite());
    let r = b.incoming();
    b.core.hangup(b.now, r, &mut b.txn);
    b.pump();
    assert_eq!(b.times(603, Method::Invite), [0.0]);
    assert!(b.byes().is_empty());
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::HungUpHere)));
    assert!(!b.core.contains(r));
}

/// RFC 3261 §15: the callee sends no BYE before the ACK of its 2xx. Hung up in between,
/// the BYE waits for the ACK.
#[test]
fn a_hangup_before_the_ack_sends_its_bye_when_the_ack_comes() {
    let mut b = Bench::new(UaConfig::default());
    b.deliver(invite_via("sip:bob@192.0.2.51:5070", &[]));
    let r = b.incoming();
    b.answer(r, Answer::Accept(None));
    let tag = b.our_tag();
    b.core.hangup(b.now, r, &mut b.txn);
    b.pump();
    b.run_to(1.0);
    assert!(b.byes().is_empty(), "no BYE before the ACK");
    assert!(b.core.contains(r));
    b.deliver(request(Method::Ack, "z9hG4bK-ack1", 7, Some(&tag)));
    let byes = b.byes();
    assert_eq!(byes.len(), 1, "{byes:?}");
    assert_eq!(byes[0].0, 1.0);
    assert!(b
        .events
        .contains(&UaEvent::IncomingEnded(r, IncomingEnd::HungUpHere)));
    assert!(!b.core.contains(r));
}

/// With a resolver, a first hop named by a host name is looked up.
#[test]
fn a_bye_whose_first_hop_is_a_name_is_resolved_when_the_core_has_a_resolver() {
    struct Edge;
    impl Resolver for Edge {
        fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
            (host == "edge.example.com").then(|| SocketAddr::from(([192, 0, 2, 77], port)))
        }
    }
    let mut b = Bench::new(UaConfig::default());
    b.core.set_resolver(Box::new(Edge));
    let (_, byes) =
        b.answered_then_hung_up("sip:bob@192.0.2.51:5070", &["sip:edge.example.com:5064;lr"]);
    assert_eq!(byes.len(), 1, "{byes:?}");
    assert_eq!(byes[0].2.addr, "192.0.2.77:5064".parse().unwrap());
}
