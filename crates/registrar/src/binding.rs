//! A binding: one contact registered for an address-of-record (RFC 3261 §10.3).

use std::fmt;
use std::net::SocketAddr;

use rollover_sip::{Host, SipUri, Uri};
use rollover_txn::{Peer, Transport};

/// One contact bound to an address-of-record, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record, normalised by [`aor_key`] (`sip:alice@example.com`).
    pub aor: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Its preference in thousandths (`q=0.5` is 500); 1000 when absent.
    pub q: u16,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The Call-ID of the REGISTER that made or last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// That REGISTER's CSeq number.
    pub cseq: u32,
    /// The Path of that REGISTER (RFC 3327), top first: the route to reach the contact.
    pub path: Vec<String>,
    /// Where that REGISTER came from: the flow a call to a phone behind NAT goes back on.
    pub received: Option<Peer>,
}

impl Binding {
    /// Whether it is still valid at `now` (seconds since the epoch).
    pub fn is_alive(&self, now: u64) -> bool {
        self.expires_at > now
    }

    /// Seconds left at `now`.
    pub fn remaining(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }
}

/// The key an address-of-record is stored under: `sip:user@host`, the host in lower case,
/// without port, parameters or headers (`sips:` counts as `sip:`); `None` for a URI that
/// is not a SIP URI with a user part.
pub fn aor_key(uri: &Uri<'_>) -> Option<String> {
    let sip = uri.as_sip()?;
    aor_of_sip(sip)
}

/// [`aor_key`] of a SIP URI.
pub fn aor_of_sip(sip: &SipUri<'_>) -> Option<String> {
    let user = sip.user?;
    let host = match sip.host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        h => h.to_string(),
    };
    Some(format!("sip:{user}@{host}"))
}

/// The domain of an address-of-record key.
pub fn aor_domain(aor: &str) -> &str {
    aor.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The text a received flow is stored as: `UDP 192.0.2.1:5060`.
pub(crate) fn flow_text(p: &Peer) -> String {
    format!("{} {}", p.transport.as_str(), p.addr)
}

/// A stored flow read back.
pub(crate) fn parse_flow(s: &str) -> Option<Peer> {
    let (t, a) = s.split_once(' ')?;
    let transport = match t {
        "UDP" => Transport::Udp,
        "TCP" => Transport::Tcp,
        "TLS" => Transport::Tls,
        _ => return None,
    };
    let addr: SocketAddr = a.parse().ok()?;
    Some(Peer { transport, addr })
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} q={}", self.aor, self.contact, QValue(self.q))
    }
}

/// A q value in thousandths, written the way RFC 3261 §20.10 does (`1`, `0.5`, `0.25`).
#[derive(Debug, Clone, Copy)]
pub struct QValue(pub u16);

impl fmt::Display for QValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1000 {
            return f.write_str("1");
        }
        let frac = format!("{:03}", self.0);
        write!(f, "0.{}", frac.trim_end_matches('0').max("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_keys_ignore_port_params_and_host_case() {
        let u = Uri::parse("sips:alice@Example.COM:5061;transport=tcp").unwrap();
        assert_eq!(aor_key(&u).as_deref(), Some("sip:alice@example.com"));
        assert_eq!(aor_key(&Uri::parse("sip:example.com").unwrap()), None);
        assert_eq!(aor_domain("sip:alice@example.com"), "example.com");
    }

    #[test]
    fn q_values_print_short() {
        assert_eq!(QValue(1000).to_string(), "1");
        assert_eq!(QValue(500).to_string(), "0.5");
        assert_eq!(QValue(250).to_string(), "0.25");
        assert_eq!(QValue(0).to_string(), "0.0");
    }

    #[test]
    fn flows_round_trip() {
        let p = Peer {
            transport: Transport::Tcp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        };
        assert_eq!(parse_flow(&flow_text(&p)), Some(p));
    }
}
