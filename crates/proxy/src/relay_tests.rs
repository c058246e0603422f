//! The proxy as an attacker tries it: every way of getting a request relayed somewhere the
//! dial plan never named, of making the proxy amplify, and of using it as a reflector; and
//! the legitimate dialogs that must keep working beside those refusals.
//!
//! Messages go through [`Proxy::admit`] first, as the driver sends them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_sip::Message;
use rollover_txn::{Admit, Config, Peer, Transport, TxnLayer};

use crate::*;

const PROXY: &str = "192.0.2.1:5060";
const VICTIM: &str = "203.0.113.66:5060";
const TARGET: &str = "192.0.2.10:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

/// The dial plan: `sip:<digits>@…` goes to TARGET; anything else is 404.
fn plan(req: &Message, _: &Peer) -> RouteDecision {
    let uri = req.request_uri_str().unwrap_or_default();
    let user = uri
        .strip_prefix("sip:")
        .and_then(|u| u.split_once('@'))
        .map(|(u, _)| u);
    match user {
        Some(u) if !u.is_empty() && u.bytes().all(|c| c.is_ascii_digit()) => {
            RouteDecision::Targets {
                plan: TargetPlan::serial(
                    vec![Target::parse(&format!("sip:{u}@{TARGET}")).unwrap()],
                ),
                policy: FailoverPolicy::default(),
                rule: Arc::from("digits"),
            }
        }
        _ => RouteDecision::Reject {
            status: 404,
            reason: "Not Found".into(),
            rule: Arc::from("(no match)"),
        },
    }
}

struct Net {
    proxy: Proxy<fn(&Message, &Peer) -> RouteDecision>,
    txn: TxnLayer,
    now: Instant,
    /// Everything the proxy sent, with its destination.
    sent: Vec<(Peer, Message)>,
    /// The transaction each of those was sent by, if any.
    refs: Vec<Option<rollover_txn::TxnRef>>,
}

impl Net {
    fn new(security: SecurityConfig) -> Net {
        Net::with(
            ProxyConfig {
                security,
                ..ProxyConfig::default()
            },
            plan,
        )
    }

    fn with(cfg: ProxyConfig, plan: fn(&Message, &Peer) -> RouteDecision) -> Net {
        Net::with_resolver(cfg, plan, Box::new(LiteralResolver))
    }

    fn with_resolver(
        cfg: ProxyConfig,
        plan: fn(&Message, &Peer) -> RouteDecision,
        resolver: Box<dyn Resolver + Send>,
    ) -> Net {
        let local = addr(PROXY);
        let cfg = ProxyConfig {
            local: vec![(Transport::Udp, local), (Transport::Tcp, local)],
            ..cfg
        };
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; later times are virtual
        let now = Instant::now();
        Net {
            proxy: Proxy::new(cfg, plan, resolver),
            txn: TxnLayer::new(Config::default()),
            now,
            sent: Vec::new(),
            refs: Vec::new(),
        }
    }

    fn open() -> Net {
        Net::new(SecurityConfig::default())
    }

    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.txn.poll_event() {
                busy = true;
                self.proxy.handle_txn_event(self.now, ev, &mut self.txn);
            }
            while let Some(t) = self.txn.poll_transmit() {
                busy = true;
                self.sent.push((t.dest, Message::parse(t.bytes).unwrap()));
                self.refs.push(t.txn);
            }
            if !busy {
                return;
            }
        }
    }

    /// Receives `text` (lines ending in `\n`) from `from`, through the front door.
    fn recv(&mut self, from: Peer, text: &str) {
        self.recv_bytes(from, text.replace('\n', "\r\n").into());
    }

    fn recv_bytes(&mut self, from: Peer, bytes: bytes::Bytes) {
        let msg = Message::parse(bytes).unwrap();
        match self.proxy.admit(self.now, &from, &msg, 0) {
            Admit::Accept => self.txn.handle_message(self.now, from, msg),
            Admit::Drop => {}
            Admit::Reply(b) => {
                self.sent.push((from, Message::parse(b).unwrap()));
                self.refs.push(None);
            }
        }
        self.pump();
    }

    /// Lets `d` of virtual time pass, firing every timer on the way.
    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next = [self.txn.poll_timeout(), self.proxy.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.txn.handle_timeout(self.now);
                    self.proxy.handle_timeout(self.now, &mut self.txn);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn sent_to(&self, a: &str) -> Vec<&Message> {
        let a = addr(a);
        self.sent
            .iter()
            .filter(|(p, _)| p.addr.ip() == a.ip())
            .map(|(_, m)| m)
            .collect()
    }

    fn statuses_to(&self, a: &str) -> Vec<u16> {
        self.sent_to(a).iter().filter_map(|m| m.status()).collect()
    }

    fn nothing_to_victim(&self) {
        let v = self.sent_to(VICTIM);
        assert!(v.is_empty(), "relayed to the victim: {v:?}");
    }
}

const ATTACKER: &str = "198.51.100.66:5060";

fn request(method: &str, ruri: &str, to_tag: Option<&str>, extra: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {ATTACKER};branch=z9hG4bK-{method}-{}\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag=att\nTo: <sip:b@example.com>{to_tag}\nCall-ID: attack-{method}@example.com\nCSeq: 1 {method}\nContact: <sip:a@{ATTACKER}>\n{extra}Content-Length: 0\n\n",
        ruri.len()
    )
}

#[test]
fn a_route_to_the_victim_is_removed_and_the_plan_decides() {
    let mut n = Net::open();
    n.recv(
        udp(ATTACKER),
        &request(
            "INVITE",
            "sip:100@192.0.2.1",
            None,
            &format!("Route: <sip:{VICTIM};lr>\n"),
        ),
    );
    n.nothing_to_victim();
    let to_target = n.sent_to(TARGET);
    assert_eq!(to_target.len(), 1, "the plan routed it");
    assert_eq!(
        to_target[0].routes().count(),
        0,
        "the foreign Route is gone"
    );
    // The same with a number the plan does not route: 404, and still nothing relayed.
    let mut n = Net::open();
    let r = request(
        "INVITE",
        &format!("sip:premium@{VICTIM}"),
        None,
        &format!("Route: <sip:{VICTIM};lr;transport=tcp>\n"),
    );
    n.recv(udp(ATTACKER), &r);
    n.nothing_to_victim();
    assert_eq!(n.statuses_to(ATTACKER), [404]);
}

#[test]
fn our_address_on_top_without_our_token_is_not_ours() {
    let mut n = Net::open();
    let route = format!("Route: <sip:{PROXY};lr>, <sip:{VICTIM};lr>\n");
    n.recv(
        udp(ATTACKER),
        &request("INVITE", &format!("sip:x@{VICTIM}"), None, &route),
    );
    n.nothing_to_victim();
    // A token from another installation (or a guess) does not pass either.
    let route = format!("Route: <sip:{PROXY};lr;tk=0123456789abcdef>, <sip:{VICTIM};lr>\n");
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", &format!("sip:x@{VICTIM}"), Some("t"), &route),
    );
    n.nothing_to_victim();
}

#[test]
fn the_strict_route_trick_goes_nowhere() {
    let mut n = Net::open();
    let route = format!("Route: <sip:198.51.100.9;lr>, <sip:x@{VICTIM}>\n");
    n.recv(
        udp(ATTACKER),
        &request("INVITE", &format!("sip:{PROXY};lr"), None, &route),
    );
    n.recv(
        udp(ATTACKER),
        &request("BYE", &format!("sip:{PROXY};lr"), Some("t1"), &route),
    );
    n.nothing_to_victim();
    assert!(n.sent_to("198.51.100.9:5060").is_empty());
}

#[test]
fn in_dialog_requests_without_our_route_get_404_statelessly() {
    for method in ["INVITE", "BYE", "OPTIONS", "MESSAGE", "REFER"] {
        let mut n = Net::open();
        n.recv(
            udp(ATTACKER),
            &request(method, &format!("sip:x@{VICTIM}"), Some("t1"), ""),
        );
        let maddr = format!("sip:x@198.51.100.200;maddr={}", addr(VICTIM).ip());
        n.recv(udp(ATTACKER), &request(method, &maddr, Some("t2"), ""));
        n.nothing_to_victim();
        n.run(Duration::from_secs(40));
        assert_eq!(
            n.statuses_to(ATTACKER),
            [404, 404],
            "{method}: one response per request, never retransmitted"
        );
    }
}

#[test]
fn other_methods_with_a_route_are_not_relayed() {
    for method in ["MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE"] {
        let mut n = Net::open();
        let route = format!("Route: <sip:{VICTIM};lr>\n");
        n.recv(
            udp(ATTACKER),
            &request(method, &format!("sip:x@{VICTIM}"), None, &route),
        );
        n.nothing_to_victim();
        assert_eq!(n.statuses_to(ATTACKER), [404], "{method}");
    }
}

#[test]
fn an_ack_without_a_transaction_or_our_route_is_dropped() {
    let mut n = Net::open();
    n.recv(
        udp(ATTACKER),
        &request("ACK", &format!("sip:x@{VICTIM}"), Some("t1"), ""),
    );
    let route = format!("Route: <sip:{PROXY};lr>, <sip:{VICTIM};lr;transport=tcp>\n");
    n.recv(
        udp(ATTACKER),
        &request("ACK", &format!("sip:x@{VICTIM}"), Some("t1"), &route),
    );
    n.nothing_to_victim();
    assert!(n.sent.is_empty(), "an ACK is never answered: {:?}", n.sent);
}

#[test]
fn a_stray_2xx_with_a_forged_branch_is_not_reflected() {
    let mut n = Net::open();
    // Our address and prefix, which anyone can write: not a branch we signed.
    let text = format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP {PROXY};branch=z9hG4bKrl12345678.1abcdef.0011223344556677\nVia: SIP/2.0/UDP {VICTIM};branch=z9hG4bK-v\nFrom: <sip:a@example.com>;tag=a\nTo: <sip:b@example.com>;tag=b\nCall-ID: stray@example.com\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
    );
    n.recv(udp(ATTACKER), &text);
    n.nothing_to_victim();
    assert!(n.sent.is_empty());
}

#[test]
fn an_unrouted_invite_gets_exactly_one_datagram_back() {
    let mut n = Net::open();
    let inv = request("INVITE", "sip:premium@192.0.2.1", None, "");
    n.recv(udp(ATTACKER), &inv);
    n.run(Duration::from_secs(40));
    assert_eq!(n.statuses_to(ATTACKER), [404], "no 100, no Timer G copies");
    // A retransmission is answered once more, and only once.
    n.recv(udp(ATTACKER), &inv);
    n.run(Duration::from_secs(40));
    assert_eq!(n.statuses_to(ATTACKER), [404, 404]);
    assert_eq!(n.txn.len(), 0, "no transaction kept");
    // Max-Forwards: 0 and Proxy-Require alike.
    let mut n = Net::open();
    n.recv(
        udp(ATTACKER),
        &request("INVITE", "sip:100@192.0.2.1", None, "")
            .replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    n.recv(
        udp(ATTACKER),
        &request("INVITE", "sip:101@192.0.2.1", None, "Proxy-Require: x\n"),
    );
    n.run(Duration::from_secs(40));
    assert_eq!(n.statuses_to(ATTACKER), [483, 420]);
    assert!(n.sent_to(TARGET).is_empty());
}

/// A whole record-routed call: INVITE, 200, ACK, re-INVITE, BYE from the callee, with
/// Contacts that change on the way. Returns the net and the Record-Route value.
#[test]
fn a_record_routed_dialog_works_in_both_directions() {
    const CALLER: &str = "198.51.100.1:5060";
    let mut n = Net::open();
    let invite = format!(
        "INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-c1;rport\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: dialog@example.com\nCSeq: 1 INVITE\nContact: <sip:alice@{CALLER}>\nContent-Length: 0\n\n"
    );
    n.recv(udp(CALLER), &invite);
    let fwd = n.sent_to(TARGET)[0].clone();
    let rr = fwd
        .record_routes()
        .next()
        .unwrap()
        .unwrap()
        .uri_str
        .to_owned();
    assert!(rr.starts_with(&format!("sip:{PROXY};lr;tk=")), "{rr}");
    // The callee answers with the Record-Route echoed and its Contact.
    let ok = fwd
        .response(200, "OK")
        .to_tag("bob")
        .header("Record-Route", &format!("<{rr}>"))
        .header("Contact", &format!("<sip:bob@{TARGET}>"))
        .build();
    n.recv_bytes(udp(TARGET), ok);
    assert!(n.statuses_to(CALLER).contains(&200));
    // Caller → callee: ACK and a re-INVITE along the route set.
    let in_dialog = |method: &str,
                     cseq: u32,
                     ruri: &str,
                     from: (&str, &str),
                     to: (&str, &str),
                     via: &str| {
        format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{method}{cseq}\nMax-Forwards: 70\nRoute: <{rr}>\nFrom: <sip:{}@example.com>;tag={}\nTo: <sip:{}@example.com>;tag={}\nCall-ID: dialog@example.com\nCSeq: {cseq} {method}\nContent-Length: 0\n\n",
            from.0, from.1, to.0, to.1
        )
    };
    let before = n.sent_to(TARGET).len();
    n.recv(
        udp(CALLER),
        &in_dialog(
            "ACK",
            1,
            &format!("sip:bob@{TARGET}"),
            ("alice", "alice"),
            ("100", "bob"),
            CALLER,
        ),
    );
    n.recv(
        udp(CALLER),
        &in_dialog(
            "INVITE",
            2,
            &format!("sip:bob@{TARGET}"),
            ("alice", "alice"),
            ("100", "bob"),
            CALLER,
        ),
    );
    let got: Vec<String> = n.sent_to(TARGET)[before..]
        .iter()
        .map(|m| format!("{} {}", m.method().unwrap().as_str(), m.routes().count()))
        .collect();
    assert_eq!(got, ["ACK 0", "INVITE 0"], "relayed with our Route popped");
    // The callee moved (new Contact): the caller's BYE goes to the new one.
    const MOVED: &str = "192.0.2.11:5060";
    n.recv(
        udp(CALLER),
        &in_dialog(
            "BYE",
            3,
            &format!("sip:bob@{MOVED}"),
            ("alice", "alice"),
            ("100", "bob"),
            CALLER,
        ),
    );
    assert_eq!(n.sent_to(MOVED).len(), 1);
    // Callee → caller: From and To swapped, the token still checks out.
    n.recv(
        udp(TARGET),
        &in_dialog(
            "BYE",
            1,
            &format!("sip:alice@{CALLER}"),
            ("100", "bob"),
            ("alice", "alice"),
            TARGET,
        ),
    );
    assert!(n
        .sent_to(CALLER)
        .iter()
        .any(|m| m.method().is_some_and(|m| m.as_str() == "BYE")));
    // The route set of this dialog does not serve another Call-ID.
    let other = in_dialog(
        "BYE",
        1,
        &format!("sip:x@{VICTIM}"),
        ("alice", "alice"),
        ("100", "bob"),
        CALLER,
    )
    .replace("Call-ID: dialog@", "Call-ID: other@");
    n.recv(udp(ATTACKER), &other);
    n.nothing_to_victim();
}

#[test]
fn a_stray_2xx_for_our_branch_is_relayed_only_to_where_the_invite_came_from() {
    const CALLER: &str = "198.51.100.1:5060";
    let mut n = Net::open();
    let invite = format!(
        "INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-c1\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: late@example.com\nCSeq: 1 INVITE\nContact: <sip:alice@{CALLER}>\nContent-Length: 0\n\n"
    );
    n.recv(udp(CALLER), &invite);
    let fwd = n.sent_to(TARGET)[0].clone();
    let ok = fwd.response(200, "OK").to_tag("bob").build();
    n.recv_bytes(udp(TARGET), ok.clone());
    // Long after the client transaction ended (Timer M), the callee retransmits its 200.
    n.run(Duration::from_secs(60));
    let before = n.statuses_to(CALLER).len();
    n.recv_bytes(udp(TARGET), ok.clone());
    assert_eq!(
        n.statuses_to(CALLER).len(),
        before + 1,
        "relayed statelessly"
    );
    // The same signed Via with the victim as the next hop: not relayed.
    let text = String::from_utf8(ok.to_vec()).unwrap();
    let forged = text.replace(
        &format!("SIP/2.0/UDP {CALLER};branch=z9hG4bK-c1"),
        &format!("SIP/2.0/UDP {VICTIM};branch=z9hG4bK-c1"),
    );
    assert_ne!(forged, text);
    n.recv_bytes(udp(ATTACKER), forged.into());
    n.nothing_to_victim();
}

#[test]
fn a_trusted_upstream_may_preload_a_route() {
    let security = SecurityConfig {
        trusted: vec!["198.51.100.0/24".parse().unwrap()],
        ..SecurityConfig::default()
    };
    let mut n = Net::new(security);
    n.recv(
        udp(ATTACKER),
        &request(
            "INVITE",
            "sip:premium@192.0.2.1",
            None,
            "Route: <sip:192.0.2.50;lr>\n",
        ),
    );
    assert_eq!(n.sent_to("192.0.2.50:5060").len(), 1);
    // And its in-dialog requests are relayed without a route of ours.
    n.recv(
        udp(ATTACKER),
        &request("BYE", "sip:x@192.0.2.51", Some("t"), ""),
    );
    assert_eq!(n.sent_to("192.0.2.51:5060").len(), 1);
}

#[test]
fn the_front_door_allows_limits_and_sheds_load() {
    // Allow list: a stranger gets one stateless 403, and an ACK nothing.
    let security = SecurityConfig {
        allow: vec!["192.0.2.0/24".parse().unwrap()],
        ..SecurityConfig::default()
    };
    let mut n = Net::new(security);
    n.recv(
        udp(ATTACKER),
        &request("INVITE", "sip:100@192.0.2.1", None, ""),
    );
    n.recv(
        udp(ATTACKER),
        &request("ACK", "sip:100@192.0.2.1", Some("x"), ""),
    );
    // Whatever its Route or To tag: a valid Route of ours does not let a stranger in.
    let token = ProxyConfig::default()
        .secret
        .route_token("attack-BYE@example.com", "att");
    let ours = format!("Route: <sip:{PROXY};lr;tk={token}>\n");
    n.recv(
        udp(ATTACKER),
        &request("BYE", &format!("sip:x@{TARGET}"), Some("t"), &ours),
    );
    assert_eq!(n.statuses_to(ATTACKER), [403, 403]);
    assert!(n.sent_to(TARGET).is_empty());

    // Flood: past the burst, a source's new requests are dropped unanswered; another
    // source is served.
    let security = SecurityConfig {
        pike_rate: 10,
        pike_burst: 20,
        ..SecurityConfig::default()
    };
    let mut n = Net::new(security);
    for i in 0..500 {
        let r = request("INVITE", "sip:premium@192.0.2.1", None, "")
            .replace("z9hG4bK-INVITE-", &format!("z9hG4bK-{i}-"));
        n.recv(udp(ATTACKER), &r);
    }
    let answered = n.statuses_to(ATTACKER).len();
    assert!((20..=21).contains(&answered), "{answered}");
    // Once blocked, its requests are dropped before they are even parsed; others are not.
    assert!(n.proxy.is_blocked(n.now, &udp(ATTACKER)));
    assert!(!n.proxy.is_blocked(n.now, &udp("198.51.100.1:5060")));
    // Its refusals were logged aggregated: one window for the source, every one counted.
    assert_eq!(
        n.proxy.refusals.noted(crate::guard::Refusal::Request),
        answered as u64
    );
    n.recv(
        udp("198.51.100.1:5060"),
        &request("INVITE", "sip:100@192.0.2.1", None, ""),
    );
    assert_eq!(n.sent_to(TARGET).len(), 1);

    // Overload: a new INVITE gets 503 with Retry-After; a request of a call under way
    // (a CANCEL) is still served.
    let mut n = Net::open();
    let inv = request("INVITE", "sip:100@192.0.2.1", None, "");
    let msg = Message::parse(inv.replace('\n', "\r\n").into_bytes()).unwrap();
    match n.proxy.admit(n.now, &udp(ATTACKER), &msg, 10_000) {
        Admit::Reply(b) => {
            let r = Message::parse(b).unwrap();
            assert_eq!(r.status(), Some(503));
            assert!(r.as_bytes().windows(15).any(|w| w == b"Retry-After: 5\r"));
        }
        other => panic!("{other:?}"),
    }
    let cancel = Message::parse(
        request("CANCEL", "sip:100@192.0.2.1", None, "")
            .replace('\n', "\r\n")
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(
        n.proxy.admit(n.now, &udp(ATTACKER), &cancel, 10_000),
        Admit::Accept
    );
}

#[test]
fn options_to_the_proxy_is_answered_and_register_gets_405() {
    let mut n = Net::open();
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", &format!("sip:{PROXY}"), None, ""),
    );
    // A keep-alive with Max-Forwards 0 is still answered (§11).
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", &format!("sip:{PROXY}"), None, "")
            .replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    n.recv(
        udp(ATTACKER),
        &request("REGISTER", &format!("sip:{PROXY}"), None, ""),
    );
    n.run(Duration::from_secs(40));
    assert_eq!(n.statuses_to(ATTACKER), [200, 200, 405]);
    let ok = n.sent_to(ATTACKER)[0];
    let text = String::from_utf8_lossy(ok.as_bytes()).into_owned();
    assert!(
        text.contains("\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
        "{text}"
    );
    assert!(text.contains("\r\nAccept: application/sdp\r\n"), "{text}");
    let not_allowed = String::from_utf8_lossy(n.sent_to(ATTACKER)[2].as_bytes()).into_owned();
    assert!(not_allowed.contains("\r\nAllow: INVITE"), "{not_allowed}");
    assert!(n.sent_to(TARGET).is_empty());
    // OPTIONS to a user is not for the proxy: the plan decides (here: 404).
    let mut n = Net::open();
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", "sip:alice@192.0.2.1", None, ""),
    );
    assert_eq!(n.statuses_to(ATTACKER), [404]);
}

/// A caller's INVITE relayed to TARGET; returns the forwarded request.
fn call_through(n: &mut Net, call_id: &str) -> (String, Message) {
    const CALLER: &str = "198.51.100.1:5060";
    let invite = format!(
        "INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{CALLER}>\nContent-Length: 0\n\n"
    );
    n.recv(udp(CALLER), &invite);
    let fwd = n.sent_to(TARGET).last().copied().unwrap().clone();
    (invite, fwd)
}

fn cancel_of(invite: &str) -> String {
    invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace("Contact: <sip:alice@198.51.100.1:5060>\n", "")
}

fn statuses_with_method(n: &Net, to: &str) -> Vec<String> {
    n.sent_to(to)
        .iter()
        .filter_map(|m| {
            let c = m.cseq().ok()?;
            Some(format!("{} {}", m.status()?, c.method.as_str()))
        })
        .collect()
}

#[test]
fn a_200_that_crosses_the_callers_cancel_answers_the_call_without_a_487() {
    let mut n = Net::open();
    let (invite, fwd) = call_through(&mut n, "crossed");
    n.recv_bytes(
        udp(TARGET),
        fwd.response(180, "Ringing").to_tag("bob").build(),
    );
    n.recv(udp("198.51.100.1:5060"), &cancel_of(&invite));
    assert!(
        n.sent_to(TARGET)
            .iter()
            .any(|m| m.method().is_some_and(|m| m.as_str() == "CANCEL")),
        "the branch is CANCELled"
    );
    // The target's 200 was already on the wire: it answers the call.
    n.recv_bytes(udp(TARGET), fwd.response(200, "OK").to_tag("bob").build());
    n.run(Duration::from_secs(40));
    assert_eq!(
        statuses_with_method(&n, "198.51.100.1:5060"),
        ["100 INVITE", "180 INVITE", "200 CANCEL", "200 INVITE"],
        "no 487 before (or after) the 200"
    );
}

#[test]
fn a_cancelled_call_ends_with_the_targets_487_or_ours_after_a_bounded_wait() {
    // The target answers the CANCEL with 487: the caller gets one 487, after the CANCEL.
    let mut n = Net::open();
    let (invite, fwd) = call_through(&mut n, "c487");
    n.recv_bytes(
        udp(TARGET),
        fwd.response(180, "Ringing").to_tag("bob").build(),
    );
    n.recv(udp("198.51.100.1:5060"), &cancel_of(&invite));
    assert!(!statuses_with_method(&n, "198.51.100.1:5060").contains(&"487 INVITE".to_owned()));
    n.recv_bytes(
        udp(TARGET),
        fwd.response(487, "Request Terminated")
            .to_tag("bob")
            .build(),
    );
    let got = statuses_with_method(&n, "198.51.100.1:5060");
    assert_eq!(
        got,
        ["100 INVITE", "180 INVITE", "200 CANCEL", "487 INVITE"]
    );
    // A target that never sent a provisional cannot be CANCELled: our 487 comes after
    // CANCEL_WAIT.
    let mut n = Net::open();
    let (invite, _) = call_through(&mut n, "silent");
    n.recv(udp("198.51.100.1:5060"), &cancel_of(&invite));
    n.run(crate::engine::CANCEL_WAIT - Duration::from_millis(10));
    assert!(!statuses_with_method(&n, "198.51.100.1:5060").contains(&"487 INVITE".to_owned()));
    n.run(Duration::from_millis(20));
    assert!(statuses_with_method(&n, "198.51.100.1:5060").contains(&"487 INVITE".to_owned()));
}

#[test]
fn mixed_transports_get_a_double_record_route_and_both_entries_are_popped() {
    let caller = Peer {
        transport: Transport::Tcp,
        addr: addr("198.51.100.1:40000"),
    };
    let mut n = Net::open();
    let invite = "INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/TCP 198.51.100.1:40000;branch=z9hG4bK-tcp1\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: mixed@example.com\nCSeq: 1 INVITE\nContact: <sip:alice@198.51.100.1:40000;transport=tcp>\nContent-Length: 0\n\n";
    n.recv(caller, invite);
    let fwd = n.sent_to(TARGET)[0].clone();
    let rrs: Vec<String> = fwd
        .record_routes()
        .map(|r| r.unwrap().uri_str.to_owned())
        .collect();
    assert_eq!(rrs.len(), 2, "{rrs:?}");
    // The callee's route set starts with the entry facing it (UDP), the caller's (reversed)
    // with the one facing the caller (TCP).
    assert!(
        rrs[0].starts_with(&format!("sip:{PROXY};lr;tk=")),
        "{rrs:?}"
    );
    assert!(
        rrs[1].starts_with(&format!("sip:{PROXY};transport=tcp;lr;tk=")),
        "{rrs:?}"
    );
    // The callee's BYE carries both; both are ours and both are removed.
    let bye = format!(
        "BYE sip:alice@198.51.100.1:40000;transport=tcp SIP/2.0\nVia: SIP/2.0/UDP {TARGET};branch=z9hG4bK-bye\nMax-Forwards: 70\nRoute: <{}>, <{}>\nFrom: <sip:100@example.com>;tag=bob\nTo: <sip:alice@example.com>;tag=alice\nCall-ID: mixed@example.com\nCSeq: 1 BYE\nContent-Length: 0\n\n",
        rrs[0], rrs[1]
    );
    n.recv(udp(TARGET), &bye);
    let out: Vec<&Message> = n
        .sent
        .iter()
        .filter(|(p, m)| p.addr == caller.addr && m.method().is_some())
        .map(|(_, m)| m)
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].routes().count(), 0);
    let to_caller = n
        .sent
        .iter()
        .find(|(_, m)| m.method().is_some_and(|m| m.as_str() == "BYE"))
        .unwrap();
    assert_eq!(
        to_caller.0.transport,
        Transport::Tcp,
        "the caller is reached over TCP"
    );
    // Same transports both ways: one entry.
    let mut n = Net::open();
    let _ = call_through(&mut n, "same");
    assert_eq!(n.sent_to(TARGET)[0].record_routes().count(), 1);
}

const SECOND: &str = "192.0.2.11:5060";

/// Every call: TARGET first, SECOND when it fails.
fn two_targets(_: &Message, _: &Peer) -> RouteDecision {
    RouteDecision::Targets {
        plan: TargetPlan::serial(vec![
            Target::parse(&format!("sip:a@{TARGET}")).unwrap(),
            Target::parse(&format!("sip:b@{SECOND}")).unwrap(),
        ]),
        policy: FailoverPolicy::default(),
        rule: Arc::from("two"),
    }
}

/// TARGET stays silent past its no-response timer, SECOND answers, then TARGET's 200
/// arrives late. Returns the net and the late 200.
fn late_answer(late: LateAnswer) -> (Net, bytes::Bytes) {
    let mut n = Net::with(
        ProxyConfig {
            late_answer: late,
            ..ProxyConfig::default()
        },
        two_targets,
    );
    let (_, first) = call_through(&mut n, "late-answer");
    n.run(Duration::from_secs(11));
    let second = n.sent_to(SECOND)[0].clone();
    n.recv_bytes(
        udp(SECOND),
        second
            .response(200, "OK")
            .to_tag("second")
            .header("Contact", &format!("<sip:b@{SECOND}>"))
            .build(),
    );
    let late_ok = first
        .response(200, "OK")
        .to_tag("first")
        .header("Contact", &format!("<sip:a@{TARGET}>"))
        .build();
    n.recv_bytes(udp(TARGET), late_ok.clone());
    (n, late_ok)
}

#[test]
fn a_late_answer_is_relayed_by_default_or_hung_up_by_the_proxy() {
    let (n, _) = late_answer(LateAnswer::Relay);
    let oks = statuses_with_method(&n, "198.51.100.1:5060")
        .into_iter()
        .filter(|s| s == "200 INVITE")
        .count();
    assert_eq!(oks, 2, "both answers reach the caller (RFC 3261 §16.7)");

    let (mut n, late_ok) = late_answer(LateAnswer::Hangup);
    let oks = statuses_with_method(&n, "198.51.100.1:5060")
        .into_iter()
        .filter(|s| s == "200 INVITE")
        .count();
    assert_eq!(oks, 1, "only the answer that won reaches the caller");
    let to_first: Vec<String> = n
        .sent_to(TARGET)
        .iter()
        .filter_map(|m| m.method().map(|x| x.as_str().to_owned()))
        .collect();
    assert!(
        to_first.ends_with(&["ACK".to_owned(), "BYE".to_owned()]),
        "{to_first:?}"
    );
    let bye = n
        .sent_to(TARGET)
        .into_iter()
        .find(|m| m.method().is_some_and(|x| x.as_str() == "BYE"))
        .unwrap()
        .clone();
    assert_eq!(
        bye.request_uri_str(),
        Some(format!("sip:a@{TARGET}").as_str())
    );
    assert_eq!(bye.to_tag(), Some("first"));
    assert_eq!(bye.from_tag(), Some("alice"));
    // Its retransmission is ACKed again, with no second BYE.
    n.recv_bytes(udp(TARGET), late_ok);
    let byes = n
        .sent_to(TARGET)
        .iter()
        .filter(|m| m.method().is_some_and(|x| x.as_str() == "BYE"))
        .count();
    assert_eq!(byes, 1);
    let acks = n
        .sent_to(TARGET)
        .iter()
        .filter(|m| m.method().is_some_and(|x| x.as_str() == "ACK"))
        .count();
    assert_eq!(acks, 2);
}

#[test]
fn the_ack_for_a_stateless_refusal_is_absorbed_quietly() {
    let mut n = Net::open();
    let inv = request("INVITE", "sip:premium@192.0.2.1", None, "");
    n.recv(udp(ATTACKER), &inv);
    let refusal = n.sent_to(ATTACKER)[0].clone();
    let inv_msg = Message::parse(inv.replace('\n', "\r\n").into_bytes()).unwrap();
    let ack = inv_msg.ack_for(&refusal).unwrap();
    n.recv_bytes(udp(ATTACKER), ack);
    assert_eq!(
        n.proxy.refusals.noted(crate::guard::Refusal::Ack),
        0,
        "not counted as a stray ACK"
    );
    assert_eq!(n.proxy.refusals.noted(crate::guard::Refusal::Request), 1);
    n.nothing_to_victim();
}

#[test]
fn udp_mtu_tries_tcp_for_a_large_request_and_falls_back_to_udp() {
    let big_invite = |n: &mut Net| {
        let pad = format!("X-Pad: {}\n", "x".repeat(1400));
        let inv = request("INVITE", "sip:100@192.0.2.1", None, &pad);
        n.recv(udp("198.51.100.1:5060"), &inv);
    };
    // Off by default: a large request stays on UDP.
    let mut n = Net::open();
    big_invite(&mut n);
    let (peer, fwd) = n.sent.iter().find(|(p, _)| p.addr == addr(TARGET)).unwrap();
    assert_eq!(
        (peer.transport, fwd.top_via().unwrap().transport),
        (Transport::Udp, "UDP")
    );
    // With udp_mtu: TCP first; when TCP cannot connect, UDP, and the target is not failed.
    let mut n = Net::with(
        ProxyConfig {
            udp_mtu: 1300,
            ..ProxyConfig::default()
        },
        plan,
    );
    big_invite(&mut n);
    let i = n
        .sent
        .iter()
        .position(|(p, _)| p.addr == addr(TARGET))
        .unwrap();
    assert_eq!(n.sent[i].0.transport, Transport::Tcp);
    assert_eq!(n.sent[i].1.top_via().unwrap().transport, "TCP");
    let client = n.refs[i].unwrap();
    n.txn
        .handle_transport_error(client, rollover_txn::TransportError::Refused);
    n.pump();
    let (peer, fwd) = n.sent[i + 1..]
        .iter()
        .find(|(p, _)| p.addr == addr(TARGET))
        .unwrap();
    assert_eq!(
        (peer.transport, fwd.top_via().unwrap().transport),
        (Transport::Udp, "UDP")
    );
    assert!(
        !n.statuses_to("198.51.100.1:5060").iter().any(|s| *s >= 300),
        "the call was not failed"
    );
}

/// Knows IP literals; any name must be looked up (the question goes to the owner).
struct SlowNames;

impl Resolver for SlowNames {
    fn resolve(&self, host: &str, port: u16, t: Transport) -> Option<SocketAddr> {
        LiteralResolver.resolve(host, port, t)
    }

    fn lookup(&self, host: &str, port: u16, t: Transport) -> Resolved {
        match self.resolve(host, port, t) {
            Some(a) => Resolved::Addrs(vec![a]),
            None => Resolved::Ask,
        }
    }
}

/// `sip:100@…` goes to a target by name, anything else to TARGET.
fn by_name(req: &Message, _: &Peer) -> RouteDecision {
    let slow = req
        .request_uri_str()
        .is_some_and(|u| u.starts_with("sip:100@"));
    let target = if slow {
        "sip:a@carrier.example.net".to_owned()
    } else {
        format!("sip:b@{TARGET}")
    };
    RouteDecision::Targets {
        plan: TargetPlan::serial(vec![Target::parse(&target).unwrap()]),
        policy: FailoverPolicy::default(),
        rule: Arc::from("by-name"),
    }
}

#[test]
fn a_name_resolving_slowly_delays_only_its_own_call_and_every_address_is_tried() {
    let mut n = Net::with_resolver(ProxyConfig::default(), by_name, Box::new(SlowNames));
    let invite = |call_id: &str| {
        format!("INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{call_id}\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
    };
    n.recv(udp("198.51.100.1:5060"), &invite("slow-call"));
    let q = n.proxy.poll_question();
    let Some(Question::Resolve { id, host, port, .. }) = q else {
        panic!("{q:?}");
    };
    assert_eq!((host.as_str(), port), ("carrier.example.net", 5060));
    assert!(
        n.sent_to("192.0.2.40:5060").is_empty(),
        "nothing sent before the answer"
    );
    // Another call goes on meanwhile.
    let other = "INVITE sip:200@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bK-other\nMax-Forwards: 70\nFrom: <sip:bob@example.com>;tag=bob\nTo: <sip:200@example.com>\nCall-ID: other\nCSeq: 1 INVITE\nContent-Length: 0\n\n";
    n.recv(udp("198.51.100.2:5060"), other);
    assert_eq!(n.sent_to(TARGET).len(), 1, "the other call did not wait");
    // The answer comes 2 s later: two addresses.
    n.run(Duration::from_secs(2));
    let addrs = vec![addr("192.0.2.40:5060"), addr("192.0.2.41:5060")];
    let now = n.now;
    n.proxy.answer_resolve(now, id, addrs, &mut n.txn);
    n.pump();
    let i = n
        .sent
        .iter()
        .position(|(p, _)| p.addr == addr("192.0.2.40:5060"))
        .expect("sent to the first address");
    assert_eq!(
        n.sent[i].1.request_uri_str(),
        Some("sip:a@carrier.example.net")
    );
    // Its transport fails: the next address, not the next target.
    let client = n.refs[i].unwrap();
    n.txn
        .handle_transport_error(client, rollover_txn::TransportError::Refused);
    n.pump();
    assert_eq!(n.sent_to("192.0.2.41:5060").len(), 1);
    assert!(
        !n.statuses_to("198.51.100.1:5060").iter().any(|s| *s >= 300),
        "the call was not failed"
    );
    // A name with no address fails its target at once.
    n.recv(udp("198.51.100.1:5060"), &invite("nx-call"));
    let Some(Question::Resolve { id, .. }) = n.proxy.poll_question() else {
        panic!("no question");
    };
    let now = n.now;
    n.proxy.answer_resolve(now, id, vec![], &mut n.txn);
    n.pump();
    assert!(n.proxy.poll_question().is_none());
    let nx: Vec<u16> = n
        .sent
        .iter()
        .filter(|(_, m)| m.call_id().ok() == Some("nx-call"))
        .filter_map(|(_, m)| m.status())
        .filter(|s| *s >= 300)
        .collect();
    assert_eq!(
        nx,
        [500],
        "unresolvable: the caller gets the failure at once"
    );
}

#[test]
fn the_stats_count_what_the_proxy_did() {
    let security = SecurityConfig {
        pike_rate: 10,
        pike_burst: 5,
        ..SecurityConfig::default()
    };
    let mut n = Net::new(security);
    let _ = call_through(&mut n, "stats-1");
    for i in 0..10 {
        let r = request("INVITE", "sip:premium@192.0.2.1", None, "")
            .replace("z9hG4bK-INVITE-", &format!("z9hG4bK-s{i}-"));
        n.recv(udp(ATTACKER), &r);
    }
    let s = n.proxy.stats();
    assert_eq!((s.routed, s.branches), (1, 1));
    assert_eq!(s.refusals.get(&404), Some(&5), "the burst: {s}");
    assert_eq!(s.front_door.get("flood"), Some(&5), "{s}");
    assert!(s.to_string().contains("refusals={404=5}"), "{s}");
}
