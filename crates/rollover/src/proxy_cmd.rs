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
use rollover_script::{Routing, Script};

use crate::dns::{self, DnsCache};
use crate::registrar::{self as reg, Door, Registrar, Routes};
use crate::workers;
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
    /// SIGHUP: a freshly loaded dial plan, and script when there is one.
    Reload(Box<DialPlan>, Option<Arc<Script>>),
    /// SIGTERM/SIGINT: stop taking calls (say so on the first sender); say when the last one
    /// is done or time is up (on the second).
    Drain(
        Duration,
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Sender<()>,
    ),
    /// SIGUSR1: log the counters.
    Stats,
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
    /// Which worker (0 for the first or only one), for the logs.
    worker: usize,
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
            Cmd::Reload(plan, script) => {
                let name = script.as_ref().map(|s| s.name().to_owned());
                match (self.proxy.router_mut().inner.reload(*plan, script), name) {
                    (Ok(()), _) if self.worker != 0 => {}
                    (Ok(()), None) => {
                        info!("dial plan reloaded; calls under way keep the plan they started with")
                    }
                    (Ok(()), Some(n)) => info!(
                        "dial plan reloaded, script {n} reloaded; calls under way keep the plan and the script version they started with"
                    ),
                    (Err(e), _) => error!(
                        worker = self.worker,
                        "SIGHUP: reload refused, keeping the running plan and script: {e}"
                    ),
                }
            }
            Cmd::Stats => self.log_stats(txn),
            Cmd::Drain(timeout, started, done) => {
                self.proxy.drain();
                let _ = started.send(());
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
            worker = self.worker,
            "stats: {} calls_in_progress={} transactions={}",
            self.proxy.stats(),
            self.proxy.calls(),
            txn.len()
        );
        info!(worker = self.worker, "stats: {}", txn.stats());
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
        // A REGISTER for us is answered here, once stored (RFC 3261 §10.3); our users'
        // requests are authenticated, strangers may not relay.
        let Some(r) = &self.proxy.router_mut().registrar else {
            return Admit::Accept;
        };
        // Only a new request takes the shared registrar's lock.
        match reg::screen(msg).unwrap_or_else(|| reg::lock(r).admit(msg, source)) {
            Door::Pass => Admit::Accept,
            Door::Reply(reply) => Admit::Reply(reply),
            Door::Drop => Admit::Drop,
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
    cmds: Vec<tokio::sync::mpsc::Sender<Cmd>>,
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
                for worker in &stats {
                    let _ = worker.send(Cmd::Stats).await;
                }
            }
        });
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(p) = &path else {
                    info!("SIGHUP: running on the embedded default config: nothing to reload");
                    continue;
                };
                match Config::load(p).map_err(|e| e.to_string()).and_then(|cfg| {
                    let script = load_script(&cfg).map_err(|e| e.to_string())?;
                    Ok((cfg, script))
                }) {
                    Ok((cfg, script)) => {
                        info!("SIGHUP: reloading the dial plan from {}", p.display());
                        if let Some(s) = &script {
                            info!("SIGHUP: reloading the script {}", s.name());
                        }
                        for (i, worker) in cmds.iter().enumerate() {
                            // One Lua state per worker: each gets its own compiled copy.
                            let script = match (i, &script) {
                                (0, s) => s.clone(),
                                (_, None) => None,
                                (_, Some(_)) => match load_script(&cfg) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        error!("SIGHUP: worker {i} keeps its script: {e}");
                                        continue;
                                    }
                                },
                            };
                            let plan = Box::new(cfg.plan.clone());
                            let _ = worker.send(Cmd::Reload(plan, script)).await;
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

/// The `[script]` of a configuration, compiled; its error names file, line and Lua's
/// message.
pub fn load_script(cfg: &Config) -> Result<Option<Arc<Script>>, rollover_script::ScriptError> {
    cfg.script
        .as_ref()
        .map(|s| Script::load(&s.file).map(Arc::new))
        .transpose()
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
    // Each worker is one thread running its sockets and its cores: no cross-thread wake-ups
    // between a socket task and its driver, which cost more than the SIP work itself
    // (measured in docs/performance.md). Worker 0 runs on this runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, config.map(Path::to_path_buf)))?;
    Ok(ExitCode::SUCCESS)
}

/// What every worker is built from.
struct WorkerParts {
    cfg: Config,
    local: Vec<(Transport, SocketAddr)>,
    secret: Secret,
    seed: u64,
    hickory: Option<Arc<hickory_resolver::TokioResolver>>,
    /// The registrar all workers share, when `[registrar]` is configured.
    registrar: Option<reg::Shared>,
}

impl WorkerParts {
    /// Worker `i`'s core: its own proxy, transaction layer and name cache. Each worker
    /// screens what its own socket receives, and the system keeps one source address on
    /// one socket, so a source's flood count lives in one worker.
    fn server(
        &self,
        i: usize,
        tls_names: rollover_net::TlsNames,
        cmds: tokio::sync::mpsc::Sender<Cmd>,
        script: Option<Arc<Script>>,
    ) -> (Server, TxnLayer) {
        let seed = self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let proxy_cfg = self
            .cfg
            .proxy_config(self.local.clone(), self.secret.clone(), seed);
        let dns = DnsCache::default();
        let routes = Routes {
            inner: Routing::new(self.cfg.plan.clone(), script),
            registrar: self.registrar.clone(),
            expanded: Default::default(),
        };
        let proxy = Proxy::new(proxy_cfg, routes, Box::new(dns.clone()));
        let server = Server {
            worker: i,
            proxy,
            drain: None,
            dns,
            hickory: self.hickory.clone(),
            tls_names,
            cmds,
        };
        (server, TxnLayer::new(self.cfg.server.txn_config()))
    }
}

async fn serve(cfg: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let s = &cfg.server;
    let mut net = s.net_config();
    // Admission control at the socket: a worker whose queue is full refuses new requests
    // with 503 as they arrive (trusted peers excepted), as the core does past
    // overload_backlog; 0 turns both off.
    let sec = cfg.security.limits.clone();
    if sec.overload_backlog > 0 {
        let retry_after = sec.retry_after;
        net.shed = Some(rollover_net::Shed {
            retry_after,
            exempt: Arc::new(move |ip| sec.is_trusted(ip)),
        });
    }
    let workers = net.workers.max(1);
    let (transports, mut inbound, shares) = Transports::bind_workers(net)
        .await
        .map_err(|e| anyhow!("{e}"))?;
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
        "security: flood limit {}/s (burst {}) per source, overload at {} queued messages per worker",
        sec.pike_rate,
        sec.pike_burst,
        sec.overload_backlog
    );
    info!(
        workers,
        "{workers} worker(s): each call is handled by the worker its Call-ID hashes to"
    );
    let limits = s.limits();
    let drain_timeout = s.drain_timeout;
    let hickory = match hickory_resolver::Resolver::builder_tokio().and_then(|b| b.build()) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            error!("no DNS resolver ({e}): targets given by name cannot be called");
            None
        }
    };
    // Worker 0's copy is compiled first, so a script that does not load stops the start;
    // each other worker compiles its own (one Lua state per worker).
    let script = load_script(&cfg).map_err(|e| anyhow!("{e}"))?;
    if let Some(s) = &script {
        info!("routing with the script {}", s.name());
    }
    let registrar = match &cfg.registrar {
        Some(settings) => {
            let ours = local.iter().map(|(_, a)| *a).collect();
            let r = Registrar::open(
                settings,
                &cfg.store,
                &cfg.auth,
                &secret_bytes(&cfg.security)?,
                cfg.security.limits.clone(),
                ours,
                seed.rotate_left(17),
            )?;
            Some(Arc::new(std::sync::Mutex::new(r)))
        }
        None => None,
    };
    if let Some(r) = &registrar {
        // Other nodes' changes (Redis): each drops the cached copy.
        let shared = r.clone();
        reg::lock(r).watch_changes(move |aor| {
            reg::lock(&shared).forget(aor.as_deref());
            true
        });
        // Expired bindings go in the background.
        let shared = r.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                reg::lock(&shared).purge();
            }
        });
    }
    let parts = Arc::new(WorkerParts {
        cfg,
        local,
        secret,
        seed,
        hickory,
        registrar,
    });

    // Workers 1.. each on a thread with a runtime of its own; worker 0 runs here, with the
    // signal handlers and the TCP/TLS listeners.
    let stop = tokio::sync::watch::channel(false);
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    let mut ended = workers::Watch::new();
    for share in shares {
        let i = share.worker();
        let guard = ended.guard(i);
        let worker_script = load_script(&parts.cfg).map_err(|e| anyhow!("{e}"))?;
        let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<Cmd>(64);
        senders.push(cmd_tx.clone());
        let parts = parts.clone();
        let mut stopped = stop.1.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let _ended = guard;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a worker's runtime")?;
                rt.block_on(async move {
                    let (transports, mut inbound) = share.start().map_err(|e| anyhow!("{e}"))?;
                    let (mut server, mut txn) =
                        parts.server(i, transports.tls_names(), cmd_tx, worker_script);
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    driver::run_with_commands(
                        &mut server,
                        &mut txn,
                        &transports,
                        &mut inbound,
                        parts.cfg.server.limits(),
                        &mut cmd_rx,
                        Server::command,
                        shutdown,
                    )
                    .await;
                    server.log_stats(&txn);
                    Ok(())
                })
            })
            .context("starting a worker thread")?;
        threads.push((i, thread));
    }
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<Cmd>(64);
    senders.insert(0, cmd_tx.clone());
    let (mut server, mut txn) = parts.server(0, transports.tls_names(), cmd_tx, script);
    spawn_reloader(config_path, senders.clone())?;
    let stop_all = stop.0;
    let shutdown = async move {
        let why = tokio::select! {
            why = stop_signal() => why,
            worker = ended.first_ended() => {
                error!(worker, "a worker stopped on its own: stopping the proxy, the calls it owns have nobody to handle them");
                "a worker stopped"
            }
        };
        let mut done = Vec::new();
        let mut started = Vec::new();
        for cmds in &senders {
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            if cmds
                .send(Cmd::Drain(drain_timeout, started_tx, done_tx))
                .await
                .is_ok()
            {
                started.push(started_rx);
                done.push(done_rx);
            }
        }
        // Said once every worker refuses new calls: from this line on, none is taken.
        for s in started {
            let _ = s.await;
        }
        info!(
            "{why}: draining: new calls get 503, calls under way finish (at most {}s)",
            drain_timeout.as_secs()
        );
        let all_done = async {
            for d in done {
                let _ = d.await;
            }
        };
        tokio::select! {
            _ = all_done => {}
            why = stop_signal() => info!("{why} again: stopping without waiting"),
        }
        info!("shutting down");
        let _ = stop_all.send(true);
    };
    // The signal handling runs as its own task, polled only when a signal or a worker wakes
    // it: inside the driver's select it was polled on every turn (about 6,600 instructions
    // per call at 50 calls/s). The driver waits on a one-shot channel, cheap to poll.
    let (finished_tx, finished_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = finished_tx.send(());
    });
    let shutdown = async move {
        let _ = finished_rx.await;
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
    let failed = workers::failures(threads.into_iter().map(|(i, t)| (i, t.join())));
    for f in &failed {
        error!("{f}");
    }
    transports.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    match failed.first() {
        // A non-zero exit, so a service manager restarts the proxy.
        Some(f) => Err(anyhow!("{f}")),
        None => Ok(()),
    }
}
