//! Name resolution at the edge: the proxy core asks, this answers.
//!
//! IP literals and names already looked up are answered at once (their TTL honoured,
//! negative answers kept for [`NEGATIVE_TTL`]). Any other name is a question the core
//! hands to the driver: it is looked up with hickory-resolver in a task of its own, so a
//! slow DNS server delays only the call that needs that name, never the runtime thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollover_proxy::{Resolved, Resolver};
use rollover_txn::Transport;

/// How long "no such name" is believed.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Longest wait for one look-up, whatever the resolver's own retries.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(10);

/// Names most kept at once; past it, expired ones are dropped first, then everything.
const MAX_NAMES: usize = 10_000;

/// A name's addresses (empty: none) and until when they hold.
type Answer = (Vec<IpAddr>, Instant);

/// Answers known now, shared by the core's resolver and the driver that fills it.
#[derive(Clone, Default)]
pub struct DnsCache {
    names: Arc<Mutex<HashMap<String, Answer>>>,
}

impl DnsCache {
    /// Records an answer (empty: the name has no address) valid until `until`.
    pub fn insert(&self, host: &str, addrs: Vec<IpAddr>, until: Instant) {
        if let Ok(mut m) = self.names.lock() {
            if m.len() >= MAX_NAMES {
                #[allow(clippy::disallowed_methods)] // the edge: real time
                let now = Instant::now();
                m.retain(|_, (_, t)| *t > now);
                if m.len() >= MAX_NAMES {
                    m.clear();
                }
            }
            m.insert(host.to_ascii_lowercase(), (addrs, until));
        }
    }

    fn get(&self, host: &str) -> Option<Vec<IpAddr>> {
        #[allow(clippy::disallowed_methods)] // the edge: real time
        let now = Instant::now();
        let m = self.names.lock().ok()?;
        let (addrs, until) = m.get(&host.to_ascii_lowercase())?;
        (*until > now).then(|| addrs.clone())
    }
}

fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

impl Resolver for DnsCache {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        let ip = literal(host).or_else(|| self.get(host)?.first().copied())?;
        Some(SocketAddr::new(ip, port))
    }

    fn lookup(&self, host: &str, port: u16, _: Transport) -> Resolved {
        if let Some(ip) = literal(host) {
            return Resolved::Addrs(vec![SocketAddr::new(ip, port)]);
        }
        match self.get(host) {
            Some(a) if a.is_empty() => Resolved::NotFound,
            Some(a) => Resolved::Addrs(a.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            None => Resolved::Ask,
        }
    }
}

/// Looks `host` up; the addresses and until when they hold (an empty list: none, for
/// [`NEGATIVE_TTL`]).
pub async fn look_up(
    resolver: Option<&hickory_resolver::TokioResolver>,
    host: &str,
) -> (Vec<IpAddr>, Instant) {
    #[allow(clippy::disallowed_methods)] // the edge: real time
    let now = Instant::now();
    let Some(resolver) = resolver else {
        return (Vec::new(), now + NEGATIVE_TTL);
    };
    match tokio::time::timeout(LOOKUP_LIMIT, resolver.lookup_ip(host)).await {
        Ok(Ok(found)) => (found.iter().collect(), found.valid_until()),
        Ok(Err(e)) => {
            tracing::info!("{host}: no address ({e})");
            (Vec::new(), now + NEGATIVE_TTL)
        }
        Err(_) => {
            tracing::info!("{host}: no answer within {}s", LOOKUP_LIMIT.as_secs());
            (Vec::new(), now + NEGATIVE_TTL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_cached_answers_are_known_others_are_asked() {
        let c = DnsCache::default();
        let t = Transport::Udp;
        assert_eq!(
            c.lookup("192.0.2.1", 5060, t),
            Resolved::Addrs(vec!["192.0.2.1:5060".parse().unwrap()])
        );
        assert_eq!(
            c.lookup("[::1]", 5061, t),
            Resolved::Addrs(vec!["[::1]:5061".parse().unwrap()])
        );
        assert_eq!(c.lookup("carrier.example.net", 5060, t), Resolved::Ask);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let two: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap()];
        c.insert("Carrier.Example.NET", two, now + Duration::from_secs(60));
        assert_eq!(
            c.lookup("carrier.example.net", 5070, t),
            Resolved::Addrs(vec![
                "192.0.2.7:5070".parse().unwrap(),
                "192.0.2.8:5070".parse().unwrap()
            ])
        );
        assert_eq!(
            c.resolve("carrier.example.net", 5070, t),
            Some("192.0.2.7:5070".parse().unwrap())
        );
        c.insert("nx.example.net", vec![], now + NEGATIVE_TTL);
        assert_eq!(c.lookup("nx.example.net", 5060, t), Resolved::NotFound);
        // An answer past its TTL is asked again.
        c.insert("old.example.net", vec!["192.0.2.9".parse().unwrap()], now);
        assert_eq!(c.lookup("old.example.net", 5060, t), Resolved::Ask);
    }
}
