//! What the proxy core asks of its surroundings: where to send a request (the dial plan).
//! Name resolution (`Resolver`) lives with the failover engine, which the user agent
//! shares.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rollover_failover::{default_port, FailoverPolicy, Resolver, Target, TargetError, TargetPlan};
use rollover_sip::{Host, Message, StatusCode};
use rollover_txn::{Peer, Transport};

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

/// The next hops of the targets sent to lately, so that a target's URI is read once rather
/// than on every branch and check to it (a dial plan names a few targets, an in-dialog
/// request's hop is checked and then sent to, a registered phone is called again and
/// again). Bounded: emptied when full. Keyed with a random seed (the URIs come from
/// outside).
/// An in-dialog request's hop URI (its next Route entry or Request-URI, the same for
/// every request of a dialog and often for every call to one phone) is read as a target
/// once too.
#[derive(Debug, Default)]
pub(crate) struct Hops {
    hops: HashMap<String, (Transport, Option<NextHop>), ahash::RandomState>,
    targets: HashMap<String, Target, ahash::RandomState>,
}

impl Hops {
    const MAX: usize = 4096;

    /// [`next_hop`], remembered.
    pub(crate) fn of(&mut self, target: &Target) -> Option<NextHop> {
        if let Some((transport, hop)) = self.hops.get(target.uri.as_str()) {
            if *transport == target.transport {
                return hop.clone();
            }
        }
        let hop = next_hop(target);
        if self.hops.len() >= Hops::MAX {
            self.hops.clear();
        }
        self.hops
            .insert(target.uri.clone(), (target.transport, hop.clone()));
        hop
    }

    /// [`Target::parse`], remembered when it succeeds.
    pub(crate) fn target(&mut self, uri: &str) -> Result<Target, TargetError> {
        if let Some(t) = self.targets.get(uri) {
            return Ok(t.clone());
        }
        let t = Target::parse(uri)?;
        if self.targets.len() >= Hops::MAX {
            self.targets.clear();
        }
        self.targets.insert(uri.to_owned(), t.clone());
        Ok(t)
    }
}

/// Where to send a request for `target`, when the address is known now.
pub(crate) fn destination(
    hops: &mut Hops,
    target: &Target,
    resolver: &dyn Resolver,
) -> Option<Peer> {
    let addr = match hops.of(target)? {
        NextHop::Addr(a) => a,
        NextHop::Name(host, port) => resolver.resolve(&host, port, target.transport)?,
    };
    Some(Peer {
        transport: target.transport,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_remembered_per_transport_and_bounded() {
        let mut hops = Hops::default();
        let t = |s: &str| Target::parse(s).unwrap();
        let udp = t("sip:100@192.0.2.1");
        let tls = Target {
            transport: Transport::Tls,
            ..udp.clone()
        };
        let addr = |p: u16| Some(NextHop::Addr(SocketAddr::new([192, 0, 2, 1].into(), p)));
        assert_eq!(hops.of(&udp), addr(5060));
        assert_eq!(hops.of(&udp), addr(5060));
        // The same URI on another transport has another default port.
        assert_eq!(hops.of(&tls), addr(5061));
        assert_eq!(hops.of(&udp), addr(5060));
        let named = t("sip:100@example.com:5070;maddr=192.0.2.9");
        assert_eq!(
            hops.of(&named),
            Some(NextHop::Addr(SocketAddr::new([192, 0, 2, 9].into(), 5070)))
        );
        assert_eq!(
            hops.of(&t("sip:100@example.com")),
            Some(NextHop::Name("example.com".into(), 5060))
        );
        assert_eq!(hops.of(&Target::location()), None);
        // Whatever is sent to, the memory stays bounded.
        for i in 0..Hops::MAX + 10 {
            let uri = format!("sip:{i}@192.0.2.2");
            hops.of(&t(&uri));
            assert_eq!(hops.target(&uri).unwrap(), t(&uri));
        }
        assert!(hops.hops.len() <= Hops::MAX && hops.targets.len() <= Hops::MAX);
        assert_eq!(hops.of(&udp), addr(5060));
        // A target read from the cache is the one parsed; what does not parse is refused
        // every time.
        for uri in [
            "sip:100@192.0.2.1/TCP",
            "sip:100@192.0.2.1/TCP",
            "sips:a@example.com",
        ] {
            assert_eq!(hops.target(uri).unwrap(), t(uri));
        }
        assert!(hops.target("tel:+123").is_err());
        assert!(hops.target("tel:+123").is_err());
    }
}
