//! The virtual network the relay and call tests share: a proxy at PROXY whose dial plan
//! sends `sip:<digits>@…` to TARGET, an attacker and a victim. Nobody answers on its own:
//! each test plays the caller and the target.

#![allow(dead_code)] // each test file uses its own share

use std::sync::Arc;

use rollover_proxy::*;
use rollover_sip::{Message, StatusCode};
use rollover_txn::Peer;

pub use rollover_testkit::{addr, udp, Net, PROXY};

pub const VICTIM: &str = "203.0.113.66:5060";
pub const TARGET: &str = "192.0.2.10:5060";
pub const ATTACKER: &str = "198.51.100.66:5060";

/// The dial plan: `sip:<digits>@…` goes to TARGET; anything else is 404.
pub fn plan(req: &Message, _: &Peer) -> RouteDecision {
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
            status: StatusCode::NOT_FOUND,
            reason: "Not Found".into(),
            rule: Arc::from("(no match)"),
        },
    }
}

/// A dial plan as a function.
pub type Plan = fn(&Message, &Peer) -> RouteDecision;

/// The proxy with `security` and the plan.
pub fn net(security: SecurityConfig) -> Net<Plan> {
    net_with(
        ProxyConfig {
            security,
            ..ProxyConfig::default()
        },
        plan,
    )
}

/// The proxy with `cfg` and `plan`, names resolved literally.
pub fn net_with(cfg: ProxyConfig, plan: Plan) -> Net<Plan> {
    net_with_resolver(cfg, plan, Box::new(LiteralResolver))
}

pub fn net_with_resolver(
    cfg: ProxyConfig,
    plan: Plan,
    resolver: Box<dyn Resolver + Send>,
) -> Net<Plan> {
    Net::with_policy(cfg, plan, resolver)
}

/// The proxy with the default settings and the plan.
pub fn open() -> Net<Plan> {
    net(SecurityConfig::default())
}

pub fn nothing_to_victim<P: RoutePolicy>(n: &Net<P>) {
    let v = n.sent_to(VICTIM);
    assert!(v.is_empty(), "relayed to the victim: {v:?}");
}

pub fn request(method: &str, ruri: &str, to_tag: Option<&str>, extra: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {ATTACKER};branch=z9hG4bK-{method}-{}\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag=att\nTo: <sip:b@example.com>{to_tag}\nCall-ID: attack-{method}@example.com\nCSeq: 1 {method}\nContact: <sip:a@{ATTACKER}>\n{extra}Content-Length: 0\n\n",
        ruri.len()
    )
}
