#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The proxy core in virtual time: every timer, pattern kind, redirect rule, fork and race.

use std::sync::Arc;
use std::time::Duration;

use rollover_sip::{Message, StatusCode};
use rollover_txn::Peer;

use rollover_proxy::*;
use rollover_testkit::{self as sim, Outcome, World};

fn targets(list: &[&str]) -> Vec<Target> {
    list.iter().map(|t| Target::parse(t).unwrap()).collect()
}

fn router(plan: TargetPlan, policy: FailoverPolicy) -> impl Fn(&Message, &Peer) -> RouteDecision {
    move |_: &Message, _: &Peer| RouteDecision::Targets {
        plan: plan.clone(),
        policy: policy.clone(),
        rule: Arc::from("test"),
    }
}

fn simulate(plan: TargetPlan, policy: FailoverPolicy, world: &str) -> Outcome {
    let req = sim::invite_to("sip:100@192.0.2.100").unwrap();
    let out = sim::run(
        router(plan, policy),
        &req,
        &World::parse(world).unwrap(),
        Duration::from_secs(400),
    );
    eprintln!("{}", out.render());
    assert!(!out.timeline.iter().any(|l| l.text.contains("time limit")));
    assert_eq!(
        out.leftover,
        (0, 0),
        "calls and transactions are released once their timers ran"
    );
    out
}

fn serial(list: &[&str], world: &str) -> Outcome {
    simulate(
        TargetPlan::serial(targets(list)),
        FailoverPolicy::default(),
        world,
    )
}

/// (time in seconds, line) of the lines containing `needle`.
fn lines_with(out: &Outcome, needle: &str) -> Vec<(f64, String)> {
    out.timeline
        .iter()
        .filter(|l| l.text.contains(needle))
        .map(|l| (l.at.as_secs_f64(), l.text.clone()))
        .collect()
}

fn first_time(out: &Outcome, needle: &str) -> f64 {
    lines_with(out, needle)
        .first()
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
}

#[test]
fn error_response_rolls_over_to_the_next_target() {
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=486@1s b=200@1s",
    );
    assert_eq!(out.final_status, Some(200));
    assert_eq!(first_time(&out, "→ INVITE sip:b@"), 1.0);
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::RolledOver {
            why: Why::Status {
                status: StatusCode::BUSY_HERE,
                ..
            },
            ..
        }
    )));
    assert!(
        lines_with(&out, "caller ← SIP/2.0 486").is_empty(),
        "the 486 is not relayed"
    );
}

#[test]
fn silence_rolls_over_after_no_response_timeout_without_cancel() {
    let out = serial(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"], "a=silence b=200");
    assert_eq!(out.final_status, Some(200));
    assert_eq!(
        first_time(&out, "→ INVITE sip:b@"),
        10.0,
        "default no_response_timeout is 10 s"
    );
    assert!(
        lines_with(&out, "→ CANCEL sip:a@").is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    let a_sends: Vec<f64> = lines_with(&out, "→ INVITE sip:a@")
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert!(
        a_sends.iter().all(|t| *t < 10.0),
        "retransmissions stop when abandoned: {a_sends:?}"
    );
}

#[test]
fn ringing_past_ring_timeout_is_cancelled() {
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=180@1s b=200@1s",
    );
    assert_eq!(out.final_status, Some(200));
    assert_eq!(
        first_time(&out, "→ CANCEL sip:a@"),
        21.0,
        "ring timer (20 s) from the first provisional"
    );
    assert_eq!(first_time(&out, "→ INVITE sip:b@"), 21.0);
    assert_eq!(
        first_time(&out, "caller ← SIP/2.0 180"),
        1.0,
        "the provisional is relayed"
    );
}

#[test]
fn a_100_trying_then_silence_rolls_over_at_the_ring_timeout() {
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=100@1s,silence b=200",
    );
    // The 100 stops the no-response timer (10 s) and starts the ring timer (20 s), as
    // Kamailio's fr_inv_timer does: a carrier that stalls after 100 is left at 21 s, with a
    // CANCEL (a provisional came, so §9.1 allows one), not after Timer C.
    assert_eq!(first_time(&out, "→ CANCEL sip:a@"), 21.0);
    assert_eq!(first_time(&out, "→ INVITE sip:b@"), 21.0);
    assert!(
        lines_with(&out, "caller ← SIP/2.0 100").len() == 1,
        "only our own 100"
    );
    assert_eq!(out.final_status, Some(200));
}

#[test]
fn response_patterns() {
    let policy = |p: &str| FailoverPolicy {
        on_response: ResponsePattern::new(p).unwrap(),
        ..FailoverPolicy::default()
    };
    let plan = || TargetPlan::serial(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    // 4..: a 404 rolls over, a 500 is final.
    assert_eq!(
        simulate(plan(), policy("4.."), "a=404 b=200").final_status,
        Some(200)
    );
    let out = simulate(plan(), policy("4.."), "a=500 b=200");
    assert_eq!(out.final_status, Some(500));
    assert!(lines_with(&out, "→ INVITE sip:b@").is_empty());
    // 503 always rolls over, whatever the pattern.
    assert_eq!(
        simulate(plan(), policy("4.."), "a=503 b=200").final_status,
        Some(200)
    );
    // 5..|408
    assert_eq!(
        simulate(plan(), policy("5..|408"), "a=408 b=200").final_status,
        Some(200)
    );
    assert_eq!(
        simulate(plan(), policy("5..|408"), "a=486 b=200").final_status,
        Some(486)
    );
}

#[test]
fn six_hundreds_end_the_call_unless_named() {
    let plan = || TargetPlan::serial(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan(), FailoverPolicy::default(), "a=603 b=200");
    assert_eq!(out.final_status, Some(603));
    let brekeke = FailoverPolicy {
        on_response: ResponsePattern::new(".+").unwrap(),
        ..FailoverPolicy::default()
    };
    assert_eq!(
        simulate(plan(), brekeke, "a=603 b=200").final_status,
        Some(603)
    );
    let named = FailoverPolicy {
        on_response: ResponsePattern::new("6..").unwrap(),
        ..FailoverPolicy::default()
    };
    assert_eq!(
        simulate(plan(), named, "a=603 b=200").final_status,
        Some(200)
    );
}

#[test]
fn redirects_are_followed_in_q_order() {
    let out = serial(
        &["sip:a@192.0.2.10"],
        "a=302(sip:d@192.0.2.13;q=0.5,sip:e@192.0.2.14;q=1) d=200 e=486",
    );
    assert_eq!(out.final_status, Some(200));
    let e = first_time(&out, "→ INVITE sip:e@");
    let d = first_time(&out, "→ INVITE sip:d@");
    assert!(e <= d);
    let order: Vec<_> = out
        .timeline
        .iter()
        .filter(|l| l.text.starts_with("→ INVITE"))
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(
        order,
        [
            "→ INVITE sip:a@192.0.2.10 [UDP]",
            "→ INVITE sip:e@192.0.2.14 [UDP]",
            "→ INVITE sip:d@192.0.2.13 [UDP]"
        ]
    );
}

#[test]
fn redirect_duplicates_and_tried_targets_are_dropped() {
    let out = serial(
        &["sip:a@192.0.2.10"],
        "a=302(sip:a@192.0.2.10,sip:e@192.0.2.14,sip:e@192.0.2.14:5060) e=200",
    );
    assert_eq!(out.final_status, Some(200));
    assert!(out
        .decisions
        .iter()
        .any(|d| matches!(d, Decision::Redirected { added, dropped: 2, .. } if added.len() == 1)));
}

#[test]
fn redirects_not_followed_when_disabled() {
    let policy = FailoverPolicy {
        follow_redirects: false,
        ..FailoverPolicy::default()
    };
    let plan = TargetPlan::serial(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan, policy, "a=302(sip:e@192.0.2.14) b=200 e=200");
    assert_eq!(out.final_status, Some(200));
    assert!(lines_with(&out, "→ INVITE sip:e@").is_empty());
    assert!(!lines_with(&out, "→ INVITE sip:b@").is_empty());
}

#[test]
fn redirect_loop_ends_at_max_targets() {
    let world: String = (1..30)
        .map(|i| format!("x{i}=302(sip:x{}@192.0.2.50) ", i + 1))
        .collect();
    let out = serial(&["sip:x1@192.0.2.50"], &world);
    let invites = lines_with(&out, "→ INVITE")
        .iter()
        .filter(|(_, l)| l.starts_with('→') && !l.contains("retrans"))
        .count();
    assert_eq!(invites, 10, "default max_targets");
    assert_eq!(out.final_status.map(|s| s / 100), Some(3));
}

#[test]
fn parallel_group_best_response_and_answer() {
    let plan = TargetPlan::parallel(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan, FailoverPolicy::default(), "a=486@1s b=180,200@2s");
    assert_eq!(out.final_status, Some(200));
    assert!(lines_with(&out, "caller ← SIP/2.0 486").is_empty());
    let plan = TargetPlan::parallel(targets(&[
        "sip:a@192.0.2.10",
        "sip:b@192.0.2.11",
        "sip:c@192.0.2.12",
    ]));
    assert_eq!(
        simulate(
            plan.clone(),
            FailoverPolicy::default(),
            "a=486 b=503 c=600@1s"
        )
        .final_status,
        Some(600)
    );
    assert_eq!(
        simulate(plan.clone(), FailoverPolicy::default(), "a=486 b=503 c=404").final_status,
        Some(404)
    );
    assert_eq!(
        simulate(plan, FailoverPolicy::default(), "a=503 b=503 c=503").final_status,
        Some(500),
        "503 → 500"
    );
}

#[test]
fn two_2xx_from_two_branches_are_both_forwarded() {
    let plan = TargetPlan::parallel(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan, FailoverPolicy::default(), "a=200@1s b=200@1s");
    assert_eq!(lines_with(&out, "caller ← SIP/2.0 200").len(), 2);
}

#[test]
fn answer_cancels_the_other_branches_with_reason() {
    let plan = TargetPlan::parallel(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan, FailoverPolicy::default(), "a=180,200@2s b=180");
    assert_eq!(out.final_status, Some(200));
    let cancels = lines_with(&out, "→ CANCEL sip:b@");
    assert_eq!(cancels.len(), 1);
    assert!(cancels[0].1.contains("cause=200"), "{:?}", cancels[0]);
}

#[test]
fn groups_roll_over_in_order() {
    let plan = TargetPlan {
        groups: vec![
            targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]),
            targets(&["sip:c@192.0.2.12"]),
        ],
    };
    let out = simulate(plan, FailoverPolicy::default(), "a=486@1s b=480@2s c=200");
    assert_eq!(out.final_status, Some(200));
    assert_eq!(
        first_time(&out, "→ INVITE sip:c@"),
        2.0,
        "the next group waits for the whole group"
    );
}

#[test]
fn late_2xx_after_no_response_timeout_is_relayed_and_later_branches_cancelled() {
    let out = serial(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"], "a=200@11s b=180");
    assert_eq!(first_time(&out, "→ INVITE sip:b@"), 10.0);
    assert_eq!(out.final_status, Some(200));
    assert_eq!(first_time(&out, "caller ← SIP/2.0 200"), 11.0);
    assert_eq!(first_time(&out, "→ CANCEL sip:b@"), 11.0);
}

#[test]
fn late_2xx_racing_the_ring_timer_cancel_is_relayed() {
    // a rings at 0 and answers exactly when its ring timer (20 s) fires.
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=180,200@20s b=180",
    );
    assert!(
        !lines_with(&out, "caller ← SIP/2.0 200").is_empty(),
        "the 200 is not lost"
    );
    assert_eq!(out.final_status, Some(200));
}

#[test]
fn transport_error_rolls_over_at_once() {
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=unreachable b=200",
    );
    assert_eq!(first_time(&out, "→ INVITE sip:b@"), 0.0);
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::RolledOver {
            why: Why::Transport(_),
            ..
        }
    )));
    assert_eq!(out.final_status, Some(200));
}

#[test]
fn all_failing_gives_the_best_response_and_all_silent_gives_408() {
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11", "sip:c@192.0.2.12"],
        "a=503 b=486 c=500",
    );
    assert_eq!(out.final_status, Some(486));
    let out = serial(
        &["sip:a@192.0.2.10", "sip:b@192.0.2.11"],
        "a=silence b=silence",
    );
    assert_eq!(out.final_status, Some(408));
    assert_eq!(first_time(&out, "caller ← SIP/2.0 408"), 20.0);
}

#[test]
fn upstream_cancel_cancels_every_branch() {
    let plan = TargetPlan::parallel(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(
        plan,
        FailoverPolicy::default(),
        "a=180 b=180 caller=cancel@3s",
    );
    assert_eq!(
        lines_with(&out, "→ CANCEL")
            .iter()
            .filter(|(_, l)| l.starts_with('→'))
            .count(),
        2
    );
    assert_eq!(out.final_status, Some(487));
    assert!(
        !lines_with(&out, "caller ← SIP/2.0 200 OK").is_empty(),
        "the CANCEL itself is answered 200"
    );
}

#[test]
fn timer_c_cancels_a_branch_that_rings_forever() {
    let policy = FailoverPolicy {
        ring_timeout: Duration::from_secs(600),
        ..FailoverPolicy::default()
    };
    let plan = TargetPlan::serial(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(plan, policy, "a=180 b=200");
    assert_eq!(first_time(&out, "→ CANCEL sip:a@"), 181.0);
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::RolledOver {
            why: Why::TimerC,
            ..
        }
    )));
}

#[test]
fn target_transport_suffix_is_used() {
    let out = serial(&["sip:a@192.0.2.10/TCP"], "a=200");
    assert_eq!(out.final_status, Some(200));
}

mod checks {
    use super::*;
    use rollover_sip::RequestBuilder;
    use rollover_txn::{Config, Event, Transport, TxnLayer};
    use std::net::SocketAddr;
    use std::time::Instant;

    /// Feeds one request to a proxy and returns what it sent (status codes of responses to
    /// the caller, and forwarded requests).
    fn feed(req: Message) -> (Vec<u16>, Vec<Message>) {
        let (statuses, forwarded, _) = feed_counted(req);
        (statuses, forwarded)
    }

    /// [`feed`], with the proxy's statistics afterwards (decisions neither kept nor logged:
    /// the default configuration, and no subscriber in this test).
    fn feed_counted(req: Message) -> (Vec<u16>, Vec<Message>, ProxyStats) {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let local = SocketAddr::from(([192, 0, 2, 1], 5060));
        let cfg = ProxyConfig {
            local: vec![(Transport::Udp, local)],
            ..ProxyConfig::default()
        };
        let plan = TargetPlan::serial(targets(&["sip:a@192.0.2.10"]));
        let mut proxy = Proxy::new(
            cfg,
            router(plan, FailoverPolicy::default()),
            Box::new(LiteralResolver),
        );
        let mut txn = TxnLayer::new(Config::default());
        let caller = Peer {
            transport: Transport::Udp,
            addr: SocketAddr::from(([198, 51, 100, 1], 5060)),
        };
        txn.handle_message(now, caller, req);
        let mut statuses = vec![];
        let mut forwarded = vec![];
        loop {
            let mut busy = false;
            while let Some(ev) = txn.poll_event() {
                busy = true;
                if !matches!(ev, Event::Terminated(_)) {
                    proxy.handle_txn_event(now, ev, &mut txn);
                }
            }
            while let Some(t) = txn.poll_transmit() {
                busy = true;
                let m = Message::parse(t.bytes).unwrap();
                match m.status() {
                    Some(s) => statuses.push(s),
                    None => forwarded.push(m),
                }
            }
            if !busy {
                break;
            }
        }
        (statuses, forwarded, proxy.stats().clone())
    }

    #[test]
    fn routed_and_relayed_requests_are_counted_when_no_decision_is_kept_or_logged() {
        let (_, fwd, stats) = feed_counted(invite(&[], 70));
        assert_eq!(fwd.len(), 1);
        assert_eq!((stats.routed, stats.relayed), (1, 0));
        let (_, fwd, stats) = feed_counted(bye_along_our_route());
        assert_eq!(fwd.len(), 1);
        assert_eq!((stats.routed, stats.relayed), (0, 1));
    }

    fn invite(extra: &[(&str, &str)], max_forwards: u8) -> Message {
        let mut b = RequestBuilder::new(rollover_sip::Method::Invite, "sip:100@192.0.2.1")
            .via("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-up-1")
            .from("<sip:caller@example.com>;tag=c1")
            .to("<sip:100@example.com>")
            .call_id("checks@example.com")
            .cseq(1)
            .max_forwards(max_forwards);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        Message::parse(b.build().unwrap()).unwrap()
    }

    #[test]
    fn a_large_request_stays_on_udp() {
        // A phone's INVITE with SDP, our Via and Record-Route passes 1,300 bytes: UDP
        // targets (most of them accept nothing else) still get it over UDP, as Kamailio does.
        let big = "x".repeat(1400);
        let (_, fwd) = feed(invite(&[("X-Padding", &big)], 70));
        assert!(fwd[0].as_bytes().len() > 1400);
        assert_eq!(fwd[0].top_via().unwrap().transport, "UDP");
    }

    fn token(call_id: &str, tag: &str) -> String {
        ProxyConfig::default()
            .secret
            .route_token(call_id, tag)
            .to_string()
    }

    #[test]
    fn strict_router_request_uri_is_restored_from_the_last_route() {
        // The previous hop was a strict router: it put our URI in the Request-URI and the
        // real one at the end of the Route set (§16.4).
        let ruri = format!(
            "sip:192.0.2.1:5060;lr;tk={}",
            token("strict@example.com", "c1")
        );
        let bye = RequestBuilder::new(rollover_sip::Method::Bye, &ruri)
            .via("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-strict")
            .from("<sip:caller@example.com>;tag=c1")
            .to("<sip:100@example.com>;tag=t1")
            .call_id("strict@example.com")
            .cseq(2)
            .header("Route", "<sip:callee@192.0.2.30:5080>")
            .build()
            .unwrap();
        let (_, fwd) = feed(Message::parse(bye).unwrap());
        assert_eq!(fwd[0].request_uri_str(), Some("sip:callee@192.0.2.30:5080"));
        assert_eq!(fwd[0].routes().count(), 0);
    }

    #[test]
    fn max_forwards_zero_is_483() {
        assert_eq!(feed(invite(&[], 0)).0, [483]);
    }

    #[test]
    fn proxy_require_is_420_with_unsupported() {
        let (st, fwd) = feed(invite(&[("Proxy-Require", "foo")], 70));
        assert_eq!(st, [420]);
        assert!(fwd.is_empty());
    }

    #[test]
    fn forwarded_request_has_our_via_rr_and_max_forwards_minus_one() {
        let (st, fwd) = feed(invite(&[], 70));
        assert_eq!(st, [100]);
        let f = &fwd[0];
        assert_eq!(f.request_uri_str(), Some("sip:a@192.0.2.10"));
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        let via = f.top_via().unwrap();
        assert_eq!(via.sent_by, "192.0.2.1:5060");
        assert!(via.has_magic_cookie());
        assert_eq!(
            f.record_routes().next().unwrap().unwrap().uri_str,
            format!(
                "sip:192.0.2.1:5060;lr;tk={}",
                token("checks@example.com", "c1")
            )
        );
        assert_eq!(f.vias().count(), 2);
    }

    #[test]
    fn a_request_coming_back_is_a_loop_482() {
        let original = invite(&[], 70);
        let (_, fwd) = feed(original.clone());
        // The next hop sends it straight back with the same Request-URI.
        let back =
            Message::parse(fwd[0].edit().set_request_uri("sip:100@192.0.2.1").finish()).unwrap();
        assert_eq!(feed(back).0, [482]);
    }

    #[test]
    fn a_request_coming_back_with_another_request_uri_is_a_spiral_not_a_loop() {
        let (_, fwd) = feed(invite(&[], 70));
        // Sent back to us for another user: §16.3 item 4 calls that a spiral, routed again.
        let back =
            Message::parse(fwd[0].edit().set_request_uri("sip:200@192.0.2.1").finish()).unwrap();
        let (statuses, again) = feed(back);
        assert!(!statuses.contains(&482), "{statuses:?}");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].vias().count(), 3);
    }

    #[test]
    fn an_ack_along_our_route_loses_our_entries_and_gains_our_via() {
        let ours = format!(
            "<sip:192.0.2.1:5060;lr;tk={}>",
            token("ack@example.com", "c1")
        );
        let ours_tcp = format!(
            "<sip:192.0.2.1:5060;transport=tcp;lr;tk={}>",
            token("ack@example.com", "c1")
        );
        let edge = "<sip:edge@192.0.2.30;lr>";
        // (Route set, the entries left): one of ours on top (popped in the edit that adds
        // our Via), then a foreign one kept, then both entries of a double Record-Route
        // (the whole of route preprocessing).
        for (routes, left) in [
            (ours.clone(), vec![]),
            (format!("{ours}, {edge}"), vec!["sip:edge@192.0.2.30;lr"]),
            (
                format!("{ours}, {ours_tcp}, {edge}"),
                vec!["sip:edge@192.0.2.30;lr"],
            ),
            (format!("{ours}, {ours_tcp}"), vec![]),
        ] {
            let ack = RequestBuilder::new(rollover_sip::Method::Ack, "sip:callee@192.0.2.20:5070")
                .via("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-ack")
                .from("<sip:caller@example.com>;tag=c1")
                .to("<sip:100@example.com>;tag=t1")
                .call_id("ack@example.com")
                .cseq(1)
                .header("Route", &routes)
                .build()
                .unwrap();
            let (statuses, fwd) = feed(Message::parse(ack).unwrap());
            assert!(statuses.is_empty(), "{routes}: an ACK is never answered");
            assert_eq!(fwd.len(), 1, "{routes}");
            let f = &fwd[0];
            let got: Vec<_> = f.routes().map(|r| r.unwrap().uri_str.to_owned()).collect();
            assert_eq!(got, left, "{routes}");
            assert_eq!(f.vias().count(), 2, "{routes}");
            assert!(f
                .top_via()
                .unwrap()
                .branch()
                .unwrap()
                .starts_with("z9hG4bKrl"));
            assert_eq!(f.max_forwards().unwrap(), Some(69), "{routes}");
            assert_eq!(f.request_uri_str(), Some("sip:callee@192.0.2.20:5070"));
        }
    }

    /// A BYE in a dialog this proxy recorded: its Route is our entry, token and all.
    fn bye_along_our_route() -> Message {
        let bye = RequestBuilder::new(rollover_sip::Method::Bye, "sip:callee@192.0.2.20:5070")
            .via("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-bye")
            .from("<sip:caller@example.com>;tag=c1")
            .to("<sip:100@example.com>;tag=t1")
            .call_id("dialog@example.com")
            .cseq(2)
            .header(
                "Route",
                &format!(
                    "<sip:192.0.2.1:5060;lr;tk={}>",
                    token("dialog@example.com", "c1")
                ),
            )
            .build()
            .unwrap();
        Message::parse(bye).unwrap()
    }

    #[test]
    fn in_dialog_request_follows_route_and_pops_our_route() {
        let (_, fwd) = feed(bye_along_our_route());
        assert_eq!(fwd.len(), 1);
        assert_eq!(fwd[0].request_uri_str(), Some("sip:callee@192.0.2.20:5070"));
        assert_eq!(fwd[0].routes().count(), 0, "our Route removed");
    }
}

#[test]
fn redirects_outside_the_reach_are_not_followed_and_the_next_target_is_tried() {
    let policy = FailoverPolicy {
        reach: Some(std::sync::Arc::new(
            Reach::parse(&["192.0.2.0/24"]).unwrap(),
        )),
        ..FailoverPolicy::default()
    };
    let plan = TargetPlan::serial(targets(&["sip:a@192.0.2.10", "sip:b@192.0.2.11"]));
    let out = simulate(
        plan,
        policy.clone(),
        "a=302(sip:premium@203.0.113.66;q=1,sip:d@192.0.2.13;q=0.5) d=486 b=200@1s",
    );
    assert_eq!(out.final_status, Some(200));
    assert!(
        lines_with(&out, "→ INVITE sip:premium@").is_empty(),
        "not followed"
    );
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::OutsideReach { contact, .. } if contact.contains("203.0.113.66")
    )));
    // The Contact inside the reach was followed, then the plan's next target.
    assert!(first_time(&out, "→ INVITE sip:d@") <= first_time(&out, "→ INVITE sip:b@"));
    // The redirecting target's own host is always allowed.
    let plan = TargetPlan::serial(targets(&["sip:a@198.51.100.10"]));
    let out = simulate(
        plan,
        policy,
        "a=302(sip:moved@198.51.100.10:5070) moved=200",
    );
    assert_eq!(out.final_status, Some(200));
}

#[test]
fn a_multicast_or_broadcast_target_is_never_called() {
    for bad in ["sip:m@224.0.0.1", "sip:m@255.255.255.255", "sip:m@0.0.0.0"] {
        let out = serial(&[bad, "sip:b@192.0.2.11"], "b=200");
        assert_eq!(out.final_status, Some(200));
        assert!(lines_with(&out, "→ INVITE sip:m@").is_empty(), "{bad}");
        assert!(out.decisions.iter().any(|d| matches!(
            d,
            Decision::RolledOver {
                why: Why::NeverATarget,
                ..
            }
        )));
    }
}
