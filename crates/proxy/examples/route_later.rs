//! A routing policy that answers later, the way a location-store look-up does: the proxy
//! core asks, the owner answers when the store has replied, and only that call waits.
//!
//! Runs the sans-IO core in virtual time (no sockets) and prints every message it sends:
//!
//! ```sh
//! cargo run -p rollover-proxy --example route_later
//! ```

#![allow(clippy::expect_used, clippy::panic)] // an example: a broken invariant should stop it loudly

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rollover_proxy::{
    FailoverPolicy, LiteralResolver, Proxy, ProxyConfig, Question, RouteDecision, RoutePolicy,
    Target, TargetPlan,
};
use rollover_sip::{Limits, Message, StatusCode};
use rollover_txn::{Config, FrontDoor, Peer, Transport, TxnLayer};

/// Every INVITE needs the store: answer later.
struct AskTheStore;

impl RoutePolicy for AskTheStore {
    fn on_request(&mut self, _: &Message, _: &Peer) -> RouteDecision {
        RouteDecision::Later
    }
}

fn udp(s: &str) -> Peer {
    let addr: SocketAddr = s.parse().expect("a literal address");
    Peer {
        transport: Transport::Udp,
        addr,
    }
}

fn main() {
    let proxy_addr = udp("192.0.2.1:5060");
    let cfg = ProxyConfig {
        local: vec![(Transport::Udp, proxy_addr.addr)],
        ..ProxyConfig::default()
    };
    let mut proxy = Proxy::new(cfg, AskTheStore, Box::new(LiteralResolver));
    let mut txn = TxnLayer::new(Config::default());
    let mut door = FrontDoor::new(Limits::default());
    #[allow(clippy::disallowed_methods)] // an origin for virtual time
    let mut now = Instant::now();
    // The "store": who is where.
    let store: HashMap<&str, &str> = HashMap::from([("alice", "sip:alice@192.0.2.20:5060")]);

    let invite = "INVITE sip:alice@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\nCall-ID: later-example\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@198.51.100.1:5060>\r\nContent-Length: 0\r\n\r\n";
    door.handle(
        now,
        &mut proxy,
        &mut txn,
        udp("198.51.100.1:5060"),
        invite.into(),
        0,
    );
    show(&mut proxy, &mut txn, now);

    // The owner polls the question and asks the store, which answers 300 ms later.
    let Some(Question::Route { id, request, .. }) = proxy.poll_question() else {
        panic!("the core asks how to route the INVITE");
    };
    now += Duration::from_millis(300);
    let user = request
        .request_uri()
        .and_then(Result::ok)
        .and_then(|u| u.as_sip().and_then(|s| s.user).map(str::to_owned))
        .unwrap_or_default();
    let decision = match store.get(user.as_str()) {
        Some(contact) => RouteDecision::Targets {
            plan: TargetPlan::serial(vec![Target::parse(contact).expect("a stored contact")]),
            policy: FailoverPolicy::default(),
            rule: "location".into(),
        },
        None => RouteDecision::Reject {
            status: StatusCode::NOT_FOUND,
            reason: StatusCode::NOT_FOUND.reason().into(),
            rule: "location".into(),
        },
    };
    println!("-- {:.1} s: the store answered for {user:?}", 0.3);
    proxy.answer_route(now, id, decision, &mut txn);
    show(&mut proxy, &mut txn, now);
}

/// Runs the layers until quiet and prints what went out.
fn show(proxy: &mut Proxy<AskTheStore>, txn: &mut TxnLayer, now: Instant) {
    loop {
        let mut busy = false;
        while let Some(ev) = txn.poll_event() {
            busy = true;
            proxy.handle_txn_event(now, ev, txn);
        }
        while let Some(t) = txn.poll_transmit() {
            busy = true;
            let first = t.bytes.split(|b| *b == b'\r').next().unwrap_or_default();
            println!("to {}: {}", t.dest.addr, String::from_utf8_lossy(first));
        }
        if !busy {
            return;
        }
    }
}
