//! The one driver that runs the sans-IO cores on real sockets and the real clock.
//!
//! ```text
//!  Inbound ─▶ parse ─▶ validate ─┬─ bad request: stateless 4xx/5xx back to the source
//!                                ├─ bad response: dropped (debug log)
//!                                └─ Via received/rport (RFC 3581) ─▶ user.admit ─▶ TxnLayer::handle_message
//!                                   (bad input is logged aggregated per source, never per datagram)
//!  sleep until min(txn, user) deadline ─▶ TxnLayer::handle_timeout, user.handle_timeout
//!  after each: events ─▶ user; transmits ─▶ Transports::send
//! ```
//!
//! One task owns the transaction layer and the user, so one call's messages are handled in
//! order and never race; the socket tasks only move bytes.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rollover_sip::{Host, Limits, Message, Method};
use rollover_txn::{Admit, Peer, TransactionUser, TxnLayer};
use tokio::sync::mpsc::Receiver;
use tracing::{debug, warn};

use crate::transport::{Inbound, Transports};

/// Moves everything queued in the transaction layer: events to the user (which may queue
/// more), transmits to the sockets.
fn pump<U: TransactionUser>(
    now: Instant,
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
) {
    loop {
        let mut busy = false;
        while let Some(ev) = txn.poll_event() {
            busy = true;
            user.handle_txn_event(now, ev, txn);
        }
        while let Some(t) = txn.poll_transmit() {
            busy = true;
            transports.send(t.dest, t.bytes, t.txn);
        }
        if !busy {
            return;
        }
    }
}

/// Adds `received` when the sent-by is not the source address, and fills an empty `rport`
/// (RFC 3261 §18.2.1, RFC 3581). Re-parses only when something changed.
pub fn stamp_via(msg: Message, source: &Peer) -> Message {
    let (needs_received, needs_rport) = match msg.top_via() {
        Ok(v) => {
            let same_ip = match v.host {
                Host::V4(ip) => IpAddr::from(ip) == source.addr.ip(),
                Host::V6(ip) => IpAddr::from(ip) == source.addr.ip(),
                Host::Domain(_) => false,
            };
            (!same_ip && v.received().is_none(), v.rport() == Some(None))
        }
        Err(_) => return msg,
    };
    if !needs_received && !needs_rport {
        return msg;
    }
    let Some(h) = msg.header(rollover_sip::HeaderName::Via).copied() else {
        return msg;
    };
    let Ok(value) = msg.value_str(&h) else {
        return msg;
    };
    // The first value of the top Via line, with its parameters completed.
    let (first, rest) = match rollover_sip::scan::find_top_level(value.as_bytes(), b',') {
        Some(i) => (
            value.get(..i).unwrap_or(value),
            value.get(i..).unwrap_or(""),
        ),
        None => (value, ""),
    };
    let mut first = first.trim_end().to_owned();
    if needs_rport {
        // ";rport" becomes ";rport=PORT"
        if let Some(pos) = first.to_ascii_lowercase().find(";rport") {
            let after = pos + ";rport".len();
            let tail = first.get(after..).unwrap_or("").to_owned();
            first.truncate(after);
            first.push_str(&format!("={}{tail}", source.addr.port()));
        }
    }
    if needs_received || needs_rport {
        first.push_str(&format!(";received={}", source.addr.ip()));
    }
    let edited = msg
        .edit()
        .replace_value(&h, &format!("{first}{rest}"))
        .finish();
    Message::parse(edited).unwrap_or(msg)
}

/// Runs `user` over `transports` until `shutdown` completes.
pub async fn run<U: TransactionUser>(
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
    inbound: &mut Receiver<Inbound>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // No commands: a channel whose sender stays alive never yields.
    let (_keep, mut none) = tokio::sync::mpsc::channel::<()>(1);
    run_with_commands(
        user,
        txn,
        transports,
        inbound,
        limits,
        &mut none,
        |_, _, (), _| {},
        shutdown,
    )
    .await;
}

/// Like [`run`], and also hands each command from `commands` to `on_command` (an
/// application's calls into a user agent), in the same task as everything else.
#[allow(clippy::too_many_arguments)]
pub async fn run_with_commands<U: TransactionUser, C>(
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
    inbound: &mut Receiver<Inbound>,
    limits: Limits,
    commands: &mut Receiver<C>,
    mut on_command: impl FnMut(&mut U, Instant, C, &mut TxnLayer),
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut noise = NoiseLog::default();
    loop {
        #[allow(clippy::disallowed_methods)] // the driver is where real time enters
        let now = Instant::now();
        pump(now, user, txn, transports);
        let deadline = [txn.poll_timeout(), user.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            msg = inbound.recv() => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                match msg {
                    None => return,
                    Some(Inbound::Message { source, bytes, .. }) => {
                        let backlog = inbound.len();
                        handle_bytes(now, user, txn, source, bytes, &limits, backlog, &mut noise);
                    }
                    Some(Inbound::SendFailed { txn: Some(r), error, dest }) => {
                        debug!(%dest, "send failed: {error}");
                        txn.handle_transport_error(r, error);
                    }
                    Some(Inbound::SendFailed { txn: None, error, dest }) => debug!(%dest, "stateless send failed: {error}"),
                    Some(Inbound::BadStream { source, error }) => noise.note(now, source.addr.ip(), &format!("closed a stream carrying unframeable bytes: {error}")),
                }
            }
            cmd = commands.recv() => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                match cmd {
                    Some(c) => on_command(user, now, c, txn),
                    None => return,
                }
            }
            _ = sleep => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                txn.handle_timeout(now);
                user.handle_timeout(now, txn);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_bytes<U: TransactionUser>(
    now: Instant,
    user: &mut U,
    txn: &mut TxnLayer,
    source: Peer,
    bytes: bytes::Bytes,
    limits: &Limits,
    backlog: usize,
    noise: &mut NoiseLog,
) {
    // A request from a blocked source is dropped before it costs a parse; responses always
    // go on (they may belong to transactions of ours).
    if !bytes.starts_with(b"SIP/2.0 ") && user.is_blocked(now, &source) {
        return;
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
            if let Some(resp) = answer {
                txn.send_stateless(source, resp);
            }
            return;
        }
    };
    if let Err(e) = msg.validate() {
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
        return;
    }
    let msg = if msg.is_request() {
        stamp_via(msg, &source)
    } else {
        msg
    };
    match user.admit(now, &source, &msg, backlog) {
        Admit::Accept => txn.handle_message(now, source, msg),
        Admit::Drop => {}
        Admit::Reply(bytes) => txn.send_stateless(source, bytes),
    }
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
pub(crate) struct NoiseLog {
    window_start: Option<Instant>,
    counts: HashMap<IpAddr, (u64, String)>,
    others: u64,
}

impl NoiseLog {
    /// Notes one bad message from `ip`.
    pub(crate) fn note(&mut self, now: Instant, ip: IpAddr, what: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rollover_txn::Transport;

    fn req(via: &str) -> Message {
        let text = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
        Message::parse(text.into_bytes()).unwrap()
    }

    #[test]
    fn received_and_rport() {
        let src = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.7:5999".parse().unwrap(),
        };
        let m = stamp_via(
            req("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP x"),
            &src,
        );
        let v = m.top_via().unwrap();
        assert_eq!(v.received(), Some("192.0.2.7"));
        assert_eq!(v.rport(), Some(Some(5999)));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(m.vias().count(), 2);
        // Nothing to do: untouched, same bytes.
        let same = req("SIP/2.0/UDP 192.0.2.7:5999;branch=z9hG4bK1");
        let out = stamp_via(same.clone(), &src);
        assert_eq!(out.as_bytes(), same.as_bytes());
    }
}
