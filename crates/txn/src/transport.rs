//! Where messages come from and go to, as the transaction layer sees it.

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Transport {
    /// UDP: unreliable, the transaction layer retransmits.
    Udp,
    /// TCP: reliable.
    Tcp,
    /// TLS over TCP: reliable.
    Tls,
}

impl Transport {
    /// Reliable transports get no retransmissions and zero-length wait timers (§17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Parses a Via / URI transport token (case-insensitive).
    pub fn from_token(s: &str) -> Option<Transport> {
        if s.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else if s.eq_ignore_ascii_case("tls") {
            Some(Transport::Tls)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A remote address on a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub transport: Transport,
    /// The remote socket address.
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Why a transport could not deliver a message (reported by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer refused the connection, or ICMP port unreachable on UDP.
    #[error("connection refused")]
    Refused,
    /// The connection was reset or closed before the transaction ended.
    #[error("connection reset")]
    Reset,
    /// The TLS handshake failed.
    #[error("TLS handshake failed")]
    Tls,
    /// The destination could not be reached (no route, DNS failure).
    #[error("destination unreachable")]
    Unreachable,
}
