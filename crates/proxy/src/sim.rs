//! Transitional: the scripted targets the user agent's tests still use. They live in
//! `rollover-testkit` now (`Targets`, `World`, same API, no proxy needed); once the user
//! agent's tests import them from there, this module is deleted. Not part of the API.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::{HeaderName, Message, Method, Uri};
use rollover_txn::{Peer, Transmit, TransportError, TxnLayer};

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
fn parse_duration(s: &str) -> Option<Duration> {
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

/// A response a scripted target will send.
#[derive(Debug)]
struct Due {
    from: Peer,
    bytes: Bytes,
    branch: String,
    target: String,
}

/// The scripted targets at work: they take what the element under test sends them and
/// answer as the world says, on the virtual clock.
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
