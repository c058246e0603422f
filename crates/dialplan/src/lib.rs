//! # rollover-dialplan
//!
//! Rollover's configuration: a TOML file compiled once into server settings and an ordered
//! list of routing rules, each with its targets and failover policy.
//!
//! ```text
//!  file ──toml──▶ raw (values keep their position) ──compile──▶ Config { server, plan }
//!                                   errors: file:line:column: key: what is wrong
//!  request ──▶ DialPlan::route (first rule whose conditions all match; captures expanded
//!              into targets) ──▶ RouteDecision { plan, policy, rule } | Reject
//! ```
//!
//! `check` also refuses targets naming a capture no condition defines, and warns about
//! rules no request can reach (a rule above matches everything they could).
//!
//! String conditions are regular expressions (searched, not anchored: write `^…$`).
//! Numbered captures (`$1`) come from `match.request_uri`; named captures (`${user}`) from
//! any condition; `${ruri}` is always the Request-URI as received.

mod check;
mod duration;
mod listen;
mod raw;
mod registrar;
mod security;
mod server;
mod shadow;
mod template;

use check::{dead_rules, dynamic_host, host_pinned, key_path, unfenced_targets, Captures};
pub use duration::parse_duration;
pub use listen::{parse_listen, Listen};
pub use registrar::{AuthConfig, RegistrarSettings, StoreSettings, LOCATION_TARGET};
use security::compile_security;
pub use server::{ConnectionLimits, ServerSettings, DEFAULT_LINGER};
use template::{expand, Template};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rollover_net::NetConfig;
use rollover_proxy::{
    Cidr, FailoverPolicy, LateAnswer, ProxyConfig, Reach, ResponsePattern, RouteDecision, Router,
    SecurityConfig, Target, TargetPlan,
};
use rollover_sip::{HeaderName, Message, StatusCode};
use rollover_txn::{Peer, Transport};
use toml::Spanned;

use crate::raw::{RawConfig, RawFailover, RawRoute};

/// A configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {key}: {message}")]
pub struct ConfigError {
    /// The file (or `<embedded default>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key at fault (`route[2].match.request_uri`), or `(syntax)`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Something in a configuration that is allowed but almost certainly a mistake, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigWarning {
    /// The file (or `<embedded default>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key concerned (`route[3]`).
    pub key: String,
    /// What looks wrong.
    pub message: String,
}

/// Security settings from `[security]`.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Trusted sources, the allow list and the flood and overload limits.
    pub limits: SecurityConfig,
    /// The secret written in the file (`secret`), if any.
    pub secret: Option<String>,
    /// Where the secret is kept otherwise: read at start, made (random, mode 0600) when
    /// missing. Relative paths are taken from the working directory.
    pub secret_file: PathBuf,
}

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerSettings,
    /// `[security]`.
    pub security: SecuritySettings,
    /// `[failover]` and the `[[route]]` rules.
    pub plan: DialPlan,
    /// What `rollover check` should point out although the file is valid: rules no request
    /// can reach.
    pub warnings: Vec<ConfigWarning>,
    /// `[registrar]`, when written: REGISTER is answered here.
    pub registrar: Option<RegistrarSettings>,
    /// `[store]`.
    pub store: StoreSettings,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[script]`: a routing script whose `request_route` replaces the `[[route]]` rules
    /// (which it can still call). Loading it is the binary's job: this crate stays pure.
    pub script: Option<ScriptSettings>,
}

/// `[script]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSettings {
    /// `file`: the script, relative to the configuration file's folder when
    /// [`Config::load`] read it.
    pub file: std::path::PathBuf,
}

#[derive(Debug, Clone)]
enum Cond {
    Method(Regex),
    /// No `match.method` written: INVITE only.
    InviteOnly,
    RequestUri(Regex),
    To(Regex),
    From(Regex),
    Header(String, Regex),
    Source(Cidr),
    Transport(Regex),
}

#[derive(Debug, Clone)]
enum Action {
    /// Groups of target templates, tried in order, each forked in parallel.
    Targets(Vec<Vec<Template>>),
    Reject(StatusCode, String),
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    conds: Vec<Cond>,
    action: Action,
    policy: FailoverPolicy,
    /// Whether a target is filled in from captures per call: otherwise the conditions are
    /// only tested, and no capture is copied out.
    fills: bool,
}

impl Rule {
    /// The hosts this rule's targets name literally (not from a capture).
    fn literal_hosts(&self) -> Vec<String> {
        let Action::Targets(groups) = &self.action else {
            return Vec::new();
        };
        groups
            .iter()
            .flatten()
            .filter(|t| !dynamic_host(t))
            .filter_map(|t| Target::parse(&t.replace('$', "x")).ok())
            .filter_map(|t| t.sip_uri().map(|u| u.host.to_string()))
            .collect()
    }
}

/// The compiled routing rules.
#[derive(Debug, Clone)]
pub struct DialPlan {
    rules: Vec<Rule>,
    defaults: FailoverPolicy,
    no_match: (StatusCode, String),
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let upto = self
            .text
            .get(..span.start.min(self.text.len()))
            .unwrap_or_default();
        let line = upto.matches('\n').count() + 1;
        let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// An error about a string value, pointing at `offset` inside it when the value is
    /// written without escapes (so the column is that of the character at fault).
    fn err_in(
        &self,
        v: &Spanned<String>,
        offset: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let span = v.span();
        let inner = self.text.get(span.start + 1..span.end.saturating_sub(1));
        let start = if inner == Some(v.get_ref().as_str()) {
            span.start + 1 + offset
        } else {
            span.start
        };
        self.err(start..start, key, message)
    }

    fn duration(
        &self,
        v: &Option<Spanned<duration::RawDuration>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => s
                .get_ref()
                .to_duration()
                .map_err(|m| self.err(s.span(), key, m)),
        }
    }

    fn count(
        &self,
        v: &Option<Spanned<i64>>,
        key: &str,
        min: i64,
        max: i64,
        default: usize,
    ) -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) => usize::try_from(*n.get_ref())
                .ok()
                .filter(|_| (min..=max).contains(n.get_ref()))
                .ok_or_else(|| {
                    self.err(
                        n.span(),
                        key,
                        format!("expected a number from {min} to {max}"),
                    )
                }),
        }
    }

    fn cidr(&self, v: &Spanned<String>, key: &str) -> Result<Cidr, ConfigError> {
        v.get_ref().parse::<Cidr>().map_err(|_| {
            self.err(
                v.span(),
                key,
                "expected an address or CIDR such as 10.0.0.0/8",
            )
        })
    }

    fn regex(&self, v: &Spanned<String>, key: &str) -> Result<Regex, ConfigError> {
        Regex::new(v.get_ref())
            .map_err(|e| self.err(v.span(), key, format!("invalid regular expression: {e}")))
    }

    fn policy(
        &self,
        raw: &RawFailover,
        base: &FailoverPolicy,
        prefix: &str,
    ) -> Result<FailoverPolicy, ConfigError> {
        let key = |k: &str| format!("{prefix}{k}");
        Ok(FailoverPolicy {
            no_response_timeout: self.duration(
                &raw.no_response_timeout,
                &key("no_response_timeout"),
                base.no_response_timeout,
            )?,
            ring_timeout: self.duration(
                &raw.ring_timeout,
                &key("ring_timeout"),
                base.ring_timeout,
            )?,
            on_response: match &raw.on_response {
                None => base.on_response.clone(),
                Some(p) => ResponsePattern::new(p.get_ref())
                    .map_err(|e| self.err(p.span(), &key("on_response"), e.reason))?,
            },
            follow_redirects: raw.follow_redirects.unwrap_or(base.follow_redirects),
            max_targets: match &raw.max_targets {
                None => base.max_targets,
                Some(m) => usize::try_from(*m.get_ref())
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        self.err(
                            m.span(),
                            &key("max_targets"),
                            "expected a number from 1 to 1000",
                        )
                    })?,
            },
            reach: match &raw.reach {
                None => base.reach.clone(),
                Some(list) => {
                    let mut entries = Vec::new();
                    for e in list {
                        Reach::parse(&[e.get_ref().as_str()])
                            .map_err(|err| self.err(e.span(), &key("reach"), err.to_string()))?;
                        entries.push(e.get_ref().as_str());
                    }
                    Some(Arc::new(Reach::parse(&entries).map_err(|err| {
                        self.err(0..0, &key("reach"), err.to_string())
                    })?))
                }
            },
        })
    }
}

impl Config {
    /// Reads and compiles a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: e.to_string(),
        })?;
        let mut cfg = Config::parse(&file, &text)?;
        if let (Some(s), Some(dir)) = (&mut cfg.script, path.parent()) {
            if s.file.is_relative() {
                s.file = dir.join(&s.file);
            }
        }
        Ok(cfg)
    }

    /// Compiles configuration text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let mut err = cx.err(e.span().unwrap_or(0..0), "(syntax)", e.message().trim());
            if let Some(key) = e
                .message()
                .split('`')
                .nth(1)
                .filter(|_| e.message().contains("unknown field"))
            {
                err.key = e
                    .span()
                    .and_then(|span| key_path(text, span))
                    .unwrap_or_else(|| key.to_owned());
            }
            err
        })?;
        let s = &raw.server;
        let mut listen = Vec::new();
        let mut advertise = Vec::new();
        for l in s.listen.clone().unwrap_or_else(|| {
            vec![
                Spanned::new(0..0, "udp:127.0.0.1:5060".to_owned()),
                Spanned::new(0..0, "tcp:127.0.0.1:5060".to_owned()),
            ]
        }) {
            let entry =
                parse_listen(l.get_ref()).map_err(|m| cx.err(l.span(), "server.listen", m))?;
            listen.push((entry.transport, entry.addr));
            if let Some(a) = entry.advertise {
                advertise.push((entry.transport, a));
            }
        }
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => return Err(cx.err(0..0, "server.tls_cert", "tls_cert and tls_key go together")),
        };
        if tls.is_none() && listen.iter().any(|(t, _)| *t == Transport::Tls) {
            return Err(cx.err(
                0..0,
                "server.listen",
                "a tls: listener needs server.tls_cert and server.tls_key",
            ));
        }
        // Each default lives with the layer that uses it.
        let txn_d = rollover_txn::Config::default();
        let proxy_d = ProxyConfig::default();
        let net_d = NetConfig::default();
        let server = ServerSettings {
            listen,
            advertise,
            record_route: s.record_route.unwrap_or(proxy_d.record_route),
            t1: cx.duration(&s.t1, "server.t1", txn_d.t1)?,
            t2: cx.duration(&s.t2, "server.t2", txn_d.t2)?,
            t4: cx.duration(&s.t4, "server.t4", txn_d.t4)?,
            timer_c: cx.duration(&s.timer_c, "server.timer_c", proxy_d.timer_c)?,
            max_message_size: match &s.max_message_size {
                None => net_d.max_message_size,
                Some(m) => usize::try_from(*m.get_ref())
                    .ok()
                    .filter(|n| (1024..=1 << 24).contains(n))
                    .ok_or_else(|| {
                        cx.err(
                            m.span(),
                            "server.max_message_size",
                            "expected 1024 to 16777216 bytes",
                        )
                    })?,
            },
            tls,
            late_answer: match &s.late_answer {
                None => proxy_d.late_answer,
                Some(v) => match v.get_ref().as_str() {
                    "relay" => LateAnswer::Relay,
                    "hangup" => LateAnswer::Hangup,
                    _ => {
                        return Err(cx.err(
                            v.span(),
                            "server.late_answer",
                            "expected \"relay\" or \"hangup\"",
                        ))
                    }
                },
            },
            udp_mtu: cx.count(&s.udp_mtu, "server.udp_mtu", 0, 65_535, proxy_d.udp_mtu)?,
            udp_mtu_try: match &s.udp_mtu_try {
                None => proxy_d.udp_mtu_try,
                Some(v) => match Transport::from_token(v.get_ref()) {
                    Some(t @ (Transport::Tcp | Transport::Tls)) => t,
                    _ => {
                        return Err(cx.err(
                            v.span(),
                            "server.udp_mtu_try",
                            "expected \"tcp\" or \"tls\"",
                        ))
                    }
                },
            },
            linger: cx.linger(&s.linger)?,
            workers: match &s.workers {
                None => None,
                Some(_) => Some(cx.count(&s.workers, "server.workers", 1, 256, 1)?),
            },
            drain_timeout: cx.duration(
                &s.drain_timeout,
                "server.drain_timeout",
                Duration::from_secs(60),
            )?,
            connections: ConnectionLimits {
                idle_timeout: cx.duration(
                    &s.connection_idle_timeout,
                    "server.connection_idle_timeout",
                    net_d.connection_idle_timeout,
                )?,
                max_incoming: cx.count(
                    &s.max_incoming_connections,
                    "server.max_incoming_connections",
                    1,
                    1_000_000,
                    net_d.max_incoming_connections,
                )?,
                max_outgoing: cx.count(
                    &s.max_outgoing_connections,
                    "server.max_outgoing_connections",
                    1,
                    1_000_000,
                    net_d.max_outgoing_connections,
                )?,
                max_per_ip: cx.count(
                    &s.max_connections_per_ip,
                    "server.max_connections_per_ip",
                    1,
                    1_000_000,
                    net_d.max_connections_per_ip,
                )?,
                header_timeout: cx.duration(
                    &s.header_timeout,
                    "server.header_timeout",
                    net_d.header_timeout,
                )?,
                unused_timeout: cx.duration(
                    &s.unused_connection_timeout,
                    "server.unused_connection_timeout",
                    net_d.unused_connection_timeout,
                )?,
            },
        };
        let no_match = match &s.no_match {
            None => (
                StatusCode::NOT_FOUND,
                s.no_match_reason
                    .clone()
                    .unwrap_or_else(|| "Not Found".into()),
            ),
            Some(c) => {
                let code = u16::try_from(*c.get_ref())
                    .ok()
                    .filter(|c| (400..700).contains(c))
                    .and_then(|c| StatusCode::new(c).ok());
                let code = code.ok_or_else(|| {
                    cx.err(
                        c.span(),
                        "server.no_match",
                        "expected a status from 400 to 699",
                    )
                })?;
                (
                    code,
                    s.no_match_reason
                        .clone()
                        .unwrap_or_else(|| "Not Found".into()),
                )
            }
        };
        let defaults = cx.policy(&raw.failover, &FailoverPolicy::default(), "failover.")?;
        let mut rules = Vec::new();
        for (i, r) in raw.route.iter().enumerate() {
            rules.push(compile_rule(&cx, i, r.get_ref(), &defaults)?);
        }
        // Without a `reach`, redirects and `${ruri}` may lead only to hosts the plan names.
        let named = Arc::new(Reach::named(
            rules
                .iter()
                .flat_map(Rule::literal_hosts)
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        ));
        let mut defaults = defaults;
        if defaults.reach.is_none() {
            defaults.reach = Some(named.clone());
        }
        for r in &mut rules {
            if r.policy.reach.is_none() {
                r.policy.reach = Some(named.clone());
            }
        }
        let security = compile_security(&cx, &raw.security)?;
        let registrar = registrar::compile_registrar(&cx, raw.registrar.as_ref())?;
        if registrar.is_none() {
            registrar::location_needs_registrar(&cx, &raw.route)?;
        }
        let store = registrar::compile_store(&cx, &raw.store)?;
        let auth = registrar::compile_auth(&cx, &raw.auth)?;
        let mut warnings = dead_rules(&cx, &raw.route, &rules);
        warnings.extend(unfenced_targets(&cx, &raw.route, &rules));
        let script = match &raw.script {
            Some(sc) if sc.file.get_ref().trim().is_empty() => {
                return Err(cx.err(sc.file.span(), "script.file", "the script file is empty"));
            }
            Some(sc) => Some(ScriptSettings {
                file: sc.file.get_ref().into(),
            }),
            None => None,
        };
        Ok(Config {
            script,
            server,
            security,
            plan: DialPlan {
                rules,
                defaults,
                no_match,
            },
            warnings,
            registrar,
            store,
            auth,
        })
    }
}

fn compile_rule(
    cx: &Ctx<'_>,
    i: usize,
    r: &RawRoute,
    defaults: &FailoverPolicy,
) -> Result<Rule, ConfigError> {
    let prefix = format!("route[{}]", i + 1);
    let key = |k: &str| format!("{prefix}.{k}");
    let m = &r.conditions;
    let mut conds = Vec::new();
    match &m.method {
        Some(v) => conds.push(Cond::Method(cx.regex(v, &key("match.method"))?)),
        // Without match.method a rule routes calls only: OPTIONS pings, REGISTERs and
        // MESSAGEs must not reach PSTN targets by accident.
        None => conds.push(Cond::InviteOnly),
    }
    if let Some(v) = &m.request_uri {
        conds.push(Cond::RequestUri(cx.regex(v, &key("match.request_uri"))?));
    }
    if let Some(v) = &m.to {
        conds.push(Cond::To(cx.regex(v, &key("match.to"))?));
    }
    if let Some(v) = &m.from {
        conds.push(Cond::From(cx.regex(v, &key("match.from"))?));
    }
    for (name, v) in &m.header {
        conds.push(Cond::Header(
            name.clone(),
            cx.regex(v, &key(&format!("match.header.{name}")))?,
        ));
    }
    if let Some(v) = &m.source {
        let net = cx.cidr(v, &key("match.source"))?;
        conds.push(Cond::Source(net));
    }
    if let Some(v) = &m.transport {
        conds.push(Cond::Transport(cx.regex(v, &key("match.transport"))?));
    }
    let captures = Captures::of(&conds);
    let check_target = |t: &Spanned<String>, k: &str| -> Result<String, ConfigError> {
        if t.get_ref().trim() == LOCATION_TARGET {
            return Ok(LOCATION_TARGET.to_owned());
        }
        if let Some((offset, message)) = captures.check(t.get_ref()) {
            return Err(cx.err_in(t, offset, k, message));
        }
        // Templates are checked with captures replaced by placeholders: a capture may be a
        // user part, a host, a port or a whole URI, so the template is good when one fits.
        let mut first = None;
        for placeholder in ["1", "x", "192.0.2.1", "sip:x@192.0.2.1"] {
            let mut caps: HashMap<String, String> = captures
                .named
                .iter()
                .map(|n| (n.clone(), placeholder.to_owned()))
                .chain(
                    (0..captures.numbered.unwrap_or(0))
                        .map(|i| (i.to_string(), placeholder.to_owned())),
                )
                .collect();
            caps.insert("ruri".to_owned(), "sip:x@192.0.2.1".to_owned());
            match Target::parse(&expand(t.get_ref(), &caps)) {
                Ok(_) => return Ok(t.get_ref().clone()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        let message = match first {
            Some(e) if t.get_ref().contains('$') => {
                format!("target {:?}: {}", t.get_ref(), e.problem)
            }
            Some(e) => e.to_string(),
            None => "not a target".to_owned(),
        };
        Err(cx.err(t.span(), k, message))
    };
    let actions = [r.targets.is_some(), r.group.is_some(), r.reject.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if actions != 1 {
        return Err(cx.err(
            0..0,
            &prefix,
            "a route needs exactly one of targets, [[route.group]] or reject",
        ));
    }
    let action = if let Some(targets) = &r.targets {
        let list = targets
            .iter()
            .enumerate()
            .map(|(n, t)| check_target(t, &key(&format!("targets[{}]", n + 1))).map(Template::new))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(cx.err(0..0, &key("targets"), "no targets"));
        }
        match r.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("serial", _)) => {
                Action::Targets(list.into_iter().map(|t| vec![t]).collect())
            }
            Some(("parallel", _)) => Action::Targets(vec![list]),
            Some((_, span)) => {
                return Err(cx.err(span, &key("mode"), "expected \"serial\" or \"parallel\""))
            }
        }
    } else if let Some(groups) = &r.group {
        let mut out = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let k = key(&format!("group[{}].targets", g + 1));
            let list = group
                .targets
                .iter()
                .enumerate()
                .map(|(n, t)| check_target(t, &format!("{k}[{}]", n + 1)).map(Template::new))
                .collect::<Result<Vec<_>, _>>()?;
            if list.is_empty() {
                return Err(cx.err(0..0, &k, "no targets"));
            }
            out.push(list);
        }
        Action::Targets(out)
    } else if let Some(code) = &r.reject {
        let c = u16::try_from(*code.get_ref())
            .ok()
            .filter(|c| (300..700).contains(c))
            .and_then(|c| StatusCode::new(c).ok())
            .ok_or_else(|| {
                cx.err(
                    code.span(),
                    &key("reject"),
                    "expected a status from 300 to 699",
                )
            })?;
        Action::Reject(c, r.reason.clone().unwrap_or_else(|| c.reason().into()))
    } else {
        return Err(cx.err(
            0..0,
            &prefix,
            "a route needs targets, [[route.group]] or reject",
        ));
    };
    let fills = match &action {
        Action::Targets(groups) => groups.iter().flatten().any(|t| t.fixed.is_none()),
        Action::Reject(..) => false,
    };
    Ok(Rule {
        fills,
        name: Arc::from(
            r.name
                .clone()
                .unwrap_or_else(|| format!("route #{}", i + 1)),
        ),
        conds,
        action,
        policy: cx.policy(&r.failover, defaults, &format!("{prefix}.failover."))?,
    })
}

/// The outcome of matching one request, for `rollover route` and the router.
#[derive(Debug, Clone)]
pub struct Match {
    /// The rule that matched, if any.
    pub rule: Option<Arc<str>>,
    /// What the proxy will do.
    pub decision: RouteDecision,
}

impl DialPlan {
    /// The defaults from `[failover]`.
    pub fn defaults(&self) -> &FailoverPolicy {
        &self.defaults
    }

    /// Matches a request: the first rule whose conditions all hold.
    pub fn explain(&self, req: &Message, source: &Peer) -> Match {
        for rule in &self.rules {
            let Some(caps) = matches(rule, req, source) else {
                continue;
            };
            let decision = match &rule.action {
                Action::Reject(status, reason) => RouteDecision::Reject {
                    status: *status,
                    reason: reason.clone(),
                    rule: rule.name.clone(),
                },
                Action::Targets(groups) => {
                    let mut plan = TargetPlan::default();
                    let mut pinned = None;
                    for g in groups {
                        let mut group = Vec::new();
                        for t in g {
                            if let Some(fixed) = &t.fixed {
                                group.push(fixed.clone());
                                continue;
                            }
                            if **t == *LOCATION_TARGET {
                                // Expanded by the location service (see `location_target`).
                                group.push(location_target());
                                continue;
                            }
                            let Ok(target) = Target::parse(&expand(t, &caps)) else {
                                continue;
                            };
                            if dynamic_host(t) {
                                // A host the caller chose: only behind a fence.
                                let pinned = *pinned.get_or_insert_with(|| host_pinned(rule, req));
                                let reach = rule.policy.reach.as_ref();
                                if !pinned && !reach.is_some_and(|r| r.allows_uri(&target.uri)) {
                                    tracing::info!(
                                        call_id = req.call_id().unwrap_or("-"),
                                        "rule {:?}: skipped target {target} (from {}): its host is neither pinned by match.request_uri nor in the reach {}",
                                        rule.name,
                                        &**t,
                                        reach.map_or_else(String::new, ToString::to_string)
                                    );
                                    continue;
                                }
                            }
                            group.push(target);
                        }
                        if !group.is_empty() {
                            plan.groups.push(group);
                        }
                    }
                    if plan.groups.is_empty() {
                        RouteDecision::Reject {
                            status: self.no_match.0,
                            reason: self.no_match.1.clone(),
                            rule: rule.name.clone(),
                        }
                    } else {
                        RouteDecision::Targets {
                            plan,
                            policy: rule.policy.clone(),
                            rule: rule.name.clone(),
                        }
                    }
                }
            };
            return Match {
                rule: Some(rule.name.clone()),
                decision,
            };
        }
        if req.method() == Some(&rollover_sip::Method::Register) {
            // No registrar here (yet): say so, rather than "not found".
            return Match {
                rule: None,
                decision: RouteDecision::Reject {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    reason: StatusCode::METHOD_NOT_ALLOWED.reason().into(),
                    rule: Arc::from("(no registrar)"),
                },
            };
        }
        Match {
            rule: None,
            decision: RouteDecision::Reject {
                status: self.no_match.0,
                reason: self.no_match.1.clone(),
                rule: Arc::from("(no rule matched)"),
            },
        }
    }
}

/// The placeholder a `location:` target routes as: whoever runs the plan with a location
/// service replaces it with the Request-URI's registered contacts (one group per q value);
/// without one it is a target that cannot be reached.
pub fn location_target() -> Target {
    Target::location()
}

/// Whether `t` is the `location:` placeholder.
pub fn is_location_target(t: &Target) -> bool {
    t.is_location()
}

fn matches(rule: &Rule, req: &Message, source: &Peer) -> Option<HashMap<String, String>> {
    let mut caps = HashMap::new();
    if rule.fills {
        // `${ruri}`: the Request-URI as received (the seed's "original destination first").
        caps.insert(
            "ruri".to_owned(),
            req.request_uri_str().unwrap_or_default().to_owned(),
        );
    }
    let mut take = |re: &Regex, text: &str, numbered: bool| -> bool {
        if !rule.fills {
            return re.is_match(text);
        }
        let Some(c) = re.captures(text) else {
            return false;
        };
        for (i, name) in re.capture_names().enumerate() {
            if let Some(m) = c.get(i) {
                if let Some(n) = name {
                    caps.insert(n.to_owned(), m.as_str().to_owned());
                }
                if numbered {
                    caps.insert(i.to_string(), m.as_str().to_owned());
                }
            }
        }
        true
    };
    for c in &rule.conds {
        let ok = match c {
            Cond::Method(re) => take(re, req.method().map_or("", |m| m.as_str()), false),
            Cond::InviteOnly => req.method() == Some(&rollover_sip::Method::Invite),
            Cond::RequestUri(re) => take(re, req.request_uri_str().unwrap_or_default(), true),
            Cond::To(re) => req
                .header(HeaderName::To)
                .is_some_and(|h| take(re, &req.value_unfolded(h), false)),
            Cond::From(re) => req
                .header(HeaderName::From)
                .is_some_and(|h| take(re, &req.value_unfolded(h), false)),
            Cond::Header(name, re) => {
                let values: Vec<String> = req
                    .headers_by_name(name)
                    .map(|h| req.value_unfolded(h).into_owned())
                    .collect();
                values.iter().any(|v| take(re, v, false))
            }
            Cond::Source(net) => net.contains(source.addr.ip()),
            Cond::Transport(re) => take(re, &source.transport.as_str().to_ascii_lowercase(), false),
        };
        if !ok {
            return None;
        }
    }
    Some(caps)
}

impl Router for DialPlan {
    fn route(&self, request: &Message, source: &Peer) -> RouteDecision {
        self.explain(request, source).decision
    }
}

impl fmt::Display for DialPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "defaults: {}", self.defaults)?;
        for (i, r) in self.rules.iter().enumerate() {
            writeln!(f, "{}. {}", i + 1, r.name)?;
            for c in &r.conds {
                let text = match c {
                    Cond::Method(re) => format!("method ~ {re}"),
                    Cond::InviteOnly => "method INVITE (no match.method)".to_owned(),
                    Cond::RequestUri(re) => format!("request_uri ~ {re}"),
                    Cond::To(re) => format!("to ~ {re}"),
                    Cond::From(re) => format!("from ~ {re}"),
                    Cond::Header(n, re) => format!("header {n} ~ {re}"),
                    Cond::Source(net) => format!("source in {net}"),
                    Cond::Transport(re) => format!("transport ~ {re}"),
                };
                writeln!(f, "     when {text}")?;
            }
            match &r.action {
                Action::Reject(c, reason) => writeln!(f, "     reject {c} {reason}")?,
                Action::Targets(groups) => {
                    for (g, group) in groups.iter().enumerate() {
                        let how = if group.len() > 1 { "in parallel" } else { "" };
                        let texts: Vec<&str> = group.iter().map(|t| &**t).collect();
                        writeln!(f, "     {}) {} {how}", g + 1, texts.join(", "))?;
                    }
                    writeln!(f, "     failover: {}", r.policy)?;
                }
            }
        }
        writeln!(
            f,
            "no rule matched: reject {} {}",
            self.no_match.0, self.no_match.1
        )
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_registrar;
