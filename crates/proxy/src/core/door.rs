//! The front door's policy: who may send at all, flooding sources, overload and
//! draining, and the stateless refusals the proxy makes before routing.

use std::time::Instant;

use rollover_sip::{HeaderName, Message, Method, StatusCode};
use rollover_txn::{Admit, Peer, ServerTxn, TxnLayer, TxnRef};

use super::Proxy;
use crate::guard::Refusal;
use crate::policy_hooks::RoutePolicy;
use rollover_failover::Decision;

impl<R: RoutePolicy> Proxy<R> {
    /// Whether every request from `source` is dropped unread: it is flooding (blocked by the
    /// flood limit) and not trusted. Its dropped requests still count towards its block.
    pub fn is_blocked(&mut self, now: Instant, source: &Peer) -> bool {
        let ip = source.addr.ip();
        let blocked = !self.cfg.security.is_trusted(ip) && self.pike.drop_if_blocked(now, ip);
        if blocked {
            self.stats.turned_away("flood");
        }
        blocked
    }

    /// The front door, asked for every well-formed message before the transaction layer
    /// (see [`rollover_txn::TransactionUser::admit`]): the allow list (403), per-source
    /// flood control (dropped), and admission control (503 with `Retry-After`). Requests
    /// that follow a route set we recorded, ACKs and responses are never limited, so
    /// calls under way are not starved by strangers.
    pub fn admit(&mut self, now: Instant, source: &Peer, msg: &Message, backlog: usize) -> Admit {
        let Some(method) = msg.method() else {
            return Admit::Accept;
        };
        let ip = source.addr.ip();
        let sec = &self.cfg.security;
        if !sec.is_allowed(ip) {
            self.refusals.note(
                now,
                Refusal::NotAllowed,
                Some(ip),
                "refused with 403: source not in [security] allow",
            );
            self.stats.turned_away("not_allowed");
            if *method == Method::Ack {
                return Admit::Drop;
            }
            return Admit::Reply(stateless(msg, StatusCode::FORBIDDEN));
        }
        let new_request = msg.to_tag().is_none() && !matches!(method, Method::Cancel | Method::Ack);
        if self.draining && new_request {
            self.stats.turned_away("draining");
            return Admit::Reply(self.busy_reply(msg));
        }
        if *method == Method::Ack || sec.is_trusted(ip) {
            return Admit::Accept;
        }
        // An in-dialog request that follows our Route is spared the flood limit; without
        // one (and the overload check is for new requests only) nothing below can refuse
        // it, and its Route is not read here.
        let in_dialog = msg.to_tag().is_some();
        if in_dialog && !self.pike.limits() {
            return Admit::Accept;
        }
        let follows_our_route = in_dialog && self.local.top_route_is_ours(msg);
        if follows_our_route {
            return Admit::Accept;
        }
        if !self.pike.admit(now, ip) {
            self.stats.turned_away("flood");
            return Admit::Drop;
        }
        if new_request && self.overload.check(backlog) {
            self.stats.turned_away("overload");
            return Admit::Reply(self.busy_reply(msg));
        }
        Admit::Accept
    }

    /// The stateless 503 of admission control and draining.
    pub(super) fn busy_reply(&self, msg: &Message) -> bytes::Bytes {
        let retry = self.cfg.security.retry_after.to_string();
        msg.reply(StatusCode::SERVICE_UNAVAILABLE)
            .to_tag(&stateless_tag(msg))
            .header("Retry-After", &retry)
            .build()
    }

    /// Answers a request the proxy refuses before routing it, statelessly: one response
    /// for each request received, no retransmission, no transaction kept (Kamailio's
    /// `sl_send_reply`), so a forged source cannot make the proxy amplify. The reason
    /// phrase is the code's own.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        server: ServerTxn,
        req: &Message,
        code: StatusCode,
        why: String,
        txn: &mut TxnLayer,
    ) {
        self.refuse_with_reason(now, server, req, code, code.reason(), why, txn);
    }

    /// [`Proxy::refuse`] with a reason phrase of its own (a dial plan's, or one that says
    /// more than the code's: "Not Here", "Bad Route").
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse_with_reason(
        &mut self,
        now: Instant,
        server: ServerTxn,
        req: &Message,
        code: StatusCode,
        reason: &str,
        why: String,
        txn: &mut TxnLayer,
    ) {
        let bytes = self.refusal(now, server, req, code, reason, why, txn);
        txn.reply_stateless(server, bytes);
    }

    /// Logs and counts a refusal and builds its response.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refusal(
        &mut self,
        now: Instant,
        server: ServerTxn,
        req: &Message,
        code: StatusCode,
        reason: &str,
        why: String,
        txn: &TxnLayer,
    ) -> bytes::Bytes {
        let call_id = req.call_id().unwrap_or("-").to_owned();
        let d = Decision::Rejected {
            status: code,
            reason: why,
        };
        self.stats.note(&d);
        // Logged aggregated per source: a stranger's refusals must not flood the log.
        let ip = txn.peer(TxnRef::Server(server)).map(|p| p.addr.ip());
        self.refusals.note(
            now,
            Refusal::Request,
            ip,
            &format!("call_id={call_id:?} {d}"),
        );
        if self.cfg.keep_decisions {
            self.decisions.push_back((now, call_id, d));
        }
        let mut b = req
            .response(code.as_u16(), reason)
            .to_tag(&stateless_tag(req));
        if code == StatusCode::BAD_EXTENSION {
            let tags: Vec<&str> = req.tokens(HeaderName::ProxyRequire).collect();
            b = b.header("Unsupported", &tags.join(", "));
        }
        if code == StatusCode::METHOD_NOT_ALLOWED {
            b = b.header("Allow", ALLOW);
        }
        b.build()
    }
}

/// The methods the proxy relays, for `Allow`.
pub(super) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, SUBSCRIBE, MESSAGE";

/// How every [`stateless_tag`] begins: an ACK whose To tag does not is not for one of
/// those replies.
pub(super) const STATELESS_TAG_PREFIX: &str = "sl";

/// The To tag of a stateless reply: the same for a retransmitted request, so the caller
/// sees one dialog whichever copy it answers.
pub(super) fn stateless_tag(req: &Message) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = crate::forward::fixed_hasher();
    req.call_id().ok().hash(&mut h);
    req.from_tag().hash(&mut h);
    req.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    format!(
        "{STATELESS_TAG_PREFIX}{:012x}",
        h.finish() & 0xffff_ffff_ffff
    )
}

/// A stateless response to a request the front door refuses.
pub(super) fn stateless(req: &Message, code: StatusCode) -> bytes::Bytes {
    req.reply(code).to_tag(&stateless_tag(req)).build()
}
