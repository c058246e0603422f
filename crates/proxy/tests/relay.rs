#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The proxy as an attacker tries it: every way of getting a request relayed somewhere the
//! dial plan never named, of making the proxy amplify, and of using it as a reflector; and
//! the legitimate dialogs that must keep working beside those refusals.

use std::time::Duration;

use rollover_sip::Message;
use rollover_txn::Admit;

mod common;
use common::*;
use rollover_proxy::*;

#[test]
fn a_route_to_the_victim_is_removed_and_the_plan_decides() {
    let mut n = open();
    n.recv(
        udp(ATTACKER),
        &request(
            "INVITE",
            "sip:100@192.0.2.1",
            None,
            &format!("Route: <sip:{VICTIM};lr>\n"),
        ),
    );
    nothing_to_victim(&n);
    let to_target = n.sent_to(TARGET);
    assert_eq!(to_target.len(), 1, "the plan routed it");
    assert_eq!(
        to_target[0].routes().count(),
        0,
        "the foreign Route is gone"
    );
    // The same with a number the plan does not route: 404, and still nothing relayed.
    let mut n = open();
    let r = request(
        "INVITE",
        &format!("sip:premium@{VICTIM}"),
        None,
        &format!("Route: <sip:{VICTIM};lr;transport=tcp>\n"),
    );
    n.recv(udp(ATTACKER), &r);
    nothing_to_victim(&n);
    assert_eq!(n.statuses_to(ATTACKER), [404]);
}

#[test]
fn our_address_on_top_without_our_token_is_not_ours() {
    let mut n = open();
    let route = format!("Route: <sip:{PROXY};lr>, <sip:{VICTIM};lr>\n");
    n.recv(
        udp(ATTACKER),
        &request("INVITE", &format!("sip:x@{VICTIM}"), None, &route),
    );
    nothing_to_victim(&n);
    // A token from another installation (or a guess) does not pass either.
    let route = format!("Route: <sip:{PROXY};lr;tk=0123456789abcdef>, <sip:{VICTIM};lr>\n");
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", &format!("sip:x@{VICTIM}"), Some("t"), &route),
    );
    nothing_to_victim(&n);
}

#[test]
fn the_strict_route_trick_goes_nowhere() {
    let mut n = open();
    let route = format!("Route: <sip:198.51.100.9;lr>, <sip:x@{VICTIM}>\n");
    n.recv(
        udp(ATTACKER),
        &request("INVITE", &format!("sip:{PROXY};lr"), None, &route),
    );
    n.recv(
        udp(ATTACKER),
        &request("BYE", &format!("sip:{PROXY};lr"), Some("t1"), &route),
    );
    nothing_to_victim(&n);
    assert!(n.sent_to("198.51.100.9:5060").is_empty());
}

#[test]
fn in_dialog_requests_without_our_route_get_404_statelessly() {
    for method in ["INVITE", "BYE", "OPTIONS", "MESSAGE", "REFER"] {
        let mut n = open();
        n.recv(
            udp(ATTACKER),
            &request(method, &format!("sip:x@{VICTIM}"), Some("t1"), ""),
        );
        let maddr = format!("sip:x@198.51.100.200;maddr={}", addr(VICTIM).ip());
        n.recv(udp(ATTACKER), &request(method, &maddr, Some("t2"), ""));
        nothing_to_victim(&n);
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
        let mut n = open();
        let route = format!("Route: <sip:{VICTIM};lr>\n");
        n.recv(
            udp(ATTACKER),
            &request(method, &format!("sip:x@{VICTIM}"), None, &route),
        );
        nothing_to_victim(&n);
        assert_eq!(n.statuses_to(ATTACKER), [404], "{method}");
    }
}

#[test]
fn an_ack_without_a_transaction_or_our_route_is_dropped() {
    let mut n = open();
    n.recv(
        udp(ATTACKER),
        &request("ACK", &format!("sip:x@{VICTIM}"), Some("t1"), ""),
    );
    let route = format!("Route: <sip:{PROXY};lr>, <sip:{VICTIM};lr;transport=tcp>\n");
    n.recv(
        udp(ATTACKER),
        &request("ACK", &format!("sip:x@{VICTIM}"), Some("t1"), &route),
    );
    nothing_to_victim(&n);
    assert!(n.sent.is_empty(), "an ACK is never answered: {:?}", n.sent);
}

#[test]
fn a_stray_2xx_with_a_forged_branch_is_not_reflected() {
    let mut n = open();
    // Our address and prefix, which anyone can write: not a branch we signed.
    let text = format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP {PROXY};branch=z9hG4bKrl12345678.1abcdef.0011223344556677\nVia: SIP/2.0/UDP {VICTIM};branch=z9hG4bK-v\nFrom: <sip:a@example.com>;tag=a\nTo: <sip:b@example.com>;tag=b\nCall-ID: stray@example.com\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
    );
    n.recv(udp(ATTACKER), &text);
    nothing_to_victim(&n);
    assert!(n.sent.is_empty());
}

#[test]
fn an_unrouted_invite_gets_exactly_one_datagram_back() {
    let mut n = open();
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
    let mut n = open();
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
    let mut n = open();
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
    nothing_to_victim(&n);
}

#[test]
fn a_stray_2xx_for_our_branch_is_relayed_only_to_where_the_invite_came_from() {
    const CALLER: &str = "198.51.100.1:5060";
    let mut n = open();
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
    nothing_to_victim(&n);
}

#[test]
fn a_trusted_upstream_may_preload_a_route() {
    let security = SecurityConfig {
        trusted: vec!["198.51.100.0/24".parse().unwrap()],
        ..SecurityConfig::default()
    };
    let mut n = net(security);
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
    let mut n = net(security);
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
    let mut n = net(security);
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
    assert_eq!(n.proxy.refusals_noted(Refusal::Request), answered as u64);
    n.recv(
        udp("198.51.100.1:5060"),
        &request("INVITE", "sip:100@192.0.2.1", None, ""),
    );
    assert_eq!(n.sent_to(TARGET).len(), 1);

    // Overload: a new INVITE gets 503 with Retry-After; a request of a call under way
    // (a CANCEL) is still served.
    let mut n = open();
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
    let mut n = open();
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
    let mut n = open();
    n.recv(
        udp(ATTACKER),
        &request("OPTIONS", "sip:alice@192.0.2.1", None, ""),
    );
    assert_eq!(n.statuses_to(ATTACKER), [404]);
}

#[test]
fn the_ack_for_a_stateless_refusal_is_absorbed_quietly() {
    let mut n = open();
    let inv = request("INVITE", "sip:premium@192.0.2.1", None, "");
    n.recv(udp(ATTACKER), &inv);
    let refusal = n.sent_to(ATTACKER)[0].clone();
    let inv_msg = Message::parse(inv.replace('\n', "\r\n").into_bytes()).unwrap();
    let ack = inv_msg.ack_for(&refusal).unwrap();
    n.recv_bytes(udp(ATTACKER), ack);
    assert_eq!(
        n.proxy.refusals_noted(Refusal::Ack),
        0,
        "not counted as a stray ACK"
    );
    assert_eq!(n.proxy.refusals_noted(Refusal::Request), 1);
    nothing_to_victim(&n);
}
