//! What an owner of the engine asks of its surroundings: what address a host name has.

use std::net::{IpAddr, SocketAddr};

use rollover_txn::Transport;

/// What a resolver knows of a host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Its addresses, in the order to try them.
    Addrs(Vec<SocketAddr>),
    /// It has none (a negative answer).
    NotFound,
    /// Not known yet: the core asks its owner (the proxy's `Question::Resolve`) and carries
    /// on with other calls; the answer comes back later (`Proxy::answer_resolve`).
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
