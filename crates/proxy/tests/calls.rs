#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! Calls through the proxy core on the virtual network: CANCEL crossing a 200, late answers,
//! mixed transports, `udp_mtu`, names resolved later, the counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rollover_sip::{Message, StatusCode};
use rollover_txn::{Peer, Transport};

mod common;
use common::*;
use rollover_proxy::*;

const CALLER: &str = "198.51.100.1:5060";

/// A caller's INVITE relayed to TARGET; returns the forwarded request.
fn call_through<P: RoutePolicy>(n: &mut Net<P>, call_id: &str) -> (String, Message) {
    let invite = invite_from_caller(call_id);
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

fn statuses_with_method<P: RoutePolicy>(n: &Net<P>, to: &str) -> Vec<String> {
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
    let mut n = open();
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
    let mut n = open();
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
    let mut n = open();
    let (invite, _) = call_through(&mut n, "silent");
    n.recv(udp("198.51.100.1:5060"), &cancel_of(&invite));
    n.run(rollover_proxy::engine::CANCEL_WAIT - Duration::from_millis(10));
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
    let mut n = open();
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
    let mut n = open();
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
fn late_answer(late: LateAnswer) -> (Net<Plan>, bytes::Bytes) {
    let mut n = net_with(
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
fn udp_mtu_tries_tcp_for_a_large_request_and_falls_back_to_udp() {
    let big_invite = |n: &mut Net<Plan>| {
        let pad = format!("X-Pad: {}\n", "x".repeat(1400));
        let inv = request("INVITE", "sip:100@192.0.2.1", None, &pad);
        n.recv(udp("198.51.100.1:5060"), &inv);
    };
    // Off by default: a large request stays on UDP.
    let mut n = open();
    big_invite(&mut n);
    let (peer, fwd) = n.sent.iter().find(|(p, _)| p.addr == addr(TARGET)).unwrap();
    assert_eq!(
        (peer.transport, fwd.top_via().unwrap().transport),
        (Transport::Udp, "UDP")
    );
    // With udp_mtu: TCP first; when TCP cannot connect, UDP, and the target is not failed.
    let mut n = net_with(
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
    let mut n = net_with_resolver(ProxyConfig::default(), by_name, Box::new(SlowNames));
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
    let mut n = net(security);
    let _ = call_through(&mut n, "stats-1");
    for i in 0..10 {
        let r = request("INVITE", "sip:premium@192.0.2.1", None, "")
            .replace("z9hG4bK-INVITE-", &format!("z9hG4bK-s{i}-"));
        n.recv(udp(ATTACKER), &r);
    }
    let s = n.proxy.stats();
    assert_eq!((s.routed, s.branches), (1, 1));
    assert_eq!(
        s.refusals.get(&StatusCode::NOT_FOUND),
        Some(&5),
        "the burst: {s}"
    );
    assert_eq!(s.front_door.get("flood"), Some(&5), "{s}");
    assert!(s.to_string().contains("refusals={404=5}"), "{s}");
}

/// A routing policy that uses every hook: the plan's targets, a failure route that answers
/// later, a reply route that marks every reply, a branch route that marks one branch.
struct Hooks {
    failure: Failure,
}

impl RoutePolicy for Hooks {
    fn on_request(&mut self, req: &Message, source: &Peer) -> RouteDecision {
        // Two targets in parallel, so a branch route can tell them apart.
        match plan(req, source) {
            RouteDecision::Targets { policy, rule, .. } => RouteDecision::Targets {
                plan: TargetPlan::parallel(vec![
                    Target::parse(&format!("sip:a@{TARGET}")).unwrap(),
                    Target::parse(&format!("sip:b@{SECOND}")).unwrap(),
                ]),
                policy,
                rule,
            },
            other => other,
        }
    }

    fn on_branch(&mut self, _: CallView<'_>, target: &Target, edits: &mut Edits) {
        if target.uri.starts_with("sip:b@") {
            edits.append_header("X-Branch", "b only");
        }
    }

    fn on_reply(&mut self, _: CallView<'_>, _: &Target, reply: &Message, edits: &mut Edits) {
        edits.append_header("X-Reply-Route", &reply.status().unwrap_or(0).to_string());
    }

    fn on_failure(&mut self, _: CallView<'_>, _: Failed<'_>) -> Failure {
        std::mem::replace(&mut self.failure, Failure::Reply)
    }
}

fn hooks(failure: Failure) -> Net<Hooks> {
    Net::with_policy(
        ProxyConfig::default(),
        Hooks { failure },
        Box::new(LiteralResolver),
    )
}

fn header_of(m: &Message, name: &str) -> Option<String> {
    m.headers_by_name(name)
        .next()
        .map(|h| m.value_unfolded(h).into_owned())
}

#[test]
fn a_branch_route_edits_only_its_branch() {
    let mut n = hooks(Failure::Reply);
    let (_, to_a) = call_through(&mut n, "branch-route");
    let to_b = n.sent_to(SECOND)[0].clone();
    assert_eq!(header_of(&to_a, "X-Branch"), None, "branch a untouched");
    assert_eq!(header_of(&to_b, "X-Branch").as_deref(), Some("b only"));
}

#[test]
fn a_reply_route_edits_the_reply_that_reaches_the_caller() {
    let mut n = hooks(Failure::Reply);
    let (_, to_a) = call_through(&mut n, "reply-route");
    let to_b = n.sent_to(SECOND)[0].clone();
    n.recv_bytes(
        udp(TARGET),
        to_a.response(180, "Ringing").to_tag("a").build(),
    );
    n.recv_bytes(
        udp(TARGET),
        to_a.response(486, "Busy Here").to_tag("a").build(),
    );
    n.recv_bytes(
        udp(SECOND),
        to_b.response(404, "Not Found").to_tag("b").build(),
    );
    let to_caller: Vec<&Message> = n
        .sent_to("198.51.100.1:5060")
        .into_iter()
        .filter(|m| m.status().is_some_and(|s| s > 100))
        .collect();
    let marks: Vec<(u16, Option<String>)> = to_caller
        .iter()
        .map(|m| (m.status().unwrap(), header_of(m, "X-Reply-Route")))
        .collect();
    // The relayed 180 and the best final (404, the lower of two 4xx) carry the mark.
    assert_eq!(
        marks,
        [(180, Some("180".into())), (404, Some("404".into()))]
    );
}

#[test]
fn a_failure_route_answered_later_starts_a_new_branch_in_the_same_call() {
    let mut n = hooks(Failure::Later);
    let (_, to_a) = call_through(&mut n, "failure-route");
    let to_b = n.sent_to(SECOND)[0].clone();
    n.recv_bytes(
        udp(TARGET),
        to_a.response(486, "Busy Here").to_tag("a").build(),
    );
    n.recv_bytes(
        udp(SECOND),
        to_b.response(480, "Unavailable").to_tag("b").build(),
    );
    // Every target failed: the question is asked, the caller hears nothing final yet.
    let q = n.proxy.poll_question();
    let Some(Question::Failure { id, best, .. }) = q else {
        panic!("{q:?}");
    };
    assert_eq!(best, 480);
    let finals = |n: &Net<Hooks>| {
        n.statuses_to("198.51.100.1:5060")
            .into_iter()
            .filter(|s| *s >= 200)
            .collect::<Vec<_>>()
    };
    assert!(finals(&n).is_empty());
    // Another call goes on meanwhile; the answer comes 2 s later: voicemail.
    n.run(Duration::from_secs(2));
    const VOICEMAIL: &str = "192.0.2.30:5060";
    let plan = TargetPlan::serial(vec![Target::parse(&format!("sip:vm@{VOICEMAIL}")).unwrap()]);
    let now = n.now;
    n.proxy
        .answer_failure(now, id, Failure::Retry(plan, None), &mut n.txn);
    n.pump();
    let to_vm = n.sent_to(VOICEMAIL)[0].clone();
    assert_eq!(to_vm.call_id().unwrap(), "failure-route", "the same call");
    n.recv_bytes(
        udp(VOICEMAIL),
        to_vm.response(200, "OK").to_tag("vm").build(),
    );
    assert_eq!(finals(&n), [200], "the failed replies were never sent");
    assert!(n.proxy.stats().to_string().contains("answered=1"));
}

/// A request route that answers later for Call-IDs starting with "later" (a store look-up),
/// and at once for the rest.
struct LaterRoute;

impl RoutePolicy for LaterRoute {
    fn on_request(&mut self, req: &Message, source: &Peer) -> RouteDecision {
        if req.call_id().is_ok_and(|c| c.starts_with("later")) {
            RouteDecision::Later
        } else {
            plan(req, source)
        }
    }
}

fn later_route() -> Net<LaterRoute> {
    Net::with_policy(
        ProxyConfig::default(),
        LaterRoute,
        Box::new(LiteralResolver),
    )
}

/// The caller's INVITE for `call_id` (lines ending in `\n`).
fn invite_from_caller(call_id: &str) -> String {
    format!(
        "INVITE sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:100@example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{CALLER}>\nContent-Length: 0\n\n"
    )
}

fn route_question<P: RoutePolicy>(n: &mut Net<P>) -> (u64, Message) {
    match n.proxy.poll_question() {
        Some(Question::Route { id, request, .. }) => (id, *request),
        q => panic!("expected a routing question, got {q:?}"),
    }
}

#[test]
fn a_request_route_answered_later_suspends_only_that_call() {
    let mut n = later_route();
    n.recv(udp(CALLER), &invite_from_caller("later-1"));
    let (id, asked) = route_question(&mut n);
    assert_eq!(asked.call_id().unwrap(), "later-1");
    assert_eq!(
        n.statuses_to(CALLER),
        [100],
        "100 Trying while the answer is pending"
    );
    assert!(n.sent_to(TARGET).is_empty());
    // Another call is routed at once meanwhile.
    n.recv(udp(CALLER), &invite_from_caller("now-1"));
    assert_eq!(n.sent_to(TARGET).len(), 1);
    // A retransmission of the waiting INVITE is absorbed, not asked about again.
    n.recv(udp(CALLER), &invite_from_caller("later-1"));
    assert!(n.proxy.poll_question().is_none());
    // The answer comes 2 s later.
    n.run(Duration::from_secs(2));
    let now = n.now;
    let decision = plan(&asked, &udp(CALLER));
    n.proxy.answer_route(now, id, decision, &mut n.txn);
    n.pump();
    let mut sent: Vec<&str> = n
        .sent_to(TARGET)
        .iter()
        .map(|m| m.call_id().unwrap())
        .collect();
    sent.dedup(); // Timer A's retransmissions of the first
    assert_eq!(sent, ["now-1", "later-1"]);
    let fwd = n.sent_to(TARGET).last().copied().unwrap().clone();
    n.recv_bytes(udp(TARGET), fwd.response(200, "OK").to_tag("t").build());
    assert!(n.statuses_to(CALLER).contains(&200));
}

#[test]
fn a_request_route_answered_later_can_reject_through_the_transaction() {
    let mut n = later_route();
    n.recv(udp(CALLER), &invite_from_caller("later-2"));
    let (id, _) = route_question(&mut n);
    let now = n.now;
    let busy = RouteDecision::Reject {
        status: StatusCode::BUSY_HERE,
        reason: "Busy Here".into(),
        rule: "store".into(),
    };
    n.proxy.answer_route(now, id, busy, &mut n.txn);
    n.pump();
    assert_eq!(n.statuses_to(CALLER), [100, 486]);
    // The transaction absorbs a retransmission and repeats the final; nothing is re-asked.
    n.recv(udp(CALLER), &invite_from_caller("later-2"));
    assert!(n.proxy.poll_question().is_none());
    assert_eq!(n.statuses_to(CALLER), [100, 486, 486]);
}

#[test]
fn a_cancel_while_the_route_is_pending_ends_the_wait() {
    let mut n = later_route();
    let invite = invite_from_caller("later-3");
    n.recv(udp(CALLER), &invite);
    let (id, asked) = route_question(&mut n);
    n.recv(udp(CALLER), &cancel_of(&invite));
    let got = statuses_with_method(&n, CALLER);
    assert_eq!(got, ["100 INVITE", "200 CANCEL", "487 INVITE"]);
    // The late answer routes nothing.
    let now = n.now;
    let decision = plan(&asked, &udp(CALLER));
    n.proxy.answer_route(now, id, decision, &mut n.txn);
    n.pump();
    assert!(n.sent_to(TARGET).is_empty());
}

#[test]
fn an_unanswered_route_question_is_answered_500_after_the_timeout() {
    let mut n = later_route();
    n.recv(udp(CALLER), &invite_from_caller("later-4"));
    let _ = route_question(&mut n);
    n.run(ROUTE_ANSWER_TIMEOUT - Duration::from_secs(1));
    assert_eq!(n.statuses_to(CALLER), [100]);
    n.run(Duration::from_millis(1100));
    // The 500 goes through the INVITE's transaction: Timer G repeats it until the ACK.
    assert_eq!(n.statuses_to(CALLER)[..2], [100, 500]);
}
