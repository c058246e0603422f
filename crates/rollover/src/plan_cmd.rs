//! `rollover check`, `rollover route` and `rollover simulate`: look at a plan without
//! sending anything.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;

use rollover_dialplan::Config;
use rollover_proxy::{Decision, ProxyConfig, RouteDecision};
use rollover_script::Routing;
use rollover_sip::Message;
use rollover_testkit::{self as sim, World};
use rollover_txn::{Peer, Transport};

fn load(config: &Path) -> anyhow::Result<Config> {
    // The error already names file, line and key.
    Config::load(config).map_err(|e| anyhow!("{e}"))
}

/// A request from a file, exactly as captured (it goes through the proxy's front door, so a
/// malformed one is answered as the live proxy answers it), or an INVITE made up for a
/// URI. The parsed message, when the bytes parse and validate.
fn request(arg: &str) -> anyhow::Result<(Bytes, Option<Message>)> {
    let path = Path::new(arg);
    if path.exists() {
        let bytes = Bytes::from(std::fs::read(path).with_context(|| format!("reading {arg}"))?);
        let parsed = Message::parse(bytes.clone())
            .ok()
            .filter(|m| m.validate().is_ok());
        if parsed.as_ref().is_some_and(|m| !m.is_request()) {
            return Err(anyhow!("{arg} holds a response, not a request"));
        }
        return Ok((bytes, parsed));
    }
    let m = sim::invite_to(arg)
        .ok_or_else(|| anyhow!("{arg:?} is neither a file nor a usable Request-URI"))?;
    Ok((m.as_bytes().clone(), Some(m)))
}

/// `rollover check`.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(config) {
        Ok(cfg) => {
            let s = &cfg.server;
            say!("{}: ok", config.display());
            let listen: Vec<String> = s
                .listen
                .iter()
                .map(|(t, a)| format!("{}:{a}", t.as_str().to_ascii_lowercase()))
                .collect();
            say!("listen: {}", listen.join(", "));
            say!(
                "record_route: {}  t1: {:?}  t2: {:?}  timer_c: {:?}",
                s.record_route,
                s.t1,
                s.t2,
                s.timer_c
            );
            if let Some(sc) = &cfg.script {
                match crate::proxy_cmd::load_script(&cfg) {
                    Ok(_) => say!(
                        "script: {}: ok (request_route replaces the rules below; req:dialplan() runs them)",
                        sc.file.display()
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            if let Some(r) = &cfg.registrar {
                say!(
                    "registrar: domains {}  expires {}–{} s (default {})  max_contacts {}",
                    r.domains.join(", "),
                    r.min_expires,
                    r.max_expires,
                    r.default_expires,
                    r.max_contacts
                );
                let a = &cfg.auth;
                let require = match a.require {
                    Some(true) => "required",
                    Some(false) => "off",
                    None => "required once users exist",
                };
                say!(
                    "auth: {require}  algorithms {}  nonce_ttl {:?}  {} wrong answers block for {:?}",
                    a.algorithms.join(", "),
                    a.nonce_ttl,
                    a.max_failures,
                    a.block_time
                );
                match &cfg.store.url {
                    Some(u) => say!("store: {u}"),
                    None => say!("store: {} (SQLite)", cfg.store.path.display()),
                }
            }
            say!("{}", cfg.plan.to_string().trim_end());
            // Allowed, but almost certainly mistakes: still exit 0.
            for w in &cfg.warnings {
                say!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The proxy settings `route` and `simulate` run the core with: the configured addresses,
/// `[security]` and the secret (when one exists), so a request takes the live path.
fn proxy_config(cfg: &Config, req: Option<&Message>) -> anyhow::Result<ProxyConfig> {
    let secret = crate::proxy_cmd::read_secret(&cfg.security)?;
    let routed = req.is_some_and(|r| r.to_tag().is_some() || r.routes().next().is_some());
    if secret.is_none() && routed {
        eprintln!(
            "note: no secret yet ({} does not exist): Route tokens of earlier runs cannot be checked",
            cfg.security.secret_file.display()
        );
    }
    let local = cfg
        .server
        .advertise
        .iter()
        .chain(&cfg.server.listen)
        .copied()
        .collect();
    let d = ProxyConfig::default();
    Ok(ProxyConfig {
        keep_decisions: d.keep_decisions,
        ..cfg.proxy_config(local, secret.unwrap_or(d.secret), d.seed)
    })
}

fn source_peer(source: &str, transport: &str) -> anyhow::Result<Peer> {
    Ok(Peer {
        transport: Transport::from_token(transport)
            .ok_or_else(|| anyhow!("unknown transport {transport:?}"))?,
        addr: source
            .parse()
            .with_context(|| format!("--source {source:?}"))?,
    })
}

/// `rollover route`: the request goes through the proxy core exactly as on the wire (front
/// door, Route checks, dial plan), in virtual time, until its first request is sent; what
/// the core decided and where the request went are printed.
pub fn route(config: &Path, req: &str, source: &str, transport: &str) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let (bytes, req) = request(req)?;
    let source = source_peer(source, transport)?;
    let pcfg = proxy_config(&cfg, req.as_ref())?;
    let first = bytes.split(|&b| b == b'\r').next().unwrap_or_default();
    say!("request: {}", String::from_utf8_lossy(first));
    let world = World::parse("").map_err(|e| anyhow!("{e}"))?;
    let script = crate::proxy_cmd::load_script(&cfg).map_err(|e| anyhow!("{e}"))?;
    let out = sim::run_from(
        pcfg,
        Routing::new(cfg.plan.clone(), script),
        bytes,
        source,
        &world,
        Duration::ZERO,
    );
    let mut routed = false;
    for d in &out.decisions {
        match d {
            Decision::Routed { .. } => routed = true,
            Decision::Rejected { status, reason } => say!("refused: {status} ({reason})"),
            Decision::Relayed { .. } | Decision::RouteRemoved { .. } => say!("{d}"),
            _ => {}
        }
    }
    for l in out.timeline.iter().filter(|l| l.at.is_zero()) {
        let t = l.text.trim_start();
        if t.starts_with("caller ←") || t.starts_with("→ ") || t.starts_with("dropped") {
            say!("{t}");
        }
    }
    if let (true, Some(sc)) = (routed, &cfg.script) {
        // The script decided: what it chose is the request sent above.
        say!("script: {}", sc.file.display());
    } else if let (true, Some(req)) = (routed, &req) {
        let m = cfg.plan.explain(req, &source);
        match &m.rule {
            Some(r) => say!("rule: {r}"),
            None => say!("rule: none matched"),
        }
        if let RouteDecision::Targets { plan, policy, .. } = m.decision {
            for (i, g) in plan.groups.iter().enumerate() {
                let names: Vec<String> =
                    g.iter().map(|t| format!("{t} [{}]", t.transport)).collect();
                let how = if g.len() > 1 { " (in parallel)" } else { "" };
                say!("{}. {}{how}", i + 1, names.join(", "));
            }
            say!("failover: {policy}");
        }
    } else if let Some(line) = out
        .timeline
        .iter()
        .find_map(|l| l.text.trim_start().strip_prefix("caller ← SIP/2.0 "))
    {
        say!("reject: {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `rollover simulate`.
pub fn simulate(
    config: &Path,
    req: &str,
    world: &str,
    limit: u64,
    source: &str,
    transport: &str,
) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let (bytes, req) = request(req)?;
    let text = if Path::new(world).exists() {
        std::fs::read_to_string(world).with_context(|| format!("reading {world}"))?
    } else {
        world.to_owned()
    };
    let world = World::parse(&text).map_err(|e| anyhow!("--world: {e}"))?;
    let pcfg = proxy_config(&cfg, req.as_ref())?;
    let script = crate::proxy_cmd::load_script(&cfg).map_err(|e| anyhow!("{e}"))?;
    let out = sim::run_from(
        pcfg,
        Routing::new(cfg.plan, script),
        bytes,
        source_peer(source, transport)?,
        &world,
        Duration::from_secs(limit),
    );
    say!("{}", out.render().trim_end());
    match out.final_status {
        Some(s) => say!("final: {s}"),
        None => say!("final: none (the caller got no final response within {limit} s)"),
    }
    Ok(
        if out.final_status.is_some_and(|s| (200..300).contains(&s)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
