//! The unit a source is counted by in flood and connection limits: an IPv4 address, or an
//! IPv6 /64. One IPv6 host (or one site, RFC 6177) holds a whole /64 and can send from any
//! of its 2^64 addresses, so a limit kept per IPv6 address would give it a fresh budget per
//! datagram; the UDP workers are picked the same way (`rollover-net`'s `steer`).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A source as limits count it: an IPv4 address, or the /64 an IPv6 address lies in
/// (IPv4-mapped IPv6 addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Site(IpAddr);

impl Site {
    /// The site `ip` belongs to.
    pub fn of(ip: IpAddr) -> Site {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Site(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !u128::from(u64::MAX);
                Site(IpAddr::V6(Ipv6Addr::from(net)))
            }
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Site;

    fn site(s: &str) -> Site {
        Site::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_one_site_and_ipv4_addresses_are_their_own() {
        assert_eq!(site("2001:db8:1:2::1"), site("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(site("2001:db8:1:2::1"), site("2001:db8:1:3::1"));
        assert_ne!(site("10.0.0.1"), site("10.0.0.2"));
        assert_eq!(site("::ffff:10.0.0.1"), site("10.0.0.1"));
        assert_eq!(
            site("2001:db8:1:2:3:4:5:6").to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(site("10.0.0.1").to_string(), "10.0.0.1");
    }
}
