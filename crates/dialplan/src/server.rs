//! `[server]`: the settings, and the config each layer gets from them (one place for each
//! default: the layer that owns it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rollover_net::{ListenSpec, NetConfig, TlsFiles};
use rollover_proxy::{LateAnswer, ProxyConfig, Secret};
use rollover_txn::Transport;

use crate::duration::RawDuration;
use crate::{Config, ConfigError, Ctx};

/// How long an ended transaction lingers by default (`[server] linger`): Kamailio's habit
/// (tm's `wait_timer`) where the seeds are silent, not the RFC's 32 s. A 2xx retransmitted
/// later is still relayed, statelessly. Memory is proportional to it (docs/performance.md).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

impl Ctx<'_> {
    /// `[server] linger`: 1 s to 64 s, [`DEFAULT_LINGER`] when not written.
    pub(crate) fn linger(
        &self,
        v: &Option<toml::Spanned<RawDuration>>,
    ) -> Result<Option<Duration>, ConfigError> {
        let d = self.duration(v, "server.linger", DEFAULT_LINGER)?;
        if !(Duration::from_secs(1)..=Duration::from_secs(64)).contains(&d) {
            let span = v.as_ref().map_or(0..0, |v| v.span());
            return Err(self.err(
                span,
                "server.linger",
                "expected 1s to 64s (5s is Kamailio's wait_timer; 32s keeps the RFC's timers)",
            ));
        }
        Ok(Some(d))
    }
}

/// Server settings from `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Listening sockets.
    pub listen: Vec<(Transport, SocketAddr)>,
    /// Addresses to write in Via and Record-Route instead of the bound ones, per transport.
    pub advertise: Vec<(Transport, SocketAddr)>,
    /// Add Record-Route.
    pub record_route: bool,
    /// T1.
    pub t1: Duration,
    /// T2.
    pub t2: Duration,
    /// T4.
    pub t4: Duration,
    /// Timer C.
    pub timer_c: Duration,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// TLS certificate and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// TCP/TLS connection limits and deadlines.
    pub connections: ConnectionLimits,
    /// On SIGTERM, how long calls being set up may take before the process exits.
    pub drain_timeout: Duration,
    /// A 2xx from a branch left behind after another answered: relayed or hung up.
    pub late_answer: LateAnswer,
    /// RFC 3261 §18.1.1 switch: requests over this size try `udp_mtu_try` (0: off).
    pub udp_mtu: usize,
    /// The transport tried for them.
    pub udp_mtu_try: Transport,
    /// Drivers running the cores, each on a thread of its own; `None`: one per core.
    pub workers: Option<usize>,
    /// Cap on how long an ended transaction lingers (Timers D, J, L, M): 5 s unless
    /// written (Kamailio's wait_timer); `None` keeps the RFC's 64·T1.
    pub linger: Option<Duration>,
}

impl ServerSettings {
    /// The transaction layer's configuration (T1, T2, T4, linger; the rest at their
    /// defaults).
    pub fn txn_config(&self) -> rollover_txn::Config {
        rollover_txn::Config {
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
            linger: self.linger,
            ..rollover_txn::Config::default()
        }
    }

    /// The sockets' configuration: listeners, TLS files, sizes and connection limits.
    pub fn net_config(&self) -> NetConfig {
        let c = &self.connections;
        NetConfig {
            listen: self
                .listen
                .iter()
                .map(|&(transport, addr)| ListenSpec { transport, addr })
                .collect(),
            tls: self.tls.as_ref().map(|(cert, key)| TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            max_message_size: self.max_message_size,
            connection_idle_timeout: c.idle_timeout,
            max_incoming_connections: c.max_incoming,
            max_outgoing_connections: c.max_outgoing,
            max_connections_per_ip: c.max_per_ip,
            header_timeout: c.header_timeout,
            unused_connection_timeout: c.unused_timeout,
            workers: self.worker_count(),
            ..NetConfig::default()
        }
    }

    /// How many workers run: `workers` as written, else one per core the system gives
    /// this process.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The parser's limits (the message size; the rest at their defaults).
    pub fn limits(&self) -> rollover_sip::Limits {
        rollover_sip::Limits {
            max_message_size: self.max_message_size,
            ..rollover_sip::Limits::default()
        }
    }
}

impl Config {
    /// The proxy core's configuration. `local` is every address that is this proxy
    /// (advertised first: Via and Record-Route use the first per transport); `secret`
    /// signs Record-Route and branches; `seed` seeds branch ids and tags.
    pub fn proxy_config(
        &self,
        local: Vec<(Transport, SocketAddr)>,
        secret: Secret,
        seed: u64,
    ) -> ProxyConfig {
        let s = &self.server;
        ProxyConfig {
            local,
            record_route: s.record_route,
            timer_c: s.timer_c,
            seed,
            secret,
            security: self.security.limits.clone(),
            late_answer: s.late_answer,
            udp_mtu: s.udp_mtu,
            udp_mtu_try: s.udp_mtu_try,
            ..ProxyConfig::default()
        }
    }
}

/// `[server]` limits on TCP/TLS connections (see `rollover_net::NetConfig` for each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection with no traffic either way for this long is closed (120 s).
    pub idle_timeout: Duration,
    /// Incoming connections open at once (4096).
    pub max_incoming: usize,
    /// Outgoing connections open at once, a budget strangers cannot use up (1024).
    pub max_outgoing: usize,
    /// Incoming connections from one IP address (32).
    pub max_per_ip: usize,
    /// Deadline for a whole message from its first byte (20 s).
    pub header_timeout: Duration,
    /// An incoming connection that carried no message by then is closed, pings or not (30 s).
    pub unused_timeout: Duration,
}
