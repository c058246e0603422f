#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The routing hooks a script needs, without a script: one key per call in every hook and
//! a release at the end, a dropped request, a dropped branch, a dropped provisional, and
//! the failed reply handed to the failure hook.

use std::sync::Arc;
use std::time::Duration;

use rollover_sip::Message;
use rollover_txn::Peer;

use rollover_proxy::*;
use rollover_testkit::{udp, Net};

const CALLER: &str = "198.51.100.1:5060";
const TARGET: &str = "192.0.2.10:5060";
const SECOND: &str = "192.0.2.20:5060";

fn invite(call_id: &str, user: &str) -> String {
    format!(
        "INVITE sip:{user}@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=alice\nTo: <sip:{user}@example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{CALLER}>\nContent-Length: 0\n\n"
    )
}

/// Records which key each hook saw; `drop` drops the request, a 180, or the branch to
/// SECOND, depending on the Request-URI's user.
#[derive(Default)]
struct Keys {
    seen: Vec<(&'static str, u64)>,
    released: Vec<u64>,
    failed: Vec<(u16, Option<String>)>,
}

impl RoutePolicy for Keys {
    fn on_request(&mut self, _: &Message, _: &Peer) -> RouteDecision {
        unreachable!("the core asks on_route")
    }

    fn on_route(&mut self, call: CallView<'_>) -> RouteDecision {
        self.seen.push(("route", call.key));
        let uri = call.request.request_uri_str().unwrap_or_default();
        if uri.starts_with("sip:drop@") {
            return RouteDecision::Drop {
                rule: Arc::from("drop"),
            };
        }
        RouteDecision::Targets {
            plan: TargetPlan::serial(vec![
                Target::parse(&format!("sip:a@{TARGET}")).unwrap(),
                Target::parse(&format!("sip:b@{SECOND}")).unwrap(),
            ]),
            policy: FailoverPolicy::default(),
            rule: Arc::from("keys"),
        }
    }

    fn on_release(&mut self, key: u64) {
        self.released.push(key);
    }

    fn on_branch(&mut self, call: CallView<'_>, target: &Target, edits: &mut Edits) {
        self.seen.push(("branch", call.key));
        let user = call.request.request_uri_str().unwrap_or_default();
        if user.starts_with("sip:skip@") && target.uri.starts_with("sip:a@") {
            edits.drop_message();
        }
    }

    fn on_reply(&mut self, call: CallView<'_>, _: &Target, reply: &Message, edits: &mut Edits) {
        self.seen.push(("reply", call.key));
        if reply.status() == Some(180) {
            edits.drop_message();
        }
        edits.append_header("X-Seen", "yes");
    }

    fn on_failure(&mut self, call: CallView<'_>, failed: Failed<'_>) -> Failure {
        self.seen.push(("failure", call.key));
        let header = failed.reply.and_then(|r| {
            r.headers_by_name("X-Seen")
                .next()
                .map(|h| r.value_unfolded(h).into_owned())
        });
        self.failed.push((failed.status.as_u16(), header));
        Failure::Reply
    }
}

fn net() -> Net<Keys> {
    Net::with_policy(
        ProxyConfig::default(),
        Keys::default(),
        Box::new(LiteralResolver),
    )
}

fn last_invite_to(n: &Net<Keys>, to: &str) -> Message {
    n.sent_to(to)
        .into_iter()
        .rfind(|m| m.method().is_some_and(|m| m.as_str() == "INVITE"))
        .unwrap()
        .clone()
}

#[test]
fn every_hook_of_a_call_sees_its_key_and_the_call_is_released() {
    let mut n = net();
    n.recv(udp(CALLER), &invite("k-1", "100"));
    let to_a = last_invite_to(&n, TARGET);
    n.recv_bytes(
        udp(TARGET),
        to_a.response(180, "Ringing").to_tag("a").build(),
    );
    n.recv_bytes(
        udp(TARGET),
        to_a.response(486, "Busy Here").to_tag("a").build(),
    );
    let to_b = last_invite_to(&n, SECOND);
    n.recv_bytes(
        udp(SECOND),
        to_b.response(480, "Unavailable").to_tag("b").build(),
    );
    // The 180 was dropped: the caller has our 100 and the final only.
    assert_eq!(n.statuses_to(CALLER), [100, 480]);
    let keys: Vec<u64> = n.proxy.router_mut().seen.iter().map(|(_, k)| *k).collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "{:?}",
        n.proxy.router_mut().seen
    );
    let hooks: Vec<&str> = n.proxy.router_mut().seen.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        hooks,
        ["route", "branch", "reply", "reply", "branch", "reply", "failure"]
    );
    // The failure hook sees the best reply (§16.7: the lower 4xx) as the reply hook left it.
    assert_eq!(n.proxy.router_mut().failed, [(480, Some("yes".into()))]);
    n.run(Duration::from_secs(40));
    assert_eq!(n.proxy.calls(), 0);
    assert_eq!(n.proxy.router_mut().released, [keys[0]]);
}

#[test]
fn a_dropped_request_gets_no_reply_and_is_released() {
    let mut n = net();
    n.recv(udp(CALLER), &invite("k-drop", "drop"));
    n.run(Duration::from_secs(1));
    assert!(n.statuses_to(CALLER).is_empty());
    assert!(n.sent_to(TARGET).is_empty());
    assert_eq!(n.proxy.calls(), 0);
    assert_eq!(n.proxy.stats().dropped, 1);
    let route_key = n.proxy.router_mut().seen[0].1;
    assert_eq!(n.proxy.router_mut().released, [route_key]);
}

#[test]
fn a_dropped_branch_rolls_over_to_the_next_target() {
    let mut n = net();
    n.recv(udp(CALLER), &invite("k-skip", "skip"));
    assert!(n.sent_to(TARGET).is_empty(), "the branch to a was dropped");
    let to_b = last_invite_to(&n, SECOND);
    n.recv_bytes(udp(SECOND), to_b.response(200, "OK").to_tag("b").build());
    assert_eq!(n.statuses_to(CALLER), [100, 200]);
    assert!(n.proxy.stats().to_string().contains("dropped"));
}
