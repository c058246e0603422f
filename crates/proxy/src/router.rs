//! What the proxy core asks of its surroundings: where to send a request (the dial plan).
//! Name resolution (`Resolver`) lives with the failover engine, which the user agent
//! shares.

use std::net::{IpAddr, SocketAddr};
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

/// Where a request for a target goes: its address, when the host (its `maddr` if any) is
/// an IP address, or a name to resolve and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextHop {
    /// An IP address as written: no resolver is asked.
    Addr(SocketAddr),
    /// A host name and the port.
    Name(String, u16),
}

/// The next hop of `target` (RFC 3263 §4: `maddr`, else the host; the port, else the
/// transport's default).
pub(crate) fn next_hop(target: &Target) -> Option<NextHop> {
    let uri = target.sip_uri()?;
    let port = uri.port.unwrap_or(default_port(target.transport));
    let ip: IpAddr = match (uri.maddr(), uri.host) {
        (Some(m), _) => match m.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => ip,
            Err(_) => return Some(NextHop::Name(m.to_owned(), port)),
        },
        (None, Host::V4(ip)) => ip.into(),
        (None, Host::V6(ip)) => ip.into(),
        (None, Host::Domain(d)) => return Some(NextHop::Name(d.to_owned(), port)),
    };
    Some(NextHop::Addr(SocketAddr::new(ip, port)))
}

/// Where to send a request for `target`, when the address is known now.
pub(crate) fn destination(target: &Target, resolver: &dyn Resolver) -> Option<Peer> {
    let addr = match next_hop(target)? {
        NextHop::Addr(a) => a,
        NextHop::Name(host, port) => resolver.resolve(&host, port, target.transport)?,
    };
    Some(Peer {
        transport: target.transport,
        addr,
    })
}
