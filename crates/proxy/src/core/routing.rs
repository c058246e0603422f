//! The request route answered later: a policy that must look something up (a location
//! store, a script waiting on a service) answers [`RouteDecision::Later`]; the core asks
//! [`Question::Route`] and keeps the request in its server transaction until
//! [`Proxy::answer_route`]. Only that request waits; a CANCEL or the answer timeout ends
//! the wait.

use std::time::{Duration, Instant};

use rollover_sip::{Message, StatusCode};
use rollover_txn::{Peer, ServerTxn, TxnLayer};
use tracing::{debug, info};

use super::{Proxy, Question};
use crate::policy_hooks::RoutePolicy;
use crate::router::RouteDecision;
use rollover_failover::Decision;

/// How long the core waits for a routing answer before it answers 500 itself: 64·T1, the
/// time a caller's non-INVITE transaction would give up anyway.
pub const ROUTE_ANSWER_TIMEOUT: Duration = Duration::from_secs(32);

/// A request waiting for its routing answer.
#[derive(Debug)]
pub(super) struct Routing {
    server: ServerTxn,
    request: Message,
    source: Peer,
    call_id: String,
    key: u64,
}

impl<R: RoutePolicy> Proxy<R> {
    /// The policy answers later: the caller gets 100 Trying (INVITE) and the owner a
    /// question.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask_route(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: Message,
        source: Peer,
        call_id: String,
        key: u64,
        txn: &mut TxnLayer,
    ) {
        // The answer may take a while: stop the caller's retransmissions now.
        self.send_trying(now, server, &request, &call_id, txn);
        let id = self.next_query;
        self.next_query += 1;
        debug!(call_id, "routing answer pending (question {id})");
        self.questions.push_back(Question::Route {
            id,
            request: Box::new(request.clone()),
            source,
        });
        let deadline = now + ROUTE_ANSWER_TIMEOUT;
        self.routing_by_server.insert(server, id);
        self.routing_deadlines.push_back((deadline, id));
        self.routing.insert(
            id,
            Routing {
                server,
                request,
                source,
                call_id,
                key,
            },
        );
    }

    /// The owner's answer to [`Question::Route`]. A request that was cancelled or timed
    /// out meanwhile is not routed; asking again (`Later`) is answered 500.
    pub fn answer_route(
        &mut self,
        now: Instant,
        id: u64,
        decision: RouteDecision,
        txn: &mut TxnLayer,
    ) {
        let Some(r) = self.routing.remove(&id) else {
            return;
        };
        self.routing_by_server.remove(&r.server);
        match decision {
            RouteDecision::Targets { plan, policy, rule } => {
                self.start_call(
                    now,
                    r.server,
                    r.request,
                    r.source,
                    r.call_id,
                    r.key,
                    None,
                    plan.groups,
                    policy,
                    rule,
                    txn,
                );
            }
            RouteDecision::Reject {
                status,
                reason,
                rule,
            } => {
                self.router.on_release(r.key);
                let why = format!("rule {rule:?}: {reason}");
                self.reply_pending(now, r, status, &reason, why, txn);
            }
            RouteDecision::Drop { rule } => {
                self.router.on_release(r.key);
                self.drop_request(now, r.server, &r.call_id, &rule, txn);
            }
            RouteDecision::Later => {
                self.router.on_release(r.key);
                let why = "the routing policy answered Later to its own question".into();
                let e = StatusCode::SERVER_INTERNAL_ERROR;
                self.reply_pending(now, r, e, e.reason(), why, txn);
            }
        }
    }

    /// A CANCEL for a request still waiting for its routing answer: true when it was one
    /// (then 200 to the CANCEL and 487 to the request, RFC 3261 §16.10).
    pub(super) fn cancel_pending_route(
        &mut self,
        now: Instant,
        cancel_server: ServerTxn,
        server: ServerTxn,
        cancel: &Message,
        txn: &mut TxnLayer,
    ) -> bool {
        let Some(id) = self.routing_by_server.remove(&server) else {
            return false;
        };
        let Some(r) = self.routing.remove(&id) else {
            return false;
        };
        self.router.on_release(r.key);
        let ok = cancel.reply(StatusCode::OK).build();
        if let Err(e) = txn.send_response(now, cancel_server, ok) {
            self.stats.unsent("response");
            debug!(call_id = r.call_id, "200 for the CANCEL not sent: {e}");
        }
        let terminated = r
            .request
            .reply(StatusCode::REQUEST_TERMINATED)
            .to_tag(&self.ids.tag())
            .build();
        if let Err(e) = txn.send_response(now, r.server, terminated) {
            self.stats.unsent("response");
            debug!(call_id = r.call_id, "487 not sent: {e}");
        }
        info!(
            call_id = r.call_id,
            "cancelled upstream while its routing answer was pending"
        );
        self.decide(
            now,
            &r.call_id,
            Decision::Final {
                status: StatusCode::REQUEST_TERMINATED,
            },
        );
        true
    }

    /// Requests whose routing answer did not come in time get 500.
    pub(super) fn expire_routes(&mut self, now: Instant, txn: &mut TxnLayer) {
        while let Some(&(at, id)) = self.routing_deadlines.front() {
            if at > now {
                break;
            }
            self.routing_deadlines.pop_front();
            let Some(r) = self.routing.remove(&id) else {
                continue;
            };
            self.routing_by_server.remove(&r.server);
            self.router.on_release(r.key);
            let why = format!("no routing answer in {} s", ROUTE_ANSWER_TIMEOUT.as_secs());
            let e = StatusCode::SERVER_INTERNAL_ERROR;
            self.reply_pending(now, r, e, e.reason(), why, txn);
        }
    }

    /// The earliest routing-answer deadline still pending.
    pub(super) fn routing_timeout(&mut self) -> Option<Instant> {
        while let Some(&(at, id)) = self.routing_deadlines.front() {
            // Each question has one deadline: a question still waiting makes it live.
            if self.routing.contains_key(&id) {
                return Some(at);
            }
            self.routing_deadlines.pop_front();
        }
        None
    }

    /// Answers a request that waited for its route, through its transaction (the caller
    /// may have had our 100 and retransmits into it).
    fn reply_pending(
        &mut self,
        now: Instant,
        r: Routing,
        status: StatusCode,
        reason: &str,
        why: String,
        txn: &mut TxnLayer,
    ) {
        let bytes = self.refusal(now, r.server, &r.request, status, reason, why, txn);
        if let Err(e) = txn.send_response(now, r.server, bytes) {
            self.stats.unsent("response");
            debug!(call_id = r.call_id, "final response not sent: {e}");
        }
    }
}
