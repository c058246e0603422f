//! `rollover proxy`: the failover proxy on real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rollover_dialplan::{Config, DialPlan, SecuritySettings};
use rollover_net::{driver, Transports};
use rollover_proxy::{Proxy, Question, Secret};

use crate::dns::{self, DnsCache};
use crate::registrar::{Door, Registrar, Routes};
use rollover_sip::Message;
use rollover_txn::{Admit, Peer, TransactionUser, Transport, TxnLayer};
use tracing::{error, info, warn};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The secret our Route tokens and branch MACs are made with: `[security] secret` when
/// written, else the secret file, made with 32 random bytes (mode 0600) on first start so
/// dialogs survive a restart.
fn load_secret(sec: &SecuritySettings) -> anyhow::Result<Secret> {
    if let Some(s) = read_secret(sec)? {
        return Ok(s);
    }
    let path = &sec.secret_file;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random bytes for the secret: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating the secret file {}", path.display()))?;
    std::io::Write::write_all(&mut f, hex.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    info!(
        "made a new secret in {} (keep it; share it between nodes that share dialogs)",
        path.display()
    );
    Ok(Secret::new(hex.as_bytes()))
}

/// The secret as configured or kept in its file, without making one.
pub fn read_secret(sec: &SecuritySettings) -> anyhow::Result<Option<Secret>> {
    if let Some(s) = &sec.secret {
        return Ok(Some(Secret::new(s.as_bytes())));
    }
    let path = &sec.secret_file;
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 16 => Ok(Some(Secret::new(&bytes))),
        Ok(_) => anyhow::bail!(
            "{}: the secret is shorter than 16 bytes; delete the file to have a new one made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The secret's bytes (as configured, or from its file once [`load_secret`] made it), for
/// the registrar's nonces.
fn secret_bytes(sec: &SecuritySettings) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &sec.secret {
        return Ok(s.as_bytes().to_vec());
    }
    std::fs::read(&sec.secret_file)
        .with_context(|| format!("reading {}", sec.secret_file.display()))
}

/// What the signal handlers ask of the running proxy.
enum Cmd {
    /// SIGHUP: a freshly loaded dial plan.
    Reload(Box<DialPlan>),
    /// SIGTERM/SIGINT: stop taking calls; say when the last one is done or time is up.
    Drain(Duration, tokio::sync::oneshot::Sender<()>),
    /// SIGUSR1: log the counters.
    Stats,
    /// Time to delete expired registrations.
    Purge,
    /// Another node changed these bindings (`None`: maybe any).
    Forget(Option<String>),
    /// A name the core asked about was looked up.
    Resolved {
        id: u64,
        host: String,
        port: u16,
        transport: Transport,
        addrs: Vec<std::net::IpAddr>,
        until: Instant,
    },
}

/// The proxy core with what the process adds around it: the drain deadline, and the
/// answers to its questions (name look-ups, in tasks of their own).
struct Server {
    proxy: Proxy<Routes>,
    drain: Option<(Instant, tokio::sync::oneshot::Sender<()>)>,
    dns: DnsCache,
    hickory: Option<Arc<hickory_resolver::TokioResolver>>,
    tls_names: rollover_net::TlsNames,
    cmds: tokio::sync::mpsc::Sender<Cmd>,
}

impl Server {
    fn command(&mut self, now: Instant, cmd: Cmd, txn: &mut TxnLayer) {
        match cmd {
            Cmd::Reload(plan) => {
                self.proxy.router_mut().plan = *plan;
                info!("dial plan reloaded; calls under way keep the plan they started with");
            }
            Cmd::Stats => self.log_stats(txn),
            Cmd::Purge => {
                if let Some(r) = &mut self.proxy.router_mut().registrar {
                    r.purge();
                }
            }
            Cmd::Forget(aor) => {
                if let Some(r) = &mut self.proxy.router_mut().registrar {
                    r.forget(aor.as_deref());
                }
            }
            Cmd::Drain(timeout, done) => {
                self.proxy.drain();
                self.drain = Some((now + timeout, done));
                self.check_drained(now);
            }
            Cmd::Resolved {
                id,
                host,
                port,
                transport,
                addrs,
                until,
            } => {
                self.dns.insert(&host, addrs.clone(), until);
                let addrs: Vec<SocketAddr> = addrs
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                if transport == Transport::Tls {
                    // RFC 5922: the connection verifies the name the target gave.
                    for a in &addrs {
                        self.tls_names.insert(*a, &host);
                    }
                }
                self.proxy.answer_resolve(now, id, addrs, txn);
            }
        }
        self.ask();
    }

    /// The counters, with what is in progress now.
    fn log_stats(&self, txn: &TxnLayer) {
        info!(
            "stats: {} calls_in_progress={} transactions={}",
            self.proxy.stats(),
            self.proxy.calls(),
            txn.len()
        );
        info!("stats: {}", txn.stats());
    }

    /// Hands the core's questions to tasks: each name is looked up on its own.
    fn ask(&mut self) {
        while let Some(q) = self.proxy.poll_question() {
            let Question::Resolve {
                id,
                host,
                port,
                transport,
            } = q
            else {
                // The dial plan answers routing and failure at once; a policy that answers
                // later gets its own answerer.
                warn!("question left unanswered: {q:?}");
                continue;
            };
            let hickory = self.hickory.clone();
            let cmds = self.cmds.clone();
            tokio::spawn(async move {
                let (addrs, until) = dns::look_up(hickory.as_deref(), &host).await;
                let _ = cmds
                    .send(Cmd::Resolved {
                        id,
                        host,
                        port,
                        transport,
                        addrs,
                        until,
                    })
                    .await;
            });
        }
    }

    fn check_drained(&mut self, now: Instant) {
        if self.drain.is_none() {
            return;
        }
        let calls = self.proxy.calls_in_setup();
        if let Some((deadline, _)) = &self.drain {
            if calls == 0 || now >= *deadline {
                if calls > 0 {
                    info!(calls, "drain timeout: leaving calls still being set up");
                }
                if let Some((_, done)) = self.drain.take() {
                    let _ = done.send(());
                }
            }
        }
    }
}

impl TransactionUser for Server {
    fn handle_txn_event(&mut self, now: Instant, ev: rollover_txn::Event, txn: &mut TxnLayer) {
        self.proxy.handle_txn_event(now, ev, txn);
        self.ask();
        self.check_drained(now);
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        self.proxy.handle_timeout(now, txn);
        self.ask();
        self.check_drained(now);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let drain = self.drain.as_ref().map(|(d, _)| *d);
        [self.proxy.poll_timeout(), drain]
            .into_iter()
            .flatten()
            .min()
    }

    fn admit(&mut self, now: Instant, source: &Peer, msg: &Message, backlog: usize) -> Admit {
        match self.proxy.admit(now, source, msg, backlog) {
            Admit::Accept => {}
            other => return other,
        }
        // A REGISTER for us is answered here, once stored (RFC 3261 §10.3).
        match &mut self.proxy.router_mut().registrar {
            Some(r) => match r.admit(msg, source) {
                Door::Pass => Admit::Accept,
                Door::Reply(reply) => Admit::Reply(reply),
                Door::Drop => Admit::Drop,
            },
            None => Admit::Accept,
        }
    }
}

/// Waits for SIGTERM or SIGINT; says which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// SIGHUP reloads the dial plan from the configuration file: a file that does not load is
/// refused with its error and the running plan is kept. SIGUSR1 logs the counters.
fn spawn_reloader(
    path: Option<PathBuf>,
    cmds: tokio::sync::mpsc::Sender<Cmd>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let mut usr1 =
            signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
        let stats = cmds.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                if stats.send(Cmd::Stats).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(p) = &path else {
                    info!("SIGHUP: running on the embedded default config: nothing to reload");
                    continue;
                };
                match Config::load(p) {
                    Ok(cfg) => {
                        info!("SIGHUP: reloading the dial plan from {}", p.display());
                        if cmds.send(Cmd::Reload(Box::new(cfg.plan))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => error!("SIGHUP: reload refused, keeping the running plan: {e}"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (path, cmds);
    Ok(())
}

/// Runs the proxy until SIGTERM or SIGINT (then drains).
pub fn run(config: Option<&Path>, log: &str, listen: &[String]) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
    let mut cfg = match config {
        Some(p) => Config::load(p).map_err(|e| anyhow!("{e}"))?,
        None => Config::parse("<embedded default>", DEFAULT_CONFIG).map_err(|e| anyhow!("{e}"))?,
    };
    if !listen.is_empty() {
        cfg.server.listen.clear();
        cfg.server.advertise.clear();
        for l in listen {
            let e =
                rollover_dialplan::parse_listen(l).map_err(|e| anyhow!("--listen {l:?}: {e}"))?;
            cfg.server.listen.push((e.transport, e.addr));
            if let Some(a) = e.advertise {
                cfg.server.advertise.push((e.transport, a));
            }
        }
    }
    // One thread runs the sockets and the cores: no cross-thread wake-ups between the socket
    // tasks and the driver, which cost more than the SIP work itself (measured in
    // docs/performance.md). Scaling out is by more processes or, later, Call-ID shards.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, config.map(Path::to_path_buf)))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(cfg: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let s = &cfg.server;
    let net = s.net_config();
    let (transports, mut inbound) = Transports::bind(net).await.map_err(|e| anyhow!("{e}"))?;
    let local: Vec<(Transport, SocketAddr)> = [Transport::Udp, Transport::Tcp, Transport::Tls]
        .into_iter()
        .filter_map(|t| transports.local_addr(t).map(|a| (t, a)))
        .collect();
    for (t, a) in &local {
        let adv = s.advertise.iter().find(|(at, _)| at == t);
        match adv {
            Some((_, a2)) => info!(
                "listening on {}:{a} advertise {a2}",
                t.as_str().to_ascii_lowercase()
            ),
            None => info!("listening on {}:{a}", t.as_str().to_ascii_lowercase()),
        }
    }
    // Advertised addresses first: Via and Record-Route use the first entry per transport;
    // the bound ones stay so requests addressed to them are recognised as ours.
    let local: Vec<(Transport, SocketAddr)> = s.advertise.iter().copied().chain(local).collect();
    #[allow(clippy::disallowed_methods)] // seeds branch ids so two runs never collide
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let secret = load_secret(&cfg.security)?;
    let sec = &cfg.security.limits;
    info!(
        trusted = sec.trusted.len(),
        allow = if sec.allow.is_empty() {
            "everyone".to_owned()
        } else {
            format!("{} block(s)", sec.allow.len())
        },
        "security: flood limit {}/s (burst {}) per source, overload at {} queued messages",
        sec.pike_rate,
        sec.pike_burst,
        sec.overload_backlog
    );
    let ours: Vec<SocketAddr> = local.iter().map(|(_, a)| *a).collect();
    let proxy_cfg = cfg.proxy_config(local, secret, seed);
    let txn_cfg = s.txn_config();
    let limits = s.limits();
    let dns = DnsCache::default();
    let hickory = match hickory_resolver::Resolver::builder_tokio().and_then(|b| b.build()) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            error!("no DNS resolver ({e}): targets given by name cannot be called");
            None
        }
    };
    let registrar = match &cfg.registrar {
        Some(settings) => Some(Registrar::open(
            settings,
            &cfg.store,
            &cfg.auth,
            &secret_bytes(&cfg.security)?,
            cfg.security.limits.clone(),
            ours,
            seed.rotate_left(17),
        )?),
        None => None,
    };
    let has_registrar = registrar.is_some();
    let routes = Routes {
        plan: cfg.plan,
        registrar,
    };
    let proxy = Proxy::new(proxy_cfg, routes, Box::new(dns.clone()));
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<Cmd>(64);
    let mut server = Server {
        proxy,
        drain: None,
        dns,
        hickory,
        tls_names: transports.tls_names(),
        cmds: cmd_tx.clone(),
    };
    let mut txn = TxnLayer::new(txn_cfg);
    spawn_reloader(config_path, cmd_tx.clone())?;
    if let Some(r) = &server.proxy.router_mut().registrar {
        let forget = cmd_tx.clone();
        r.watch_changes(move |aor| forget.blocking_send(Cmd::Forget(aor)).is_ok());
    }
    if has_registrar {
        let purge = cmd_tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                if purge.send(Cmd::Purge).await.is_err() {
                    return;
                }
            }
        });
    }
    let drain_timeout = s.drain_timeout;
    let shutdown = async move {
        let why = stop_signal().await;
        info!(
            "{why}: draining: new calls get 503, calls under way finish (at most {}s)",
            drain_timeout.as_secs()
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if cmd_tx
            .send(Cmd::Drain(drain_timeout, done_tx))
            .await
            .is_ok()
        {
            tokio::select! {
                _ = done_rx => {}
                why = stop_signal() => info!("{why} again: stopping without waiting"),
            }
        }
        info!("shutting down");
    };
    driver::run_with_commands(
        &mut server,
        &mut txn,
        &transports,
        &mut inbound,
        limits,
        &mut cmd_rx,
        Server::command,
        shutdown,
    )
    .await;
    server.log_stats(&txn);
    transports.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}
