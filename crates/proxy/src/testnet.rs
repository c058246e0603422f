//! A proxy core on a virtual network for tests: messages in through [`Proxy::admit`] as the
//! driver sends them, everything it sends recorded with its destination, time that jumps
//! from deadline to deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_sip::Message;
use rollover_txn::{Admit, Config, Peer, Transport, TxnLayer};

use crate::*;

pub(crate) const PROXY: &str = "192.0.2.1:5060";
pub(crate) const VICTIM: &str = "203.0.113.66:5060";
pub(crate) const TARGET: &str = "192.0.2.10:5060";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

/// The dial plan: `sip:<digits>@…` goes to TARGET; anything else is 404.
pub(crate) fn plan(req: &Message, _: &Peer) -> RouteDecision {
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

/// A dial plan as a function.
pub(crate) type Plan = fn(&Message, &Peer) -> RouteDecision;

pub(crate) struct Net<P = Plan> {
    pub(crate) proxy: Proxy<P>,
    pub(crate) txn: TxnLayer,
    pub(crate) now: Instant,
    /// Everything the proxy sent, with its destination.
    pub(crate) sent: Vec<(Peer, Message)>,
    /// The transaction each of those was sent by, if any.
    pub(crate) refs: Vec<Option<rollover_txn::TxnRef>>,
}

impl Net {
    pub(crate) fn new(security: SecurityConfig) -> Net {
        Net::with(
            ProxyConfig {
                security,
                ..ProxyConfig::default()
            },
            plan,
        )
    }

    pub(crate) fn with(cfg: ProxyConfig, plan: fn(&Message, &Peer) -> RouteDecision) -> Net {
        Net::with_resolver(cfg, plan, Box::new(LiteralResolver))
    }

    pub(crate) fn with_resolver(
        cfg: ProxyConfig,
        plan: Plan,
        resolver: Box<dyn Resolver + Send>,
    ) -> Net {
        Net::with_policy(cfg, plan, resolver)
    }

    pub(crate) fn open() -> Net {
        Net::new(SecurityConfig::default())
    }
}

impl<P: RoutePolicy> Net<P> {
    /// A proxy asking `policy` (any routing policy, not just a plan).
    pub(crate) fn with_policy(
        cfg: ProxyConfig,
        policy: P,
        resolver: Box<dyn Resolver + Send>,
    ) -> Net<P> {
        let local = addr(PROXY);
        let cfg = ProxyConfig {
            local: vec![(Transport::Udp, local), (Transport::Tcp, local)],
            ..cfg
        };
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; later times are virtual
        let now = Instant::now();
        Net {
            proxy: Proxy::new(cfg, policy, resolver),
            txn: TxnLayer::new(Config::default()),
            now,
            sent: Vec::new(),
            refs: Vec::new(),
        }
    }

    pub(crate) fn pump(&mut self) {
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
    pub(crate) fn recv(&mut self, from: Peer, text: &str) {
        self.recv_bytes(from, text.replace('\n', "\r\n").into());
    }

    pub(crate) fn recv_bytes(&mut self, from: Peer, bytes: bytes::Bytes) {
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
    pub(crate) fn run(&mut self, d: Duration) {
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

    pub(crate) fn sent_to(&self, a: &str) -> Vec<&Message> {
        let a = addr(a);
        self.sent
            .iter()
            .filter(|(p, _)| p.addr.ip() == a.ip())
            .map(|(_, m)| m)
            .collect()
    }

    pub(crate) fn statuses_to(&self, a: &str) -> Vec<u16> {
        self.sent_to(a).iter().filter_map(|m| m.status()).collect()
    }

    pub(crate) fn nothing_to_victim(&self) {
        let v = self.sent_to(VICTIM);
        assert!(v.is_empty(), "relayed to the victim: {v:?}");
    }
}

pub(crate) const ATTACKER: &str = "198.51.100.66:5060";

pub(crate) fn request(method: &str, ruri: &str, to_tag: Option<&str>, extra: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {ATTACKER};branch=z9hG4bK-{method}-{}\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag=att\nTo: <sip:b@example.com>{to_tag}\nCall-ID: attack-{method}@example.com\nCSeq: 1 {method}\nContact: <sip:a@{ATTACKER}>\n{extra}Content-Length: 0\n\n",
        ruri.len()
    )
}
