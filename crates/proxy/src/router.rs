//! What the proxy core asks of its surroundings: where to send a request (the dial plan)
//! and what address a host name has.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rollover_sip::{Host, Message};
use rollover_txn::{Peer, Transport};

use crate::policy::FailoverPolicy;
use crate::target::{Target, TargetPlan};

/// The routing decision for a new request.
#[derive(Debug, Clone)]
pub enum RouteDecision {
    /// Try these targets with this policy.
    Targets {
        /// The groups of targets, in order.
        plan: TargetPlan,
        /// Timers, pattern and redirect rule for this call.
        policy: FailoverPolicy,
        /// The rule's name, for logs.
        rule: Arc<str>,
    },
    /// Answer the request with this status.
    Reject {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The rule's name, for logs.
        rule: Arc<str>,
    },
    /// The answer comes later (a store look-up, a script waiting on something): the core
    /// asks [`crate::Question::Route`] and the owner answers with
    /// [`crate::Proxy::answer_route`]. Only this request waits.
    Later,
}

/// Decides the targets of a request that is not inside a dialog (the dial plan).
pub trait Router {
    /// Routes one request received from `source`.
    fn route(&self, request: &Message, source: &Peer) -> RouteDecision;
}

impl<F: Fn(&Message, &Peer) -> RouteDecision> Router for F {
    fn route(&self, request: &Message, source: &Peer) -> RouteDecision {
        self(request, source)
    }
}

/// What a resolver knows of a host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Its addresses, in the order to try them.
    Addrs(Vec<SocketAddr>),
    /// It has none (a negative answer).
    NotFound,
    /// Not known yet: the core asks its owner ([`crate::Question::Resolve`]) and carries on
    /// with other calls; the answer comes back through [`crate::Proxy::answer_resolve`].
    Ask,
}

/// Turns a host into addresses. The core asks synchronously; a resolver that must look a
/// name up answers [`Resolved::Ask`] and the question goes to the driver.
pub trait Resolver {
    /// The address of `host` on `transport`, with `port` already defaulted, when it is known
    /// now (IP literals, cached answers).
    fn resolve(&self, host: &str, port: u16, transport: Transport) -> Option<SocketAddr>;

    /// Every address of `host`, or [`Resolved::Ask`] when it must be looked up. The default
    /// answers from [`Resolver::resolve`].
    fn lookup(&self, host: &str, port: u16, transport: Transport) -> Resolved {
        match self.resolve(host, port, transport) {
            Some(a) => Resolved::Addrs(vec![a]),
            None => Resolved::NotFound,
        }
    }
}

/// Resolves IP literals only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiteralResolver;

impl Resolver for LiteralResolver {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
    }
}

/// The default port of a transport (RFC 3261 §19.1.2).
pub fn default_port(transport: Transport) -> u16 {
    if transport == Transport::Tls {
        5061
    } else {
        5060
    }
}

/// The host (its `maddr` if any), port and transport a request for `target` goes to.
pub(crate) fn next_hop(target: &Target) -> Option<(String, u16)> {
    let uri = target.sip_uri()?;
    let port = uri.port.unwrap_or(default_port(target.transport));
    let host = match (uri.maddr(), uri.host) {
        (Some(m), _) => m.to_owned(),
        (None, Host::V6(ip)) => ip.to_string(),
        (None, h) => h.to_string(),
    };
    Some((host, port))
}

/// Where to send a request for `target`, when the address is known now.
pub(crate) fn destination(target: &Target, resolver: &dyn Resolver) -> Option<Peer> {
    let (host, port) = next_hop(target)?;
    let addr = resolver.resolve(&host, port, target.transport)?;
    Some(Peer {
        transport: target.transport,
        addr,
    })
}
