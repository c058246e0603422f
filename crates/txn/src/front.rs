//! The front door: bytes from the wire to the transaction layer, the same for the live
//! server, `rollover simulate` and every test, so each shows what the others do to a
//! malformed or forged message.
//!
//! ```text
//!  bytes ─▶ user.is_blocked(source)? (a flooding source) ─▶ dropped unread
//!        ─▶ parse ─┬─ unparseable: 400/513 from its own lines when its Via is readable
//!                  ├─ validate() fails: a request gets a stateless 4xx/5xx; a response is dropped
//!                  └─ Via received/rport (RFC 3581) ─▶ user.admit ─▶ TxnLayer::handle_message
//! ```
//!
//! Bad input is logged aggregated per source, never per datagram.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::{Limits, Message, Method};
use tracing::{debug, warn};

use crate::{Admit, Peer, TransactionUser, TxnLayer};

/// Parses, checks and admits what the transports deliver. See the module docs.
#[derive(Debug)]
pub struct FrontDoor {
    limits: Limits,
    noise: NoiseLog,
}

/// What the front door did with what arrived, for operators and a metrics exporter. Kept
/// in the transaction layer's [`crate::TxnStats`] (`front`): the door is that layer's
/// entrance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrontStats {
    /// Messages passed to the transaction layer.
    pub admitted: u64,
    /// Messages that did not parse (answered 400/513 when their lines allowed it).
    pub unparseable: u64,
    /// Parsed messages that failed `validate()` (a request answered 4xx/5xx).
    pub invalid: u64,
    /// Requests from a blocked source dropped before parsing, and messages the user dropped.
    pub dropped: u64,
    /// Requests the user answered itself (allow list, overload, draining).
    pub refused: u64,
    /// Streams closed because their bytes could not be framed.
    pub bad_streams: u64,
    /// Admitted messages handed to the worker owning their call (several workers).
    pub handed_off: u64,
}

impl std::fmt::Display for FrontStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "admitted={} unparseable={} invalid={} dropped={} refused={} bad_streams={} handed_off={}",
            self.admitted,
            self.unparseable,
            self.invalid,
            self.dropped,
            self.refused,
            self.bad_streams,
            self.handed_off
        )
    }
}

impl FrontDoor {
    /// A door with these limits on message size and shape.
    pub fn new(limits: Limits) -> FrontDoor {
        FrontDoor {
            limits,
            noise: NoiseLog::default(),
        }
    }

    /// One datagram, or one message framed from a stream, received from `source`;
    /// `backlog` is how many received messages wait behind it (for admission control).
    pub fn handle<U: TransactionUser>(
        &mut self,
        now: Instant,
        user: &mut U,
        txn: &mut TxnLayer,
        source: Peer,
        bytes: Bytes,
        backlog: usize,
    ) {
        if let Some(msg) = self.screen(now, user, txn, source, bytes, backlog) {
            txn.handle_message(now, source, msg);
        }
    }

    /// Everything [`FrontDoor::handle`] does but the last step: the message let in, for
    /// the transaction layer of whichever worker owns its call. What is refused is
    /// answered (statelessly, through `txn`) and counted here.
    pub fn screen<U: TransactionUser>(
        &mut self,
        now: Instant,
        user: &mut U,
        txn: &mut TxnLayer,
        source: Peer,
        bytes: Bytes,
        backlog: usize,
    ) -> Option<Message> {
        let (limits, noise) = (&self.limits, &mut self.noise);
        // A request from a blocked source is dropped before it costs a parse; responses always
        // go on (they may belong to transactions of ours).
        if !bytes.starts_with(b"SIP/2.0 ") && user.is_blocked(now, &source) {
            txn.stats_mut().front.dropped += 1;
            return None;
        }
        let msg = match Message::parse_with(bytes.clone(), limits) {
            Ok(m) => m,
            Err(e) => {
                // A request whose Via, From, To, Call-ID and CSeq can still be read gets the
                // status RFC 3261 asks for (400, 513…), built from its own lines; anything
                // else is dropped.
                let answer = rollover_sip::refusal_for_unparsed(&bytes, &e);
                let what = format!(
                    "{} unparseable message: {}",
                    if answer.is_some() {
                        "refused"
                    } else {
                        "dropped"
                    },
                    rollover_sip::Located(&e, &bytes)
                );
                noise.note(now, source.addr.ip(), &what);
                txn.stats_mut().front.unparseable += 1;
                if let Some(resp) = answer {
                    txn.send_stateless(source, resp);
                }
                return None;
            }
        };
        if let Err(e) = msg.validate() {
            txn.stats_mut().front.invalid += 1;
            if msg.is_request() && msg.method() != Some(&Method::Ack) && msg.top_via().is_ok() {
                noise.note(
                    now,
                    source.addr.ip(),
                    &format!("refused request with {}: {e}", e.status()),
                );
                let reason = e.reason_phrase();
                txn.send_stateless(
                    source,
                    msg.response(e.status(), &reason).to_tag("rl-bad").build(),
                );
            } else {
                debug!(%source, "dropped malformed message: {e}");
            }
            return None;
        }
        let msg = if msg.is_request() {
            stamp_via(msg, &source)
        } else {
            msg
        };
        match user.admit(now, &source, &msg, backlog) {
            Admit::Accept => {
                txn.stats_mut().front.admitted += 1;
                return Some(msg);
            }
            Admit::Drop => txn.stats_mut().front.dropped += 1,
            Admit::Reply(bytes) => {
                txn.stats_mut().front.refused += 1;
                txn.send_stateless(source, bytes)
            }
        }
        None
    }

    /// A message this door let in was handed to another worker (counted in `txn`'s stats).
    pub fn note_handed_off(&mut self, txn: &mut TxnLayer) {
        txn.stats_mut().front.handed_off += 1;
    }

    /// A stream that could not be framed was closed: counted like other bad input.
    pub fn note_bad_stream(&mut self, now: Instant, txn: &mut TxnLayer, source: Peer, error: &str) {
        txn.stats_mut().front.bad_streams += 1;
        self.noise.note(
            now,
            source.addr.ip(),
            &format!("closed a stream carrying unframeable bytes: {error}"),
        );
    }
}

/// A new request refused before it is even queued, for a worker so far behind that its
/// queue is full: `503 Service Unavailable` with `Retry-After`, stateless (one response per
/// request, never more bytes than it came with plus a few headers), built from the
/// request's own lines. Refusing it here costs a parse, where queueing it would cost a
/// place in a queue that the calls already under way need, and the caller's
/// retransmissions while it waited.
///
/// `None` for what must wait its turn: responses, ACK, CANCEL, requests inside a dialog
/// (they carry a To tag), and anything malformed (the front door answers that).
pub fn shed(bytes: &Bytes, limits: &Limits, retry_after: u32) -> Option<Bytes> {
    if bytes.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let msg = Message::parse_with(bytes.clone(), limits).ok()?;
    let method = msg.method()?;
    if matches!(method, Method::Ack | Method::Cancel) || msg.to_tag().is_some() {
        return None;
    }
    msg.validate().ok()?;
    // The same tag for a retransmission of the same request.
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        msg.call_id().ok().hash(&mut h);
        msg.from_tag().hash(&mut h);
        msg.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
        format!("sh{:012x}", h.finish() & 0xffff_ffff_ffff)
    };
    Some(
        msg.reply(rollover_sip::StatusCode::SERVICE_UNAVAILABLE)
            .to_tag(&tag)
            .header("Retry-After", &retry_after.to_string())
            .build(),
    )
}

/// How long one aggregated bad-input line covers.
const NOISE_WINDOW: Duration = Duration::from_secs(10);

/// Sources tracked per window; the rest are counted together.
const NOISE_SOURCES: usize = 256;

/// Warnings about bad input, aggregated: the first from a source in a window is logged
/// with its reason; the rest are counted and reported in one line per source when the
/// window ends ("dropped 40,212 bad messages from 198.51.100.7 in the last 10 s"), so a
/// junk flood costs a few log lines, not one per datagram.
#[derive(Debug, Default)]
struct NoiseLog {
    window_start: Option<Instant>,
    counts: HashMap<IpAddr, (u64, String)>,
    others: u64,
}

impl NoiseLog {
    /// Notes one bad message from `ip`.
    fn note(&mut self, now: Instant, ip: IpAddr, what: &str) {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= NOISE_WINDOW {
            self.flush(now);
            self.window_start = Some(now);
        }
        if let Some((n, last)) = self.counts.get_mut(&ip) {
            *n += 1;
            if last.as_str() != what {
                what.clone_into(last);
            }
        } else if self.counts.len() < NOISE_SOURCES {
            warn!(source = %ip, "{what}");
            self.counts.insert(ip, (1, what.to_owned()));
        } else {
            self.others += 1;
        }
    }

    /// Reports what was counted beyond each source's first line.
    fn flush(&mut self, now: Instant) {
        let secs = self
            .window_start
            .map_or(0, |s| now.saturating_duration_since(s).as_secs());
        for (ip, (n, last)) in self.counts.drain() {
            if n > 1 {
                warn!(source = %ip, "dropped {n} bad messages in the last {secs}s (last: {last})");
            }
        }
        if self.others > 0 {
            warn!(
                "dropped {} bad messages from other sources in the last {secs}s",
                self.others
            );
            self.others = 0;
        }
    }
}

/// Adds `received` when the sent-by is not the source address, and fills an empty `rport`
/// (RFC 3261 §18.2.1, RFC 3581). Re-parses only when something changed.
pub fn stamp_via(msg: Message, source: &Peer) -> Message {
    msg.stamp_via(source.addr)
}
