//! `listen` entries: `udp:0.0.0.0:5060 advertise 198.51.100.7:5060`.

use std::net::SocketAddr;

use rollover_txn::Transport;

/// One `listen` entry: where to bind, and the address to write in Via and Record-Route
/// when it is not the bound one (a wildcard bind, or a public address behind NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// The transport.
    pub transport: Transport,
    /// The address bound.
    pub addr: SocketAddr,
    /// The address advertised, as Kamailio's `listen = udp:IP:PORT advertise IP:PORT`.
    pub advertise: Option<SocketAddr>,
}

/// Parses `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:0.0.0.0:5061 advertise 198.51.100.7:5061`.
/// A wildcard address needs `advertise`: Via and Record-Route must name an address peers
/// can reach.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let (bind, advertise) = match s.split_once(" advertise ") {
        Some((b, a)) => (b.trim(), Some(a.trim())),
        None => (s.trim(), None),
    };
    let (t, addr) = bind
        .split_once(':')
        .ok_or("expected transport:address:port, e.g. udp:127.0.0.1:5060")?;
    let transport = Transport::from_token(t)
        .ok_or_else(|| format!("unknown transport {t:?} (udp, tcp or tls)"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address:port (IPv6 in brackets)"))?;
    let advertise = match advertise {
        None => None,
        Some(a) => {
            let a: SocketAddr = a
                .parse()
                .map_err(|_| format!("advertise {a:?} is not an IP address:port"))?;
            if a.ip().is_unspecified() {
                return Err(format!(
                    "advertise {a}: a wildcard address cannot be reached"
                ));
            }
            Some(a)
        }
    };
    if addr.ip().is_unspecified() && advertise.is_none() {
        return Err(format!(
            "{bind} listens on every address, so Via and Record-Route need the one peers reach: write \"{bind} advertise <that IP>:{}\"",
            addr.port()
        ));
    }
    Ok(Listen {
        transport,
        addr,
        advertise,
    })
}
