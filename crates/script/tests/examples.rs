#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! The scripts in `examples/lua/`, each run on the virtual network with scripted targets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rollover_proxy::{ProxyConfig, Resolver, RouteDecision};
use rollover_script::{Script, ScriptPolicy};
use rollover_sip::Message;
use rollover_testkit::{invite_to, udp, Net, SimResolver, World, CALLER};
use rollover_txn::{Peer, Transport};

type Plan = fn(&Message, &Peer) -> RouteDecision;

fn no_rules(_: &Message, _: &Peer) -> RouteDecision {
    RouteDecision::Reject {
        status: rollover_sip::StatusCode::NOT_FOUND,
        reason: "No Rules".into(),
        rule: Arc::from("(none)"),
    }
}

fn example(name: &str) -> Arc<Script> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/lua")
        .join(name);
    Arc::new(Script::load(&path).unwrap())
}

/// Runs a call to `uri` through the example against `world`; the network afterwards.
fn run(name: &str, uri: &str, world: &str) -> Net<ScriptPolicy<Plan>> {
    let policy = ScriptPolicy::new(example(name), no_rules as Plan);
    let mut n = Net::with_policy(ProxyConfig::default(), policy, Box::new(SimResolver));
    n.answer_with(&World::parse(world).unwrap());
    n.call(udp(CALLER), invite_to(uri).unwrap().as_bytes().clone());
    n.run(Duration::from_secs(90));
    n
}

/// The address SimResolver gives `host`.
fn at(host: &str) -> String {
    SimResolver
        .resolve(host, 5060, Transport::Udp)
        .unwrap()
        .to_string()
}

/// The first INVITE sent to `host`.
fn invite(n: &Net<ScriptPolicy<Plan>>, host: &str) -> Option<Message> {
    n.sent_to(&at(host))
        .into_iter()
        .find(|m| m.method().is_some_and(|m| m.as_str() == "INVITE"))
        .cloned()
}

fn header(m: &Message, name: &str) -> Option<String> {
    m.headers_by_name(name)
        .next()
        .map(|h| m.value_unfolded(h).into_owned())
}

fn finals(n: &Net<ScriptPolicy<Plan>>) -> Vec<u16> {
    n.statuses_to(CALLER)
        .into_iter()
        .filter(|s| *s >= 200)
        .collect()
}

#[test]
fn voicemail_on_busy() {
    let n = run(
        "voicemail.lua",
        "sip:100@192.168.0.100",
        "100=180@1s,486@3s vm=200@1s",
    );
    let vm = invite(&n, "voicemail.example.com").expect("the voicemail is called");
    assert_eq!(header(&vm, "X-Voicemail-Reason").as_deref(), Some("busy"));
    assert_eq!(
        header(&vm, "X-Voicemail-For").as_deref(),
        Some("sip:100@192.168.0.100")
    );
    assert_eq!(finals(&n), [200], "the caller never sees the 486");
}

#[test]
fn voicemail_on_no_answer() {
    // Rings for longer than the 20 s ring timeout: CANCELled, then voicemail.
    let n = run(
        "voicemail.lua",
        "sip:100@192.168.0.100",
        "100=180@1s vm=200@1s",
    );
    let vm = invite(&n, "voicemail.example.com").expect("the voicemail is called");
    assert_eq!(
        header(&vm, "X-Voicemail-Reason").as_deref(),
        Some("no-answer")
    );
    assert_eq!(finals(&n), [200]);
}

#[test]
fn voicemail_leaves_other_failures_to_the_caller() {
    let n = run(
        "voicemail.lua",
        "sip:100@192.168.0.100",
        "100=404@1s vm=200@1s",
    );
    assert!(invite(&n, "voicemail.example.com").is_none());
    assert_eq!(finals(&n), [404]);
}

#[test]
fn carrier_failover_on_5xx_notes_the_attempt() {
    let n = run(
        "carrier-failover.lua",
        "sip:4930123@192.168.0.100",
        "carrier-a.example.net=503@1s carrier-b.example.net=500@1s carrier-c.example.net=200@1s",
    );
    let attempts: Vec<Option<String>> = ["carrier-a", "carrier-b", "carrier-c"]
        .iter()
        .map(|c| {
            header(
                &invite(&n, &format!("{c}.example.net")).unwrap(),
                "X-Attempt",
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [Some("1/3".into()), Some("2/3".into()), Some("3/3".into())]
    );
    assert_eq!(finals(&n), [200]);
}

#[test]
fn carrier_failover_stops_on_a_busy_number() {
    let n = run(
        "carrier-failover.lua",
        "sip:4930123@192.168.0.100",
        "carrier-a.example.net=486@1s carrier-b.example.net=200@1s",
    );
    assert!(invite(&n, "carrier-b.example.net").is_none());
    assert_eq!(finals(&n), [486]);
}

#[test]
fn least_cost_routing_rewrites_the_number_for_each_carrier() {
    let n = run(
        "lcr.lua",
        "sip:004930123@192.168.0.100",
        "cheap.example.net=503@1s mid.example.net=404@1s premium.example.net=200@1s",
    );
    let ruris: Vec<String> = ["cheap", "mid", "premium"]
        .iter()
        .map(|c| {
            invite(&n, &format!("{c}.example.net"))
                .unwrap()
                .request_uri_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ruris,
        [
            "sip:10104930123@cheap.example.net",
            "sip:+4930123@mid.example.net",
            "sip:004930123@premium.example.net",
        ]
    );
    assert_eq!(finals(&n), [200]);
}

#[test]
fn least_cost_routing_picks_by_the_longest_prefix() {
    let n = run(
        "lcr.lua",
        "sip:+442071234@192.168.0.100",
        "mid.example.net=200@1s",
    );
    assert!(invite(&n, "cheap.example.net").is_none());
    assert_eq!(
        invite(&n, "mid.example.net").unwrap().request_uri_str(),
        Some("sip:+442071234@mid.example.net")
    );
    assert_eq!(finals(&n), [200]);
}
