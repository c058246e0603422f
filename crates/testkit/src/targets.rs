//! The scripted targets (UASes): they take the requests an element sends them and answer
//! as the [`World`] says, on the virtual clock. They need no proxy: any element that sends
//! requests through a [`TxnLayer`] can be tested against them.
//!
//! A target that receives CANCEL before its final answers 200 and 487; a BYE gets 200; a
//! target says nothing after its final (or after a CANCEL), but answers a retransmitted
//! INVITE with the last response it sent, as a server transaction does (so a response a
//! lossy link dropped is recovered by the sender's retransmissions).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use rollover_sip::{HeaderName, Message, Method};
use rollover_txn::{Peer, Transmit, TransportError, TxnLayer};

use crate::world::{Behaviour, World};

/// A response a scripted target will send.
#[derive(Debug)]
struct Due {
    at_target: Peer,
    reply_to: Peer,
    bytes: Bytes,
    branch: String,
    target: String,
    /// A response sent again for a retransmitted request (not subject to the script).
    again: bool,
}

/// A response a target sends.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The target's address (where the request was sent).
    pub from: Peer,
    /// Where the request came from.
    pub to: Peer,
    /// The response.
    pub message: Message,
}

/// What became of a request sent to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    /// The target took it (it may answer later, or never).
    Taken,
    /// The target is unreachable: the transport failed at once (connection refused).
    Unreachable,
}

/// The scripted targets at work. See the module docs.
#[derive(Debug)]
pub struct Targets {
    world: World,
    agenda: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, Due>,
    seq: u64,
    /// INVITE branch → final sent (or cancelled).
    invites: HashMap<String, bool>,
    cancelled: HashMap<String, bool>,
    /// INVITE branch → the last response sent for it, with the target it came from.
    last: HashMap<String, (Bytes, String)>,
    /// What happened, for a timeline: (time, text). Whoever drives the targets takes them.
    pub lines: Vec<(Instant, String)>,
}

impl Targets {
    /// Targets behaving as `world` says.
    pub fn new(world: &World) -> Targets {
        Targets {
            world: world.clone(),
            agenda: BinaryHeap::new(),
            due: HashMap::new(),
            seq: 0,
            invites: HashMap::new(),
            cancelled: HashMap::new(),
            last: HashMap::new(),
            lines: Vec::new(),
        }
    }

    /// The world they follow.
    pub fn world(&self) -> &World {
        &self.world
    }

    fn push(&mut self, at: Instant, due: Due) {
        self.seq += 1;
        self.due.insert(self.seq, due);
        self.agenda.push(Reverse((at, self.seq)));
    }

    /// A request arriving at `at_target` from `from`, at `now`: the target's responses are
    /// scheduled (see [`Targets::next_due`] and [`Targets::fire_next`]).
    pub fn receive(
        &mut self,
        now: Instant,
        at_target: Peer,
        from: Peer,
        msg: &Message,
    ) -> Reception {
        let Some(method) = msg.method().cloned() else {
            return Reception::Taken;
        };
        let uri = msg.request_uri_str().unwrap_or_default().to_owned();
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let due = |bytes: Bytes, branch: String, target: String| Due {
            at_target,
            reply_to: from,
            bytes,
            branch,
            target,
            again: false,
        };
        match method {
            Method::Invite => {
                let retrans = self.invites.contains_key(&branch);
                // The transport actually used, so a udp_mtu switch shows.
                let note = if retrans {
                    " (retransmission)".to_owned()
                } else {
                    format!(" [{}]", at_target.transport)
                };
                self.lines.push((now, format!("→ INVITE {uri}{note}")));
                if retrans {
                    // As a server transaction does (§17.2.1): the last response again.
                    if let Some((bytes, target)) = self.last.get(&branch).cloned() {
                        let mut d = due(bytes, branch, target);
                        d.again = true;
                        self.push(now, d);
                    }
                    return Reception::Taken;
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
                        return Reception::Unreachable;
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
                            let d = due(b.build(), branch.clone(), uri.clone());
                            self.push(now + s.at, d);
                        }
                    }
                }
            }
            Method::Cancel => {
                self.lines
                    .push((now, format!("→ CANCEL {uri}{}", reason_suffix(msg))));
                let finished = self.invites.get(&branch).copied().unwrap_or(true);
                let ok = msg.response(200, "OK").to_tag("uas-c").build();
                self.push(now, due(ok, String::new(), uri.clone()));
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
                        self.push(now, due(bytes, branch, uri));
                    }
                }
            }
            Method::Ack => self.lines.push((now, format!("→ ACK {uri}"))),
            Method::Bye => {
                self.lines.push((now, format!("→ BYE {uri}")));
                let ok = msg.response(200, "OK").build();
                self.push(now, due(ok, String::new(), uri));
            }
            other => self.lines.push((now, format!("→ {other} {uri}"))),
        }
        Reception::Taken
    }

    /// When the next scripted response is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.agenda.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the next due response: the reply to send, or `None` when the script has
    /// nothing to say any more (a response after the target's final or a CANCEL).
    pub fn fire_next(&mut self, now: Instant) -> Option<Reply> {
        let Reverse((_, id)) = self.agenda.pop()?;
        let Due {
            at_target,
            reply_to,
            bytes,
            branch,
            target,
            again,
        } = self.due.remove(&id)?;
        let resp = Message::parse(bytes.clone()).ok()?;
        let code = resp.status().unwrap_or(0);
        let is_invite_resp = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if again {
            let start_line = String::from_utf8_lossy(resp.start_line_bytes()).into_owned();
            self.lines
                .push((now, format!("← {start_line} from {target} (again)")));
            return Some(Reply {
                from: at_target,
                to: reply_to,
                message: resp,
            });
        }
        if is_invite_resp && !branch.is_empty() {
            // Nothing after a final or a CANCEL.
            if self.invites.get(&branch).copied().unwrap_or(false)
                && !(code == 487 && self.cancelled.contains_key(&branch))
            {
                return None;
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
            if !branch.is_empty() {
                self.last.insert(branch, (bytes, target));
            }
        }
        Some(Reply {
            from: at_target,
            to: reply_to,
            message: resp,
        })
    }

    /// A request `txn` sent to a target (`t.dest`), with the transaction layer standing for
    /// a network without latency or loss: an unreachable target fails the transaction's
    /// transport at once.
    pub fn on_request(&mut self, now: Instant, t: &Transmit, msg: &Message, txn: &mut TxnLayer) {
        if self.receive(now, t.dest, t.dest, msg) == Reception::Unreachable {
            if let Some(r) = t.txn {
                txn.handle_transport_error(r, TransportError::Refused);
            }
        }
    }

    /// Sends the next due response into `txn` (see [`Targets::on_request`]).
    pub fn fire(&mut self, now: Instant, txn: &mut TxnLayer) {
        if let Some(r) = self.fire_next(now) {
            txn.handle_message(now, r.from, r.message);
        }
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

/// The reason phrase a scripted target sends with `code`.
pub fn reason(code: u16) -> &'static str {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rollover_sip::RequestBuilder;
    use rollover_txn::{Config, Event, Transport};

    use super::*;

    /// An element without a proxy (here a bare client transaction) against the targets.
    #[test]
    fn a_client_transaction_gets_the_scripted_answers() {
        let world = World::parse("a=180,486@1s").unwrap();
        let mut targets = Targets::new(&world);
        let mut txn = TxnLayer::new(Config::default());
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; later times are virtual
        let start = Instant::now();
        let invite = RequestBuilder::new(Method::Invite, "sip:a@192.0.2.10")
            .via("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-t1")
            .from("<sip:alice@example.com>;tag=t1")
            .to("<sip:a@example.com>")
            .call_id("t1@example.com")
            .cseq(1)
            .build()
            .unwrap();
        let dest = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.10:5060".parse().unwrap(),
        };
        txn.send_request(start, Message::parse(invite).unwrap(), dest)
            .unwrap();
        let mut now = start;
        let mut statuses = vec![];
        loop {
            while let Some(t) = txn.poll_transmit() {
                let msg = Message::parse(t.bytes.clone()).unwrap();
                targets.on_request(now, &t, &msg, &mut txn);
            }
            while let Some(ev) = txn.poll_event() {
                if let Event::Response { response, .. } = ev {
                    statuses.push(((now - start).as_secs_f64(), response.status().unwrap()));
                }
            }
            match targets.next_due() {
                Some(t) => {
                    now = t;
                    targets.fire(now, &mut txn);
                }
                None => break,
            }
        }
        assert_eq!(statuses, [(0.0, 180), (1.0, 486)]);
        assert!(targets
            .lines
            .iter()
            .any(|(_, l)| l == "→ ACK sip:a@192.0.2.10"));
        assert!(now - start <= Duration::from_secs(1));
    }
}
