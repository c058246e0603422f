//! What the proxy relays outside a call's response context: CANCELs, ACKs for 2xx, stray
//! 2xx retransmissions, and late answers it hangs up itself.

use std::time::Instant;

use rollover_sip::{HeaderName, Message, StatusCode};
use rollover_txn::{Peer, ServerTxn, Transport, TxnLayer};
use tracing::{debug, info};

use super::door::{stateless_tag, STATELESS_TAG_PREFIX};
use super::{CallKey, Proxy};
use crate::forward;
use crate::guard::Refusal;
use crate::policy_hooks::RoutePolicy;
use crate::router::destination;
use rollover_failover::Decision;

impl<R: RoutePolicy> Proxy<R> {
    /// `late_answer = "hangup"`: the late 2xx is ACKed and its dialog ended with a BYE by
    /// the proxy; the caller never sees it. A retransmission of it is only ACKed again.
    pub(super) fn hang_up_late(
        &mut self,
        now: Instant,
        cid: CallKey,
        transport: Transport,
        resp: &Message,
        call_id: &str,
        txn: &mut TxnLayer,
    ) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some((hop, ack, bye)) =
            forward::hangup(&call.request, resp, transport, &self.local, &mut self.ids)
        else {
            info!(
                call_id,
                "late 2xx without a usable Contact: not relayed, not hung up"
            );
            return;
        };
        let Some(dest) = self
            .hops
            .target(&hop)
            .ok()
            .and_then(|t| destination(&mut self.hops, &t, self.resolver.as_ref()))
        else {
            info!(call_id, "late 2xx: its next hop {hop} cannot be resolved");
            return;
        };
        txn.send_stateless(dest, ack);
        let tag = resp.to_tag().unwrap_or_default().to_owned();
        if !call.hung_up.contains(&tag) {
            call.hung_up.push(tag);
            info!(call_id, "late 2xx from {hop}: answered elsewhere already; ACKed and hung up with a BYE (late_answer = hangup)");
            if let Err(e) = txn.send_request(now, bye, dest) {
                self.stats.unsent("bye");
                debug!(call_id, "BYE for the late answer not sent: {e}");
            }
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        server: ServerTxn,
        cancel: &Message,
        cancels: Option<ServerTxn>,
        txn: &mut TxnLayer,
    ) {
        if let Some(s) = cancels {
            if self.cancel_pending_route(now, server, s, cancel, txn) {
                return;
            }
        }
        let cid = cancels.and_then(|s| self.by_server.get(&s).copied());
        let Some(cid) = cid else {
            let resp = cancel
                .reply(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
                .to_tag(&stateless_tag(cancel));
            txn.reply_stateless(server, resp.build());
            return;
        };
        // §16.10: answer the CANCEL, then cancel every pending branch.
        if let Err(e) = txn.send_response(now, server, cancel.reply(StatusCode::OK).build()) {
            self.stats.unsent("response");
            debug!(
                call_id = cancel.call_id().unwrap_or("-"),
                "200 for a CANCEL not sent: {e}"
            );
        }
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let reason = cancel
            .header_str(HeaderName::Reason)
            .and_then(Result::ok)
            .map(str::to_owned);
        // Branches that sent a provisional get a CANCEL, the others are abandoned; the
        // caller's final response waits for theirs (§16.10), so a 200 that crossed the
        // CANCEL answers the call instead of following our 487.
        call.engine.cancel(now, reason, "cancelled upstream");
        self.drive(now, cid, txn);
    }

    /// ACK for a 2xx: forwarded statelessly along its route (§16.11), but only along a
    /// route set this proxy recorded (or from a trusted source): an ACK is answered by
    /// nobody, so a relayed one would be a free anonymous datagram to anywhere.
    pub(super) fn forward_ack(
        &mut self,
        now: Instant,
        ack: Message,
        source: Peer,
        txn: &mut TxnLayer,
    ) {
        // The ACK for one of our stateless refusals (same branch, so the same tag): absorbed,
        // as Kamailio's sl module does.
        if ack.to_tag().is_some_and(|t| {
            t == "rl-bad" || t.starts_with(STATELESS_TAG_PREFIX) && t == stateless_tag(&ack)
        }) {
            return;
        }
        // The usual ACK: one entry of ours on top, dropped in the same edit that adds our
        // Via. Anything else goes through the whole of §16.4 first.
        let routed;
        let (ack, pop_route, ours, hop_uri) = match self.local.single_own_route_then(&ack) {
            Some(hop) => (&ack, true, true, Some(hop)),
            None => {
                let Ok(r) = self.local.preprocess_route(&ack) else {
                    return;
                };
                routed = r;
                let request = routed.request.as_ref().unwrap_or(&ack);
                let hop_uri = request
                    .routes()
                    .next()
                    .and_then(Result::ok)
                    .map(|r| r.uri_str.to_owned())
                    .or_else(|| request.request_uri_str().map(str::to_owned));
                (request, false, routed.ours, hop_uri)
            }
        };
        if !ours && !self.cfg.security.is_trusted(source.addr.ip()) {
            self.refusals.note(
                now,
                Refusal::Ack,
                Some(source.addr.ip()),
                "ACK without a transaction or a Route this proxy recorded dropped",
            );
            return;
        }
        let Some(dest) = hop_uri
            .clone()
            .and_then(|h| self.hops.target(&h).ok())
            .and_then(|t| destination(&mut self.hops, &t, self.resolver.as_ref()))
            .filter(|d| {
                !self.local.is_local_addr(d.addr) && !rollover_failover::never_a_target(d.addr.ip())
            })
        else {
            debug!(%source, "ACK with no usable next hop dropped");
            return;
        };
        if let Some(bytes) = forward::stateless_request(ack, pop_route, dest.transport, &self.local)
        {
            let call_id = ack.call_id().unwrap_or("-").to_owned();
            let trusted = !ours;
            self.decide_lazily(
                now,
                &call_id,
                |s| s.relayed += 1,
                || Decision::Relayed {
                    method: "ACK".into(),
                    hop: hop_uri.unwrap_or_default(),
                    source: source.to_string(),
                    trusted,
                },
            );
            txn.send_stateless(dest, bytes);
        }
    }

    /// A response with no transaction: a 2xx retransmitted after its transaction ended is
    /// forwarded statelessly to the next Via (§16.7 / RFC 6026), but only when the top Via
    /// is one we signed for this Call-ID and exactly that next hop; anything else is
    /// dropped, so the proxy is no reflector.
    pub(super) fn forward_stray(
        &mut self,
        now: Instant,
        resp: Message,
        source: Peer,
        txn: &mut TxnLayer,
    ) {
        let is_2xx = resp.status().is_some_and(|c| (200..300).contains(&c));
        let next = resp
            .vias()
            .nth(1)
            .and_then(Result::ok)
            .and_then(|v| forward::via_destination(&v));
        let signed = |next: &Peer| {
            resp.top_via().ok().is_some_and(|v| {
                self.local
                    .via_is_signed(&v, resp.call_id().unwrap_or_default(), next)
            })
        };
        match next {
            Some(dest) if is_2xx && signed(&dest) => {
                txn.send_stateless(dest, forward::response(&resp))
            }
            _ => self.refusals.note(
                now,
                Refusal::Stray,
                Some(source.addr.ip()),
                "response matching no transaction, not for a branch of ours, dropped",
            ),
        }
    }
}
