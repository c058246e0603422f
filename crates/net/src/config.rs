//! What to listen on and how to behave: [`ListenSpec`], [`NetConfig`], and the errors
//! [`Transports::bind`](crate::Transports::bind) reports.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rollover_txn::Transport;

/// One listening socket, parsed from `"udp:127.0.0.1:5060"`, `"tcp:[::1]:5060"` or
/// `"tls:0.0.0.0:5061"`.
///
/// Port 0 asks the system for a free port; [`Transports::local_addr`](crate::Transports::local_addr)
/// then gives the port actually bound. An IPv6 listener is IPv6 only: list an IPv4 one
/// beside it for dual stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The transport (the part before the first `:`).
    pub transport: Transport,
    /// The address to bind.
    pub addr: SocketAddr,
}

impl FromStr for ListenSpec {
    type Err = NetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |problem| NetError::ListenSpec {
            input: input.to_owned(),
            problem,
        };
        let trimmed = input.trim();
        let (token, addr) = trimmed
            .split_once(':')
            .ok_or_else(|| bad(SpecProblem::MissingTransport))?;
        if token.is_empty() || token.starts_with('[') || token.parse::<IpAddr>().is_ok() {
            // ":5060", "[::1]:5060" or "127.0.0.1:5060": the transport is missing.
            return Err(bad(SpecProblem::MissingTransport));
        }
        let transport = Transport::from_token(token)
            .ok_or_else(|| bad(SpecProblem::UnknownTransport(token.to_owned())))?;
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| bad(SpecProblem::BadAddress(addr.to_owned())))?;
        Ok(ListenSpec { transport, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.transport.as_str().to_ascii_lowercase();
        write!(f, "{token}:{}", self.addr)
    }
}

/// What is wrong with a listen spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecProblem {
    /// No `transport:` prefix.
    #[error("missing transport: expected <udp|tcp|tls>:<ip>:<port>, e.g. udp:127.0.0.1:5060")]
    MissingTransport,
    /// The prefix is not a transport we know.
    #[error("unknown transport {0:?}: expected udp, tcp or tls")]
    UnknownTransport(String),
    /// The part after the transport is not a socket address.
    #[error("bad address {0:?}: expected <ipv4>:<port> or [<ipv6>]:<port>")]
    BadAddress(String),
}

/// A certificate chain and its private key, as PEM files.
///
/// The same pair serves TLS listeners, and is presented as the client certificate when a
/// TLS server asks for one on an outgoing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key (PEM PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Transport configuration.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The sockets to listen on.
    pub listen: Vec<ListenSpec>,
    /// Certificate and key: required when a TLS listener exists or a TLS peer is contacted.
    pub tls: Option<TlsFiles>,
    /// Largest message accepted (bytes), on datagrams and streams (default 65536).
    pub max_message_size: usize,
    /// A TCP/TLS connection with no traffic either way for this long is closed (default 120 s).
    ///
    /// Keep-alive pings count as traffic, so a client that pings (RFC 5626) keeps a
    /// connection it has used open; one that never sent a message is bounded by
    /// `unused_connection_timeout` instead.
    pub connection_idle_timeout: Duration,
    /// Most TCP/TLS connections accepted from peers and open at once (default 4096).
    ///
    /// Beyond it a new incoming connection is closed as soon as it is accepted. Connections
    /// we open are counted apart (`max_outgoing_connections`), so strangers filling this
    /// budget never stop us reaching a configured target.
    pub max_incoming_connections: usize,
    /// Most TCP/TLS connections opened by us, open or being set up at once (default 1024).
    ///
    /// Beyond it a send that needs a new connection fails at once with
    /// `SendFailed { error: Unreachable }`; sends on open connections go on.
    pub max_outgoing_connections: usize,
    /// Most incoming TCP/TLS connections from one source at once (default 32): an IPv4
    /// address, or an IPv6 /64.
    ///
    /// Beyond it a new connection from that address is closed as soon as it is accepted,
    /// so one host cannot take the whole incoming budget. Loopback is not exempt. IPv6
    /// addresses are counted per /64 (a host may use any address of its /64).
    pub max_connections_per_ip: usize,
    /// Longest time a message may take to arrive on a TCP/TLS connection, from its first
    /// byte to its last (default 20 s).
    ///
    /// Counted whatever the activity: a peer trickling a header section a byte at a time
    /// (slowloris) is closed at this deadline even though every byte resets the idle timer.
    pub header_timeout: Duration,
    /// An incoming TCP/TLS connection that has not brought one complete SIP message this
    /// long after it was accepted is closed, keep-alive pings or not (default 30 s).
    ///
    /// Pings (CRLFCRLF, RFC 5626) are answered but do not count: they keep a connection that
    /// carries SIP alive, not one opened only to hold a slot. Once a message has arrived,
    /// only `connection_idle_timeout` applies.
    pub unused_connection_timeout: Duration,
    /// Longest wait for an outgoing TCP connect, and for a TLS handshake either way
    /// (default 5 s).
    pub connect_timeout: Duration,
    /// Drivers running the cores (default 1). With more than one, each UDP listener is
    /// bound once per worker (`SO_REUSEPORT`) and every message is handed to the worker its
    /// Call-ID hashes to: see [`Transports::worker`](crate::Transports::worker).
    pub workers: usize,
    /// Overload shedding: when a worker's queue is full, a new request arriving over UDP
    /// is answered `503` with `Retry-After` at once ([`rollover_txn::shed`]) instead of
    /// waiting in the socket buffer behind it. `None` (the default): it waits.
    pub shed: Option<Shed>,
}

/// How a full queue sheds new requests (see [`NetConfig::shed`]).
#[derive(Clone)]
pub struct Shed {
    /// The `Retry-After` of the 503, in seconds.
    pub retry_after: u32,
    /// Sources never shed (trusted peers: their requests wait their turn).
    pub exempt: std::sync::Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl fmt::Debug for Shed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shed")
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: Vec::new(),
            tls: None,
            max_message_size: rollover_sip::Limits::default().max_message_size,
            connection_idle_timeout: Duration::from_secs(120),
            max_incoming_connections: 4096,
            max_outgoing_connections: 1024,
            max_connections_per_ip: 32,
            header_timeout: Duration::from_secs(20),
            unused_connection_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            workers: 1,
            shed: None,
        }
    }
}

/// Why the transports could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A listen spec that does not parse.
    #[error("bad listen spec {input:?}: {problem}")]
    ListenSpec {
        /// The text given.
        input: String,
        /// What is wrong with it.
        problem: SpecProblem,
    },
    /// A listening socket could not be created, configured or bound.
    #[error("cannot listen on {spec}: {source}")]
    Bind {
        /// The listener.
        spec: ListenSpec,
        /// The system's reason.
        source: io::Error,
    },
    /// A TLS listener is configured without a certificate and key.
    #[error("{spec} needs a TLS certificate and key")]
    TlsRequired {
        /// The listener.
        spec: ListenSpec,
    },
    /// A certificate or key file could not be read or is not PEM.
    #[error("cannot read {}: {source}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no PEM certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("no PEM private key in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate or key (a key that does not match, an unsupported
    /// algorithm…).
    #[error("TLS configuration: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let s: ListenSpec = "TCP:[::1]:5060".parse().unwrap();
        assert_eq!(s.transport, Transport::Tcp);
        assert_eq!(s.to_string(), "tcp:[::1]:5060");
        let s: ListenSpec = " udp:127.0.0.1:0 ".parse().unwrap();
        assert_eq!(s.to_string(), "udp:127.0.0.1:0");
    }
}
