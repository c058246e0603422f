//! Runs the real proxy core and transaction layer against scripted targets in virtual
//! time: "what will my plan do when carrier B returns 503 after 2 s", without sockets.
//!
//! A world says how each target behaves, one entry per target, separated by white space
//! or new lines (`#` starts a comment):
//!
//! ```text
//! a=100,silence        a sends 100 Trying, then nothing
//! b=180@2s,486@5s      b rings after 2 s and rejects at 5 s (times from the INVITE)
//! c=302(sip:d@h;q=0.5,sip:e@h;q=1)   c redirects (Contacts in parentheses)
//! e=200@1s             e answers after 1 s
//! d=unreachable        the transport to d fails at once
//! f=silence            f never answers (the default for a target the world does not name)
//! ```
//!
//! `caller=cancel@3s` makes the caller CANCEL its INVITE after 3 s.
//!
//! A name matches a target when it equals the target URI's user part, its host, or the
//! whole URI. A target that receives CANCEL before its final answers 200 and 487.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::{HeaderName, Message, Method, RequestBuilder, Uri};
use rollover_txn::{Config, FrontDoor, Peer, Transmit, Transport, TransportError, TxnLayer};

use crate::core::{Proxy, ProxyConfig};
use crate::router::Router;
use rollover_failover::Decision;
use rollover_failover::Resolver;

/// One scripted response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The status.
    pub status: u16,
    /// When, after the INVITE arrives.
    pub at: Duration,
    /// Contacts (for 3xx).
    pub contacts: Vec<String>,
}

/// How a target behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// These responses, then silence.
    Script(Vec<Step>),
    /// The transport fails at once (connection refused).
    Unreachable,
}

/// A world that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("world entry {entry:?}: {reason}")]
pub struct WorldError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong.
    pub reason: String,
}

/// The scripted targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    entries: Vec<(String, Behaviour)>,
    caller_cancel: Option<Duration>,
}

/// Parses `2s`, `1.5s`, `800ms` or bare seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s').unwrap_or(s).trim();
    let v: f64 = secs.parse().ok()?;
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| Duration::from_secs_f64(v))
}

fn split_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(s.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(s.get(start..).unwrap_or_default());
    items
}

impl World {
    /// Parses a world (see the module docs).
    pub fn parse(text: &str) -> Result<World, WorldError> {
        let mut entries = Vec::new();
        let mut caller_cancel = None;
        let clean: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        for entry in clean.split_whitespace() {
            let err = |reason: &str| WorldError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (name, spec) = entry
                .split_once('=')
                .ok_or_else(|| err("expected name=behaviour"))?;
            if name.is_empty() {
                return Err(err("empty target name"));
            }
            if name == "caller" {
                let at = spec
                    .strip_prefix("cancel@")
                    .and_then(parse_duration)
                    .ok_or_else(|| err("the caller can only cancel: caller=cancel@3s"))?;
                caller_cancel = Some(at);
                continue;
            }
            let mut steps = Vec::new();
            let mut behaviour = None;
            for item in split_items(spec) {
                match item {
                    "silence" => {}
                    "unreachable" => behaviour = Some(Behaviour::Unreachable),
                    _ => {
                        let (body, at) = match item.rsplit_once('@') {
                            Some((b, t)) if !t.contains(')') => (
                                b,
                                parse_duration(t)
                                    .ok_or_else(|| err("bad time after @ (use 2s, 1.5s, 800ms)"))?,
                            ),
                            _ => (item, Duration::ZERO),
                        };
                        let (code, contacts) = match body.split_once('(') {
                            Some((c, rest)) => {
                                let inner =
                                    rest.strip_suffix(')').ok_or_else(|| err("unclosed ("))?;
                                (
                                    c,
                                    inner
                                        .split(',')
                                        .map(|s| s.trim().to_owned())
                                        .filter(|s| !s.is_empty())
                                        .collect(),
                                )
                            }
                            None => (body, Vec::new()),
                        };
                        let status: u16 = code
                            .parse()
                            .ok()
                            .filter(|c| (100..700).contains(c))
                            .ok_or_else(|| {
                                err("expected a status code 100-699, silence or unreachable")
                            })?;
                        steps.push(Step {
                            status,
                            at,
                            contacts,
                        });
                    }
                }
            }
            entries.push((
                name.to_owned(),
                behaviour.unwrap_or(Behaviour::Script(steps)),
            ));
        }
        Ok(World {
            entries,
            caller_cancel,
        })
    }

    /// The behaviour for a Request-URI.
    pub fn behaviour(&self, uri: &str) -> Option<&Behaviour> {
        let parsed = Uri::parse(uri).ok();
        let sip = parsed.as_ref().and_then(Uri::as_sip);
        let user = sip.and_then(|u| u.user);
        let host = sip.map(|u| u.host.to_string());
        let bare = uri.split(';').next().unwrap_or(uri);
        self.entries
            .iter()
            .find(|(n, _)| {
                Some(n.as_str()) == user || Some(n) == host.as_ref() || n == uri || n == bare
            })
            .map(|(_, b)| b)
    }
}

/// Maps every host to a stable documentation address: nothing leaves the simulation.
struct SimResolver;

impl Resolver for SimResolver {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        host.hash(&mut h);
        let last = 10 + (h.finish() % 200) as u8;
        Some(SocketAddr::from(([192, 0, 2, last], port)))
    }
}

const CALLER: ([u8; 4], u16) = ([198, 51, 100, 1], 5060);

/// A response a scripted target will send.
#[derive(Debug)]
struct Due {
    from: Peer,
    bytes: Bytes,
    branch: String,
    target: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Time since the request arrived.
    pub at: Duration,
    /// What happened.
    pub text: String,
}

/// The result of a simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything, in order.
    pub timeline: Vec<Line>,
    /// The final status the caller received, if any.
    pub final_status: Option<u16>,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// Response contexts and transactions still held when the simulation ended (0 once every
    /// timer has run: nothing is kept forever).
    pub leftover: (usize, usize),
}

impl Outcome {
    /// The timeline as text, one line each: `  12.500s  text`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.timeline {
            let _ = writeln!(out, "{:>9.3}s  {}", l.at.as_secs_f64(), l.text);
        }
        out
    }
}

/// The scripted targets at work: they take what the element under test sends them and
/// answer as the world says, on the virtual clock. Shared by `run` (a proxy) and the user
/// agent's tests.
#[derive(Debug)]
pub struct Targets<'w> {
    world: &'w World,
    agenda: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, Due>,
    seq: u64,
    /// INVITE branch → final sent (or cancelled).
    invites: HashMap<String, bool>,
    cancelled: HashMap<String, bool>,
    /// What happened, for a timeline: (time, text).
    pub lines: Vec<(Instant, String)>,
}

impl<'w> Targets<'w> {
    /// Targets behaving as `world` says.
    pub fn new(world: &'w World) -> Targets<'w> {
        Targets {
            world,
            agenda: BinaryHeap::new(),
            due: HashMap::new(),
            seq: 0,
            invites: HashMap::new(),
            cancelled: HashMap::new(),
            lines: Vec::new(),
        }
    }

    fn push(&mut self, at: Instant, due: Due) {
        self.seq += 1;
        self.due.insert(self.seq, due);
        self.agenda.push(Reverse((at, self.seq)));
    }

    /// A request the element sent to a target.
    pub fn on_request(&mut self, now: Instant, t: &Transmit, msg: &Message, txn: &mut TxnLayer) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let uri = msg.request_uri_str().unwrap_or_default().to_owned();
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        match method {
            Method::Invite => {
                let retrans = self.invites.contains_key(&branch);
                // The transport actually used, so a udp_mtu switch shows.
                let note = if retrans {
                    " (retransmission)".to_owned()
                } else {
                    format!(" [{}]", t.dest.transport)
                };
                self.lines.push((now, format!("→ INVITE {uri}{note}")));
                if retrans {
                    return;
                }
                self.invites.insert(branch.clone(), false);
                match self
                    .world
                    .behaviour(&uri)
                    .cloned()
                    .unwrap_or(Behaviour::Script(vec![]))
                {
                    Behaviour::Unreachable => {
                        self.lines.push((now, format!("  ✗ {uri} unreachable")));
                        if let Some(r) = t.txn {
                            txn.handle_transport_error(r, TransportError::Refused);
                        }
                    }
                    Behaviour::Script(steps) => {
                        for s in steps {
                            let mut b = msg
                                .response(s.status, reason(s.status))
                                .to_tag(&format!("uas-{}", s.status));
                            for c in &s.contacts {
                                b = b.header("Contact", &contact_value(c));
                            }
                            if (101..300).contains(&s.status) {
                                // A UAS copies Record-Route into what creates a dialog
                                // (§12.1.1), so the caller's ACK follows the route set.
                                b = b.copy_record_route();
                            }
                            if (200..300).contains(&s.status) {
                                b = b.header("Contact", &format!("<{uri}>"));
                            }
                            let due = Due {
                                from: t.dest,
                                bytes: b.build(),
                                branch: branch.clone(),
                                target: uri.clone(),
                            };
                            self.push(now + s.at, due);
                        }
                    }
                }
            }
            Method::Cancel => {
                self.lines
                    .push((now, format!("→ CANCEL {uri}{}", reason_suffix(msg))));
                let finished = self.invites.get(&branch).copied().unwrap_or(true);
                let ok = msg.response(200, "OK").to_tag("uas-c").build();
                self.push(
                    now,
                    Due {
                        from: t.dest,
                        bytes: ok,
                        branch: String::new(),
                        target: uri.clone(),
                    },
                );
                if !finished {
                    self.cancelled.insert(branch.clone(), true);
                    self.invites.insert(branch.clone(), true);
                    let invite_487 = Message::parse(
                        msg.response(487, "Request Terminated")
                            .to_tag("uas-487")
                            .build(),
                    )
                    .ok()
                    .and_then(|m| fix_cseq(&m, "INVITE"));
                    if let Some(bytes) = invite_487 {
                        self.push(
                            now,
                            Due {
                                from: t.dest,
                                bytes,
                                branch,
                                target: uri,
                            },
                        );
                    }
                }
            }
            Method::Ack => self.lines.push((now, format!("→ ACK {uri}"))),
            Method::Bye => {
                self.lines.push((now, format!("→ BYE {uri}")));
                let ok = msg.response(200, "OK").build();
                self.push(
                    now,
                    Due {
                        from: t.dest,
                        bytes: ok,
                        branch: String::new(),
                        target: uri,
                    },
                );
            }
            other => self.lines.push((now, format!("→ {other} {uri}"))),
        }
    }

    /// When the next scripted response is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.agenda.peek().map(|Reverse((t, _))| *t)
    }

    /// Sends the next due response into the transaction layer.
    pub fn fire(&mut self, now: Instant, txn: &mut TxnLayer) {
        let Some(Reverse((_, id))) = self.agenda.pop() else {
            return;
        };
        let Some(Due {
            from,
            bytes,
            branch,
            target,
        }) = self.due.remove(&id)
        else {
            return;
        };
        let Ok(resp) = Message::parse(bytes) else {
            return;
        };
        let code = resp.status().unwrap_or(0);
        let is_invite_resp = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if is_invite_resp && !branch.is_empty() {
            // Nothing after a final or a CANCEL.
            if self.invites.get(&branch).copied().unwrap_or(false)
                && !(code == 487 && self.cancelled.contains_key(&branch))
            {
                return;
            }
            if code >= 200 {
                self.invites.insert(branch.clone(), true);
                self.cancelled.remove(&branch);
            }
        }
        if is_invite_resp {
            let start_line = String::from_utf8_lossy(resp.start_line_bytes()).into_owned();
            self.lines
                .push((now, format!("← {start_line} from {target}")));
        }
        txn.handle_message(now, from, resp);
    }
}

/// Runs `request` through a proxy with `router` against `world`, for at most `limit` of
/// virtual time.
pub fn run<R: Router>(router: R, request: &Message, world: &World, limit: Duration) -> Outcome {
    let local = SocketAddr::from(([192, 0, 2, 1], 5060));
    let cfg = ProxyConfig {
        local: vec![
            (Transport::Udp, local),
            (Transport::Tcp, local),
            (Transport::Tls, SocketAddr::from(([192, 0, 2, 1], 5061))),
        ],
        ..ProxyConfig::default()
    };
    let caller = Peer {
        transport: Transport::Udp,
        addr: SocketAddr::from(CALLER),
    };
    run_from(
        cfg,
        router,
        request.as_bytes().clone(),
        caller,
        world,
        limit,
    )
}

/// Like [`run`], with the proxy's own settings (its addresses, secret and `[security]`)
/// and the request's bytes arriving from `caller`: they take the live proxy's path through
/// the same [`FrontDoor`] (parse, validate, stateless refusals, Via stamping, flood limit,
/// route sets), so a malformed or forged request is answered as the server answers it.
pub fn run_from<R: Router>(
    cfg: ProxyConfig,
    router: R,
    bytes: Bytes,
    caller: Peer,
    world: &World,
    limit: Duration,
) -> Outcome {
    let parsed = Message::parse(bytes.clone()).ok();
    #[allow(clippy::disallowed_methods)] // an arbitrary origin; all later times are virtual
    let start = Instant::now();
    let cfg = ProxyConfig {
        keep_decisions: true,
        ..cfg
    };
    let mut proxy = Proxy::new(cfg, router, Box::new(SimResolver));
    let mut txn = TxnLayer::new(Config::default());
    let mut out = Outcome {
        timeline: Vec::new(),
        final_status: None,
        decisions: Vec::new(),
        leftover: (0, 0),
    };
    let mut targets = Targets::new(world);
    let mut caller_cancel = world.caller_cancel.map(|at| start + at);
    let mut now = start;
    let mut lines: Vec<(Instant, String)> = Vec::new();
    let first_line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    lines.push((
        now,
        format!("caller → {}", String::from_utf8_lossy(first_line)),
    ));
    let mut door = FrontDoor::new(rollover_sip::Limits::default());
    door.handle(now, &mut proxy, &mut txn, caller, bytes, 0);

    loop {
        // Pump: events into the proxy, transmits into the world, until quiet.
        loop {
            let mut busy = false;
            while let Some(ev) = txn.poll_event() {
                busy = true;
                proxy.handle_txn_event(now, ev, &mut txn);
            }
            while let Some((_, _, d)) = proxy.poll_decision() {
                busy = true;
                if !matches!(d, Decision::Trying { .. }) {
                    lines.push((now, format!("  {d}")));
                }
                out.decisions.push(d);
            }
            while let Some(t) = txn.poll_transmit() {
                busy = true;
                let Ok(msg) = Message::parse(t.bytes.clone()) else {
                    continue;
                };
                if t.dest != caller {
                    targets.on_request(now, &t, &msg, &mut txn);
                    lines.append(&mut targets.lines);
                    continue;
                }
                lines.push((
                    now,
                    format!(
                        "caller ← {}",
                        String::from_utf8_lossy(msg.start_line_bytes())
                    ),
                ));
                let for_invite = msg.cseq().is_ok_and(|c| c.method == Method::Invite);
                if let Some(code) = msg.status().filter(|c| *c >= 200 && for_invite) {
                    out.final_status.get_or_insert(code);
                    if let Some(ack) = parsed.as_ref().and_then(|r| caller_ack(r, &msg)) {
                        txn.handle_message(now, caller, ack);
                    }
                }
            }
            if !busy {
                break;
            }
        }
        let next = [
            caller_cancel,
            targets.next_due(),
            txn.poll_timeout(),
            proxy.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next - start > limit {
            lines.push((start + limit, "simulation time limit reached".to_owned()));
            break;
        }
        now = next.max(now);
        if caller_cancel == Some(next) {
            caller_cancel = None;
            if out.final_status.is_none() {
                if let Some(c) = parsed
                    .as_ref()
                    .and_then(|r| r.cancel(None).ok())
                    .and_then(|b| Message::parse(b).ok())
                {
                    lines.push((now, "caller → CANCEL".to_owned()));
                    txn.handle_message(now, caller, c);
                }
            }
            continue;
        }
        if targets.next_due() == Some(next) {
            targets.fire(now, &mut txn);
            lines.append(&mut targets.lines);
            continue;
        }
        txn.handle_timeout(now);
        proxy.handle_timeout(now, &mut txn);
    }
    out.timeline = lines
        .into_iter()
        .map(|(at, text)| Line {
            at: at - start,
            text,
        })
        .collect();
    out.leftover = (proxy.calls(), txn.len());
    out
}

/// `sip:d@h;q=0.5` → `<sip:d@h>;q=0.5` (q is a Contact parameter, not a URI one).
fn contact_value(contact: &str) -> String {
    match contact.split_once(";q=") {
        Some((uri, q)) => format!("<{uri}>;q={q}"),
        None => format!("<{contact}>"),
    }
}

fn reason_suffix(msg: &Message) -> String {
    msg.header_str(HeaderName::Reason)
        .and_then(Result::ok)
        .map(|r| format!(" (Reason: {r})"))
        .unwrap_or_default()
}

/// The 487 for the INVITE is built from the CANCEL (same Via, tags, Call-ID); its CSeq
/// method must say INVITE.
fn fix_cseq(m: &Message, method: &str) -> Option<Bytes> {
    let h = m.header(HeaderName::CSeq)?;
    let seq = m.cseq().ok()?.seq;
    Some(
        m.edit()
            .replace_value(h, &format!("{seq} {method}"))
            .finish(),
    )
}

/// What the caller sends after a final: the ACK (same branch for a non-2xx, §17.1.1.3; a
/// new one for a 2xx, §13.2.2.4).
fn caller_ack(invite: &Message, resp: &Message) -> Option<Message> {
    let code = resp.status()?;
    if code >= 300 {
        return Message::parse(invite.ack_for(resp).ok()?).ok();
    }
    let target = resp
        .contacts()
        .next()
        .and_then(Result::ok)
        .map(|c| c.uri_str.to_owned())
        .or_else(|| invite.request_uri_str().map(str::to_owned))?;
    let mut b = RequestBuilder::new(Method::Ack, &target)
        .via(&format!(
            "SIP/2.0/UDP {}.{}.{}.{}:{};branch=z9hG4bK-caller-ack",
            CALLER.0[0], CALLER.0[1], CALLER.0[2], CALLER.0[3], CALLER.1
        ))
        .from(&String::from_utf8_lossy(
            invite.value_bytes(invite.header(HeaderName::From)?),
        ))
        .to(&String::from_utf8_lossy(
            resp.value_bytes(resp.header(HeaderName::To)?),
        ))
        .call_id(invite.call_id().ok()?)
        .cseq(invite.cseq().ok()?.seq);
    let rr: Vec<String> = resp
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| format!("<{}>", r.uri_str))
        .collect();
    for r in rr.iter().rev() {
        b = b.header("Route", r);
    }
    Message::parse(b.build().ok()?).ok()
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Scripted",
    }
}

/// A minimal INVITE from the caller to `uri`, for simulations given a URI, not a file.
pub fn invite_to(uri: &str) -> Option<Message> {
    let b = RequestBuilder::new(Method::Invite, uri)
        .via(&format!(
            "SIP/2.0/UDP {}.{}.{}.{}:{};branch=z9hG4bK-caller-1",
            CALLER.0[0], CALLER.0[1], CALLER.0[2], CALLER.0[3], CALLER.1
        ))
        .from("<sip:caller@example.com>;tag=caller")
        .to(&format!("<{uri}>"))
        .call_id("simulated-call@example.com")
        .cseq(1)
        .header("Contact", "<sip:caller@198.51.100.1:5060>")
        .build()
        .ok()?;
    Message::parse(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_grammar() {
        let w = World::parse("a=100,silence b=180@2s,486@5s c=302(sip:d@h;q=0.5,sip:e@h;q=1)\n# comment\ne=200@1.5s d=unreachable").unwrap();
        assert_eq!(
            w.behaviour("sip:a@10.0.0.1"),
            Some(&Behaviour::Script(vec![Step {
                status: 100,
                at: Duration::ZERO,
                contacts: vec![]
            }]))
        );
        assert_eq!(
            w.behaviour("sip:b@h"),
            Some(&Behaviour::Script(vec![
                Step {
                    status: 180,
                    at: Duration::from_secs(2),
                    contacts: vec![]
                },
                Step {
                    status: 486,
                    at: Duration::from_secs(5),
                    contacts: vec![]
                },
            ]))
        );
        match w.behaviour("sip:c@h") {
            Some(Behaviour::Script(s)) => {
                assert_eq!(s[0].contacts, ["sip:d@h;q=0.5", "sip:e@h;q=1"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.behaviour("sip:d@h"), Some(&Behaviour::Unreachable));
        assert!(World::parse("x").is_err());
        assert!(World::parse("x=999").is_err());
        assert!(World::parse("x=200@soon").is_err());
        assert_eq!(parse_duration("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
    }
}
