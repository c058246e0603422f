#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The network's controls: a lossy link the transaction layer's retransmissions get
//! through, a slow link that outlasts the no-response timer, reproducible runs.

use std::sync::Arc;
use std::time::Duration;

use rollover_proxy::{
    Decision, FailoverPolicy, LiteralResolver, ProxyConfig, RouteDecision, Target, TargetPlan, Why,
};
use rollover_sip::{Message, Method, StatusCode};
use rollover_testkit::{addr, invite_to, udp, Link, Net, Outcome, World, CALLER};
use rollover_txn::Peer;

const A: &str = "192.0.2.10:5060";
const B: &str = "192.0.2.11:5060";

type Plan = Box<dyn Fn(&Message, &Peer) -> RouteDecision>;

/// A proxy trying `sip:a@A`, then `sip:b@B`, with `policy`, against `world`.
fn network(policy: FailoverPolicy, world: &str) -> Net<Plan> {
    let targets = vec![
        Target::parse(&format!("sip:a@{A}")).unwrap(),
        Target::parse(&format!("sip:b@{B}")).unwrap(),
    ];
    let plan: Plan = Box::new(move |_: &Message, _: &Peer| RouteDecision::Targets {
        plan: TargetPlan::serial(targets.clone()),
        policy: policy.clone(),
        rule: Arc::from("test"),
    });
    let cfg = ProxyConfig {
        keep_decisions: true,
        ..ProxyConfig::default()
    };
    let mut net = Net::with_policy(cfg, plan, Box::new(LiteralResolver));
    net.answer_with(&World::parse(world).unwrap());
    net
}

/// Calls through `net` and runs until every timer has run.
fn call(net: &mut Net<Plan>) -> Outcome {
    let invite = invite_to("sip:100@192.0.2.1").unwrap();
    net.call(udp(CALLER), invite.as_bytes().clone());
    let until = net.start + Duration::from_secs(300);
    assert!(net.drive(until), "quiet before the limit");
    let out = net.outcome();
    eprintln!("{}", out.render());
    assert_eq!(out.leftover, (0, 0), "nothing kept once the timers ran");
    out
}

fn invites_to(net: &Net<Plan>, to: &str) -> usize {
    net.sent_to(to)
        .iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .count()
}

#[test]
fn a_lossy_target_link_still_completes_the_call_through_retransmissions() {
    let lossy = |seed| {
        let mut net = network(FailoverPolicy::default(), "a=200@1s");
        net.seed(seed).link(addr(A).ip(), Link::lossy(0.5));
        let out = call(&mut net);
        (net, out)
    };
    // Half the datagrams to and from A are lost; with this seed, INVITEs and 200s both.
    let (net, out) = lossy(9);
    assert!(net.lost >= 3, "the link lost something: {}", net.lost);
    assert_eq!(out.final_status, Some(200));
    assert!(
        invites_to(&net, A) > 1,
        "the INVITE was retransmitted over the lossy link"
    );
    assert!(
        out.timeline.iter().any(|l| l.text.ends_with("(again)")),
        "a lost 200 was sent again for a retransmitted INVITE"
    );
    assert!(invites_to(&net, B) == 0, "no rollover: A answered");
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::Answered {
            status: StatusCode::OK,
            ..
        }
    )));
    // The same seed, the same run.
    let (again, out_again) = lossy(9);
    assert_eq!(out_again, out);
    assert_eq!(again.lost, net.lost);
}

#[test]
fn a_slow_target_link_outlasts_the_no_response_timer_and_a_faster_one_does_not() {
    let policy = FailoverPolicy {
        no_response_timeout: Duration::from_secs(2),
        ..FailoverPolicy::default()
    };
    let world = "a=180,200@5s b=200";
    // 1.5 s each way: A's 180 arrives 3 s after the INVITE left, past the 2 s timer.
    let mut slow = network(policy.clone(), world);
    slow.link(addr(A).ip(), Link::latency(Duration::from_millis(1500)));
    let out = call(&mut slow);
    assert_eq!(out.final_status, Some(200));
    assert!(out.decisions.iter().any(|d| matches!(
        d,
        Decision::RolledOver {
            why: Why::NoResponse(_),
            ..
        }
    )));
    assert_eq!(invites_to(&slow, B), 1, "B was tried");
    let b_at = slow
        .sent
        .iter()
        .zip(&slow.sent_at)
        .find(|((p, m), _)| p.addr == addr(B) && m.method() == Some(&Method::Invite))
        .map(|(_, t)| *t - slow.start)
        .unwrap();
    assert_eq!(b_at, Duration::from_secs(2), "B tried when the timer fired");
    // 0.5 s each way: the 180 is back after 1 s, the timer is stopped and A answers.
    let mut fast = network(policy, world);
    fast.link(addr(A).ip(), Link::latency(Duration::from_millis(500)));
    let out = call(&mut fast);
    assert_eq!(out.final_status, Some(200));
    assert!(!out
        .decisions
        .iter()
        .any(|d| matches!(d, Decision::RolledOver { .. })));
    assert_eq!(invites_to(&fast, B), 0, "B never tried");
    // The INVITE reached A at 0.5 s, its 200 left 5 s later and was back at 6 s.
    let answered = out
        .timeline
        .iter()
        .find(|l| l.text.starts_with("caller ← SIP/2.0 200"))
        .unwrap();
    assert_eq!(answered.at, Duration::from_secs(6));
}

#[test]
fn step_moves_the_clock_one_event_at_a_time() {
    let mut net = network(FailoverPolicy::default(), "a=180@1s,200@2s");
    net.default_link(Link::latency(Duration::from_millis(100)));
    let invite = invite_to("sip:100@192.0.2.1").unwrap();
    net.call(udp(CALLER), invite.as_bytes().clone());
    let mut times = vec![];
    while let Some(t) = net.step() {
        times.push(t - net.start);
        if net.final_status(0).is_some() {
            break;
        }
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // INVITE in at 0.1 s, at A at 0.2 s, 200 sent at 2.2 s, at the proxy at 2.3 s, at the
    // caller at 2.4 s.
    assert_eq!(times.last(), Some(&Duration::from_millis(2400)));
    assert_eq!(net.final_status(0), Some(200));
}
