//! Outgoing calls in virtual time against scripted targets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rollover_failover::{FailoverPolicy, LiteralResolver, Target, TargetPlan, Why};
use rollover_sip::{HeaderName, Message, Method, StatusCode};
use rollover_testkit::{Targets, World};
use rollover_txn::{Config, Event, TxnLayer, TxnRef};

use crate::*;

struct Run {
    events: Vec<(f64, CallEvent)>,
    invites: Vec<(f64, Message)>,
    outcome: Option<CallOutcome>,
    leftover: usize,
}

impl Run {
    fn tried(&self) -> Vec<String> {
        self.invites
            .iter()
            .map(|(_, m)| m.request_uri_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn targets(list: &[&str]) -> TargetPlan {
    TargetPlan::serial(list.iter().map(|t| Target::parse(t).unwrap()).collect())
}

fn options(plan: TargetPlan) -> CallOptions {
    let local: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    CallOptions::new(
        "\"Alice\" <sip:alice@example.com>",
        local,
        plan,
        "ua-call-1@example.com",
        "ftag1",
    )
}

/// Runs a call; `decisions` are (when, decision) for `process_redirect`, and `cancel_at`
/// cancels the call.
fn run(
    opts: CallOptions,
    redirects: Redirects,
    world: &str,
    decisions: Vec<(u64, RedirectDecision)>,
    cancel_at: Option<u64>,
) -> Run {
    #[allow(clippy::disallowed_methods)] // an arbitrary origin; later times are virtual
    let start = Instant::now();
    let world = World::parse(world).unwrap();
    let mut scripted = Targets::new(&world);
    let mut txn = TxnLayer::new(Config::default());
    let mut now = start;
    let mut call = OutgoingCall::start(now, opts, redirects, Box::new(LiteralResolver), &mut txn);
    let mut decisions: Vec<(Instant, RedirectDecision)> = decisions
        .into_iter()
        .map(|(s, d)| (start + Duration::from_secs(s), d))
        .collect();
    let mut cancel_at = cancel_at.map(|s| start + Duration::from_secs(s));
    let mut out = Run {
        events: vec![],
        invites: vec![],
        outcome: None,
        leftover: 0,
    };
    let at = |now: Instant| (now - start).as_secs_f64();
    for _ in 0..10_000 {
        loop {
            let mut busy = false;
            while let Some(ev) = txn.poll_event() {
                busy = true;
                match ev {
                    Event::Response { txn: c, response } => {
                        call.handle_response(now, c, response, &mut txn)
                    }
                    Event::Timeout(TxnRef::Client(c)) => call.handle_failure(
                        now,
                        c,
                        Why::TransactionTimeout,
                        StatusCode::REQUEST_TIMEOUT,
                        &mut txn,
                    ),
                    Event::TransportError(TxnRef::Client(c), e) => call.handle_failure(
                        now,
                        c,
                        Why::Transport(e),
                        StatusCode::SERVICE_UNAVAILABLE,
                        &mut txn,
                    ),
                    _ => {}
                }
            }
            while let Some(t) = txn.poll_transmit() {
                busy = true;
                let msg = Message::parse(t.bytes.clone()).unwrap();
                let retrans = out
                    .invites
                    .iter()
                    .any(|(_, m)| m.as_bytes() == msg.as_bytes());
                if msg.method() == Some(&Method::Invite) && !retrans {
                    out.invites.push((at(now), msg.clone()));
                }
                scripted.on_request(now, &t, &msg, &mut txn);
            }
            while let Some(e) = call.poll_event() {
                busy = true;
                if let CallEvent::Ended(o) = &e {
                    out.outcome = Some(o.clone());
                }
                out.events.push((at(now), e));
            }
            if !busy {
                break;
            }
        }
        let next_decision = decisions.first().map(|(t, _)| *t);
        let next = [
            next_decision,
            cancel_at,
            scripted.next_due(),
            txn.poll_timeout(),
            call.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next - start > Duration::from_secs(600) {
            break;
        }
        now = next.max(now);
        if next_decision == Some(next) {
            let (_, d) = decisions.remove(0);
            call.process_redirect(now, d, &mut txn);
        } else if cancel_at == Some(next) {
            cancel_at = None;
            call.cancel(now, &mut txn);
        } else if scripted.next_due() == Some(next) {
            scripted.fire(now, &mut txn);
        } else {
            txn.handle_timeout(now);
            call.handle_timeout(now, &mut txn);
        }
    }
    out.leftover = txn.len();
    out
}

fn answered(r: &Run) -> Option<String> {
    r.outcome
        .as_ref()
        .and_then(|o| o.answered_by.as_ref())
        .map(|t| t.uri.clone())
}

#[test]
fn primary_busy_then_alternate_answers() {
    // The seed: "call Perry, or else me".
    let r = run(
        options(targets(&["sip:perry@192.0.2.10", "sip:benny@192.0.2.11"])),
        Redirects::Follow,
        "perry=486 benny=180,200@1s",
        vec![],
        None,
    );
    assert_eq!(answered(&r).as_deref(), Some("sip:benny@192.0.2.11"));
    let o = r.outcome.unwrap();
    assert_eq!(o.status, 200);
    assert_eq!(o.attempts[0].target.uri, "sip:perry@192.0.2.10");
    assert!(o.attempts[0].how.contains("486"), "{:?}", o.attempts);
    assert_eq!(r.leftover, 0);
}

#[test]
fn silent_primary_rolls_over_after_the_timeout() {
    let r = run(
        options(targets(&["sip:perry@192.0.2.10", "sip:benny@192.0.2.11"])),
        Redirects::Follow,
        "perry=silence benny=200",
        vec![],
        None,
    );
    assert_eq!(r.invites[1].0, 10.0);
    assert_eq!(answered(&r).as_deref(), Some("sip:benny@192.0.2.11"));
}

#[test]
fn every_invite_shares_call_id_and_from_tag_with_a_higher_cseq_and_new_branch() {
    let r = run(
        options(targets(&[
            "sip:a@192.0.2.10",
            "sip:b@192.0.2.11",
            "sip:c@192.0.2.12",
        ])),
        Redirects::Follow,
        "a=486 b=503 c=200",
        vec![],
        None,
    );
    let inv: Vec<&Message> = r.invites.iter().map(|(_, m)| m).collect();
    assert_eq!(inv.len(), 3);
    let cseqs: Vec<u32> = inv.iter().map(|m| m.cseq().unwrap().seq).collect();
    assert_eq!(cseqs, [1, 2, 3]);
    assert!(inv
        .iter()
        .all(|m| m.call_id().unwrap() == "ua-call-1@example.com"));
    assert!(inv.iter().all(|m| m.from_tag() == Some("ftag1")));
    assert!(inv.iter().all(|m| m.to_tag().is_none()));
    let branches: std::collections::HashSet<String> = inv
        .iter()
        .map(|m| m.top_via().unwrap().branch().unwrap().to_owned())
        .collect();
    assert_eq!(branches.len(), 3);
    assert_eq!(
        inv[2].header_str(HeaderName::To).unwrap().unwrap(),
        "<sip:a@192.0.2.10>",
        "To stays the original target"
    );
}

const REDIRECT: &str = "a=302(sip:x@192.0.2.20;q=0.5,sip:y@192.0.2.21;q=1) x=200 y=200";

#[test]
fn handler_accepts_the_second_contact_only() {
    // Contacts come by q: y (1.0) first, then x (0.5). Reject y, accept x.
    let handler = |t: &Target, _: &Message| {
        if t.uri.contains("sip:y@") {
            RedirectDecision::Reject
        } else {
            RedirectDecision::Accept
        }
    };
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        Redirects::Ask(Box::new(handler)),
        REDIRECT,
        vec![],
        None,
    );
    assert_eq!(r.tried(), ["sip:a@192.0.2.10", "sip:x@192.0.2.20"]);
    assert_eq!(answered(&r).as_deref(), Some("sip:x@192.0.2.20"));
}

#[test]
fn pending_then_accept_after_a_delay() {
    // Ask the user about y (q=1, first); x is refused outright.
    let handler = |t: &Target, _: &Message| {
        if t.uri.contains("sip:y@") {
            RedirectDecision::Pending
        } else {
            RedirectDecision::Reject
        }
    };
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        Redirects::Ask(Box::new(handler)),
        REDIRECT,
        vec![(3, RedirectDecision::Accept)],
        None,
    );
    assert!(r
        .events
        .iter()
        .any(|(t, e)| *t == 0.0 && matches!(e, CallEvent::RedirectPending(_))));
    assert_eq!(r.tried(), ["sip:a@192.0.2.10", "sip:y@192.0.2.21"]);
    assert_eq!(r.invites[1].0, 3.0);
    assert_eq!(answered(&r).as_deref(), Some("sip:y@192.0.2.21"));
}

#[test]
fn pending_then_each_other_decision() {
    let pending = || {
        Redirects::Ask(Box::new(|_: &Target, _: &Message| {
            RedirectDecision::Pending
        }))
    };
    // Reject both: the 302 stands; it matches the default pattern, nothing is left: 302.
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        pending(),
        REDIRECT,
        vec![(1, RedirectDecision::Reject), (2, RedirectDecision::Reject)],
        None,
    );
    assert_eq!(r.outcome.as_ref().unwrap().status, 302);
    assert_eq!(r.tried(), ["sip:a@192.0.2.10"]);
    // Stop: ends at once with the 302, the alternate is not tried.
    let r = run(
        options(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"])),
        pending(),
        &format!("{REDIRECT} b=200"),
        vec![(1, RedirectDecision::Stop)],
        None,
    );
    assert_eq!(r.outcome.as_ref().unwrap().status, 302);
    assert_eq!(r.tried(), ["sip:a@192.0.2.10"]);
    // AcceptReplace: the next INVITE's To is the new target.
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        pending(),
        REDIRECT,
        vec![
            (1, RedirectDecision::AcceptReplace),
            (2, RedirectDecision::Reject),
        ],
        None,
    );
    let last = &r.invites.last().unwrap().1;
    assert_eq!(last.request_uri_str(), Some("sip:y@192.0.2.21"));
    assert_eq!(
        last.header_str(HeaderName::To).unwrap().unwrap(),
        "<sip:y@192.0.2.21>"
    );
}

#[test]
fn pending_past_its_time_limit_stops_the_call() {
    let mut opts = options(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    opts.redirect_timeout = Duration::from_secs(5);
    let handler = |_: &Target, _: &Message| RedirectDecision::Pending;
    let r = run(
        opts,
        Redirects::Ask(Box::new(handler)),
        &format!("{REDIRECT} b=200"),
        vec![],
        None,
    );
    let (t, _) = r
        .events
        .iter()
        .find(|(_, e)| matches!(e, CallEvent::Ended(_)))
        .unwrap();
    assert_eq!(*t, 5.0);
    assert_eq!(r.outcome.as_ref().unwrap().status, 302);
    assert_eq!(
        r.tried(),
        ["sip:a@192.0.2.10"],
        "nothing unapproved is called"
    );
}

#[test]
fn stop_ends_the_call_with_the_3xx() {
    let handler = |_: &Target, _: &Message| RedirectDecision::Stop;
    let r = run(
        options(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"])),
        Redirects::Ask(Box::new(handler)),
        &format!("{REDIRECT} b=200"),
        vec![],
        None,
    );
    assert_eq!(r.outcome.as_ref().unwrap().status, 302);
    assert_eq!(r.tried(), ["sip:a@192.0.2.10"]);
}

#[test]
fn redirects_rejected_treats_3xx_as_a_final() {
    let r = run(
        options(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"])),
        Redirects::Reject,
        &format!("{REDIRECT} b=200"),
        vec![],
        None,
    );
    assert_eq!(r.tried(), ["sip:a@192.0.2.10", "sip:b@192.0.2.11"]);
    assert_eq!(answered(&r).as_deref(), Some("sip:b@192.0.2.11"));
}

#[test]
fn a_redirect_chain_longer_than_max_targets_ends_cleanly() {
    let world: String = (1..20)
        .map(|i| format!("r{i}=302(sip:r{}@192.0.2.30) ", i + 1))
        .collect();
    let r = run(
        options(targets(&["sip:r1@192.0.2.30"])),
        Redirects::Follow,
        &world,
        vec![],
        None,
    );
    assert_eq!(r.invites.len(), 5, "default max_targets of a call");
    assert_eq!(r.outcome.as_ref().unwrap().status, 302);
    assert_eq!(r.leftover, 0);
}

#[test]
fn a_call_can_ring_a_group_in_parallel_then_roll_over() {
    let plan = TargetPlan {
        groups: vec![
            vec![
                Target::parse("sip:a@192.0.2.10").unwrap(),
                Target::parse("sip:b@192.0.2.11").unwrap(),
            ],
            vec![Target::parse("sip:c@192.0.2.12").unwrap()],
        ],
    };
    let r = run(
        options(plan),
        Redirects::Follow,
        "a=486@1s b=480@2s c=200",
        vec![],
        None,
    );
    assert_eq!(r.invites[0].0, 0.0);
    assert_eq!(r.invites[1].0, 0.0);
    assert_eq!(r.invites[2].0, 2.0);
    assert_eq!(answered(&r).as_deref(), Some("sip:c@192.0.2.12"));
}

#[test]
fn cancelling_a_ringing_call_gives_487() {
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        Redirects::Follow,
        "a=180",
        vec![],
        Some(2),
    );
    assert_eq!(r.outcome.unwrap().status, 487);
}

#[test]
fn defaults_follow_the_issue() {
    let o = options(targets(&["sip:a@192.0.2.10"]));
    assert_eq!(o.policy.max_targets, 5);
    assert_eq!(
        o.policy.no_response_timeout,
        FailoverPolicy::default().no_response_timeout
    );
}

#[test]
fn hangup_sends_bye_along_the_dialog() {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let world = World::parse("a=200").unwrap();
    let mut scripted = Targets::new(&world);
    let mut txn = TxnLayer::new(Config::default());
    let mut call = OutgoingCall::start(
        start,
        options(targets(&["sip:a@192.0.2.10"])),
        Redirects::Follow,
        Box::new(LiteralResolver),
        &mut txn,
    );
    let mut events = vec![];
    let mut byes = 0;
    for round in 0..20 {
        while let Some(ev) = txn.poll_event() {
            if let Event::Response { txn: c, response } = ev {
                call.handle_response(start, c, response, &mut txn);
            }
        }
        while let Some(t) = txn.poll_transmit() {
            let msg = Message::parse(t.bytes.clone()).unwrap();
            if msg.method() == Some(&Method::Bye) {
                byes += 1;
            }
            scripted.on_request(start, &t, &msg, &mut txn);
        }
        while scripted.next_due().is_some() {
            scripted.fire(start, &mut txn);
        }
        while let Some(e) = call.poll_event() {
            events.push(e);
        }
        if round == 5 {
            call.hangup(start, &mut txn);
        }
    }
    assert_eq!(byes, 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::HungUp { remote: false })),
        "{events:?}"
    );
    assert!(call.is_finished());
}

#[test]
fn redirect_duplicates_and_tried_targets_are_not_offered() {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let handler = move |t: &Target, _: &Message| {
        seen.lock().unwrap().push(t.uri.clone());
        RedirectDecision::Accept
    };
    let world = "a=302(sip:a@192.0.2.10,sip:x@192.0.2.20,sip:x@192.0.2.20:5060;q=0.9) x=200";
    let r = run(
        options(targets(&["sip:a@192.0.2.10"])),
        Redirects::Ask(Box::new(handler)),
        world,
        vec![],
        None,
    );
    assert_eq!(
        *asked.lock().unwrap(),
        ["sip:x@192.0.2.20"],
        "a was tried, the second x is the same target"
    );
    assert_eq!(answered(&r).as_deref(), Some("sip:x@192.0.2.20"));
}

#[test]
fn the_ack_carries_the_applications_answer_when_the_2xx_carried_the_offer() {
    let offer_200 = |invite: &Message| {
        Message::parse(
            invite
                .response(200, "OK")
                .to_tag("callee")
                .header("Contact", "<sip:b@192.0.2.20>")
                .body("application/sdp", "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
                .build(),
        )
        .unwrap()
    };
    let invite = Message::parse(
        rollover_sip::RequestBuilder::new(Method::Invite, "sip:b@192.0.2.20")
            .via("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-x")
            .from("<sip:alice@example.com>;tag=ftag1")
            .to("<sip:b@192.0.2.20>")
            .call_id("ua-call-1@example.com")
            .cseq(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut opts = options(targets(&["sip:b@192.0.2.20"]));
    opts.answer = Some(SdpAnswerer(std::sync::Arc::new(|offer: &[u8]| {
        assert!(offer.starts_with(b"v=0"));
        Some(bytes::Bytes::from_static(
            b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n",
        ))
    })));
    let mut n = 0;
    let (_, ack) = call::ack_for_2xx(&opts, &offer_200(&invite), &mut n).unwrap();
    let ack = Message::parse(ack).unwrap();
    assert_eq!(ack.body(), b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n");
    // When our INVITE carried the offer, the 2xx holds the answer: the ACK has no body.
    opts.sdp = Some(bytes::Bytes::from_static(b"v=0\r\n"));
    let (_, ack) = call::ack_for_2xx(&opts, &offer_200(&invite), &mut n).unwrap();
    assert!(Message::parse(ack).unwrap().body().is_empty());
    // A Record-Route entry that does not decode (checked for shape only on the way in)
    // spoils the route set: no ACK is sent along what is left of it.
    let spoiled = |rr: &str| {
        Message::parse(
            invite
                .response(200, "OK")
                .to_tag("callee")
                .header("Record-Route", rr)
                .header("Contact", "<sip:b@192.0.2.20>")
                .build(),
        )
        .unwrap()
    };
    let good = spoiled("<sip:p1@192.0.2.30;lr>, <sip:p2@192.0.2.31;lr>");
    assert!(call::ack_for_2xx(&opts, &good, &mut n).is_some());
    let bad = spoiled("<sip:p1@192.0.2.30;lr>, <sip:p2@h@x;lr>");
    assert!(bad.validate().is_ok());
    assert!(call::ack_for_2xx(&opts, &bad, &mut n).is_none());
}

#[test]
fn the_configured_timer_c_leaves_a_target_that_rings_forever() {
    let mut opts = options(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    opts.policy.ring_timeout = Duration::from_secs(600);
    opts.timer_c = Duration::from_secs(30);
    let r = run(opts, Redirects::Follow, "a=180 b=200", vec![], None);
    let (t, why) = r
        .events
        .iter()
        .find_map(|(t, e)| match e {
            CallEvent::RolledOver(_, why) => Some((*t, why.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(t, 30.0);
    assert_eq!(why, Why::TimerC.to_string());
    assert_eq!(r.invites[1].0, 30.0);
    assert_eq!(answered(&r).as_deref(), Some("sip:b@192.0.2.11"));
    assert_eq!(
        options(targets(&["sip:a@192.0.2.10"])).timer_c,
        Duration::from_secs(181),
        "more than 3 minutes by default"
    );
}

#[test]
fn a_target_that_cannot_be_resolved_says_so_and_the_call_rolls_over() {
    let r = run(
        options(targets(&["sip:a@unknown.invalid", "sip:b@192.0.2.11"])),
        Redirects::Follow,
        "b=200",
        vec![],
        None,
    );
    let o = r.outcome.clone().unwrap();
    assert_eq!(o.attempts[0].target.uri, "sip:a@unknown.invalid");
    assert_eq!(o.attempts[0].how, Why::Unresolvable.to_string());
    assert_eq!(answered(&r).as_deref(), Some("sip:b@192.0.2.11"));
}

#[test]
fn events_carry_the_engines_targets_with_their_transport() {
    let r = run(
        options(targets(&["sip:a@192.0.2.10/TCP"])),
        Redirects::Follow,
        "a=486",
        vec![],
        None,
    );
    let tried = r.events.iter().find_map(|(_, e)| match e {
        CallEvent::Trying(t) => Some(t.clone()),
        _ => None,
    });
    assert_eq!(tried, Some(Target::parse("sip:a@192.0.2.10/TCP").unwrap()));
    assert_eq!(
        r.outcome.unwrap().attempts[0].target.transport,
        rollover_txn::Transport::Tcp
    );
}
