//! # rollover-net
//!
//! The tokio transports of Rollover: UDP, TCP and TLS sockets, stream framing and
//! connection reuse. The protocol cores never see a socket; the driver moves bytes between
//! them and [`Transports`].
//!
//! ```text
//!                      Transports::bind(NetConfig) spawns:
//!  UDP  recv_from ──▶ one datagram ──────────────────────────┐   (until a driver claims the
//!                                                            │    sockets: see below)
//!  TCP  accept ─────▶ reader ─▶ StreamFramer ─▶ message ─────┤
//!  TLS  accept ─▶ handshake ─┘        ├─ ping ─▶ pong (CRLF) │
//!                                     └─ junk ─▶ BadStream ──┤
//!  connect / write failures ─────────────────▶ SendFailed ───┴─▶ mpsc::Receiver<Inbound> ─▶ driver
//!                                                                                            │
//!  UDP  send_to ◀───────────────────────────────────────────┐                                │
//!  TCP/TLS  writer task ◀─ bounded queue ◀─ table[peer] ◀───┴── Transports::send(dest, bytes, txn)
//!                 no entry: connect in the background, queue meanwhile
//! ```
//!
//! The driver ([`driver::run`]) claims its worker's UDP sockets ([`Transports::claim_udp`])
//! and reads them itself, a batch per wake-up ([`UdpIn`]): no task or channel between a
//! datagram and the cores. The channel then carries what streams frame, what other workers
//! hand over, and send failures.
//!
//! Guarantees:
//! - **`send` never waits.** UDP goes out at once; a stream message is queued on the
//!   connection to the destination, which is opened in the background when there is none.
//!   Every failure comes back as [`Inbound::SendFailed`] with the transaction given to
//!   `send`, keeping its kind ([`TransportError`](rollover_txn::TransportError)): a
//!   refused TCP connect is reported as soon as the RST arrives (milliseconds on a LAN).
//! - **Responses reuse the request's connection** (RFC 3261 §18.2.2): connections are
//!   keyed by transport and remote address, accepted ones included, so sending to an
//!   [`Inbound::Message`]'s `source` writes on the connection it came in on.
//! - **Bounded.** Messages over `max_message_size` are dropped (UDP) or close the
//!   connection (streams, [`Inbound::BadStream`]); each connection's write queue holds 256
//!   messages, and a connection that cannot keep up is dropped (`Reset`).
//! - **Strangers cannot crowd out targets.** Incoming and outgoing connections have
//!   separate budgets (`max_incoming_connections`, `max_outgoing_connections`), so a flood
//!   of incoming connections never makes a send to a configured target fail; one source (an
//!   IPv4 address, an IPv6 /64) holds at most `max_connections_per_ip` incoming ones. A connection is closed when a
//!   message takes longer than `header_timeout` from its first byte (slowloris), when an
//!   incoming one brings no message within `unused_connection_timeout` of being accepted
//!   (pings do not count), and when idle for `connection_idle_timeout`. An idle connection
//!   holds no read buffer: reads go through one buffer per thread, and a connection's own
//!   buffer is allocated as bytes arrive and released once they are framed. Refusals and
//!   closings are logged at most once per 10 s per reason, with a count of the rest.
//!   The inbound channel is bounded: a slow driver slows reading (UDP bursts wait in a
//!   4 MiB `SO_RCVBUF`, as far as `net.core.rmem_max` allows).
//!
//! ## UDP and ICMP
//!
//! UDP sockets stay unconnected (one socket talks to every peer, and the source port of what
//! we send is the listening port). An ICMP port-unreachable for an unconnected socket is
//! reported by the system, if at all, as an error on a *later* `send_to`/`recv_from`, with
//! no destination attached: Linux does so only with `IP_RECVERR` (not set here), Windows
//! always (`WSAECONNRESET` on receive). So, best effort: a receive error of that kind is
//! logged; a send that hits it is tried once more (the error belonged to an earlier
//! datagram and is consumed), and if that fails too it is reported as
//! `SendFailed { error: Refused }` for this send. A UDP destination that is silently gone
//! is detected by the transaction timers (B/F), as RFC 3261 expects.
//!
//! ## TLS
//!
//! Certificates come from PEM files ([`TlsFiles`]). Incoming: that chain, no client
//! certificate asked. Outgoing: the peer's chain is verified against the system trust store
//! (`rustls-native-certs`) plus the certificates in our own certificate file, so a private
//! CA or a self-signed certificate shared by the peers works. Since a [`Peer`](rollover_txn::Peer)
//! carries an address and no host name, the name verified is the peer's IP address (the
//! certificate needs it as an IP subject alternative name); verifying the SIP domain
//! (RFC 5922) needs the host name passed down and is left for later. The crypto provider
//! is `ring`.

mod config;
mod conn;
mod inner;
mod ratelog;
mod steer;
mod table;
mod tls;
mod transport;
mod udp_in;
mod udp_sock;

pub mod driver;

pub use config::{ListenSpec, NetConfig, NetError, Shed, SpecProblem, TlsFiles};
pub use inner::{worker_for, Inbound, TlsNames};
pub use transport::{Transports, WorkerTransports};
pub use udp_in::UdpIn;
