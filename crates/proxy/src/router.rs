//! What the proxy core asks of its surroundings: where to send a request (the dial plan).
//! Name resolution (`Resolver`) lives with the failover engine, which the user agent
//! shares.

use std::sync::Arc;

use rollover_failover::{default_port, FailoverPolicy, Resolver, Target, TargetPlan};
use rollover_sip::{Host, Message, StatusCode};
use rollover_txn::Peer;

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
        status: StatusCode,
        /// The reason phrase.
        reason: String,
        /// The rule's name, for logs.
        rule: Arc<str>,
    },
    /// Send nothing, not even a reply (a script's `drop`): the request is forgotten, and a
    /// retransmission of it is routed again.
    Drop {
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
