//! Where a call may be sent: the hosts a `${ruri}` target or a 3xx Contact may name.
//!
//! A dial plan names its targets' hosts itself; two kinds of target come from outside it
//! and need a fence: `${ruri}` (the Request-URI as the caller wrote it) and the Contacts of a
//! redirect (what a target answered). Without one, `INVITE sip:100@ATTACKER` and a 302 from
//! there send the call anywhere the attacker says.

use std::fmt;
use std::net::IpAddr;

use rollover_sip::{Host, SipUri};

use crate::cidr::Cidr;

/// Address blocks and host names a target may name.
///
/// An IP host is allowed by a block that contains it; a host name by the same name
/// (case-insensitive) or, for an entry written `.example.net`, by any name under it. No DNS
/// look-up is made: a name is not matched against blocks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    nets: Vec<Cidr>,
    names: Vec<String>,
    /// Written by the operator (`reach = […]`), as opposed to the hosts the plan names.
    pub explicit: bool,
}

/// A `reach` entry that is neither an address block nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address, an address block (10.0.0.0/8) or a host name (carrier.example.net, .example.net)")]
pub struct ReachError(pub String);

impl Reach {
    /// The operator's list.
    pub fn parse(entries: &[&str]) -> Result<Reach, ReachError> {
        let mut r = Reach {
            explicit: true,
            ..Reach::default()
        };
        for e in entries {
            r.add(e)?;
        }
        Ok(r)
    }

    /// The hosts a dial plan names (its default reach).
    pub fn named<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Reach {
        let mut r = Reach::default();
        for h in hosts {
            let _ = r.add(h);
        }
        r
    }

    fn add(&mut self, entry: &str) -> Result<(), ReachError> {
        let e = entry.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(c) = e.parse::<Cidr>() {
            if !self.nets.contains(&c) {
                self.nets.push(c);
            }
            return Ok(());
        }
        let name = e.strip_prefix('.').unwrap_or(e);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
        if !valid {
            return Err(ReachError(entry.to_owned()));
        }
        let lower = e.to_ascii_lowercase();
        if !self.names.contains(&lower) {
            self.names.push(lower);
        }
        Ok(())
    }

    /// Whether `host` (an IP address or a name, as written in a URI) may be called.
    pub fn allows_host(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.nets.iter().any(|c| c.contains(ip));
        }
        let host = bare.to_ascii_lowercase();
        self.names.iter().any(|n| match n.strip_prefix('.') {
            Some(domain) => host.ends_with(n.as_str()) || host == domain,
            None => *n == host,
        })
    }

    /// Whether the host a SIP URI sends to (its `maddr` when it has one) may be called.
    pub fn allows_uri(&self, uri: &str) -> bool {
        match SipUri::parse(uri) {
            Ok(u) => self.allows_host(&host_of(&u)),
            Err(_) => false,
        }
    }
}

/// The host a request for `uri` goes to: its `maddr`, else its host.
pub(crate) fn host_of(u: &SipUri<'_>) -> String {
    match (u.maddr(), u.host) {
        (Some(m), _) => m.to_owned(),
        (None, Host::V6(ip)) => ip.to_string(),
        (None, h) => h.to_string(),
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .nets
            .iter()
            .map(ToString::to_string)
            .chain(self.names.iter().cloned())
            .collect();
        write!(f, "[{}]", items.join(", "))
    }
}

/// Whether an address may never be a target: multicast, broadcast, unspecified.
pub fn never_a_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_names_and_subdomains() {
        let r = Reach::parse(&["192.168.0.0/24", "carrier.example.net", ".trunk.example"]).unwrap();
        assert!(r.explicit);
        assert!(r.allows_host("192.168.0.7"));
        assert!(!r.allows_host("192.168.1.7"));
        assert!(r.allows_host("Carrier.Example.NET"));
        assert!(!r.allows_host("evil-carrier.example.net"));
        assert!(r.allows_host("a.trunk.example") && r.allows_host("trunk.example"));
        assert!(!r.allows_host("atrunk.example"));
        assert!(r.allows_uri("sip:100@192.168.0.9:5070;transport=tcp"));
        assert!(
            !r.allows_uri("sip:100@192.168.0.9;maddr=203.0.113.66"),
            "maddr is where it goes"
        );
        assert!(!r.allows_uri("sip:100@203.0.113.66"));
        assert!(Reach::parse(&["not a host!"]).is_err());
        let named = Reach::named(["192.168.0.101", "gw.example.com"]);
        assert!(!named.explicit);
        assert!(named.allows_host("192.168.0.101") && named.allows_host("gw.example.com"));
        assert!(!named.allows_host("192.168.0.100"));
    }

    #[test]
    fn multicast_broadcast_and_unspecified_are_never_targets() {
        for a in ["224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::"] {
            assert!(never_a_target(a.parse().unwrap()), "{a}");
        }
        assert!(!never_a_target("192.0.2.1".parse().unwrap()));
    }
}
