//! Sending a branch: its next hop resolved now or through a question to the owner, its
//! addresses tried in turn, and `udp_mtu`'s switch to TCP and back.

use std::net::SocketAddr;
use std::time::Instant;

use rollover_sip::{Message, Method, StatusCode};
use rollover_txn::{ClientTxn, Peer, Transport, TxnLayer};
use tracing::{debug, info};

use super::{CallKey, Proxy};
use crate::forward;
use crate::policy_hooks::{CallView, Edits, RoutePolicy};
use crate::router::NextHop;
use rollover_failover::engine::BranchId;
use rollover_failover::Resolved;
use rollover_failover::StartFailure;
use rollover_failover::Target;

/// A question the core asks its owner, who answers now or later (see
/// [`Proxy::poll_question`]); the call that asked waits, every other call goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Question {
    /// Every target failed: new targets, the reply, or a later answer? Answer with
    /// [`Proxy::answer_failure`] and this `id` (asked when [`RoutePolicy::on_failure`]
    /// answered [`crate::Failure::Later`]).
    Failure {
        /// The question's id.
        id: u64,
        /// The call's Call-ID.
        call_id: String,
        /// The status the caller would get now.
        best: StatusCode,
    },
    /// Route this request: the policy answered [`crate::RouteDecision::Later`]. Answer with
    /// [`Proxy::answer_route`] and this `id` within [`super::ROUTE_ANSWER_TIMEOUT`].
    Route {
        /// The question's id.
        id: u64,
        /// The request as the policy saw it (our Route entries popped, a stranger's
        /// removed). Boxed: the other questions are small.
        request: Box<Message>,
        /// Where it came from.
        source: Peer,
    },
    /// Resolve `host`; answer with [`Proxy::answer_resolve`] and this `id`.
    Resolve {
        /// The question's id.
        id: u64,
        /// The host name.
        host: String,
        /// The port to put in the addresses.
        port: u16,
        /// The transport the request will go over.
        transport: Transport,
    },
}

/// A branch waiting for its name to be resolved.
#[derive(Debug)]
pub(super) struct Resolving {
    pub(super) cid: CallKey,
    pub(super) branch: BranchId,
    pub(super) target: Target,
    pub(super) udp_only: bool,
}

impl<R: RoutePolicy> Proxy<R> {
    /// Builds and sends the request of one branch; a failure rolls the call over.
    /// Resolves a branch's next hop and sends it; a name not known yet becomes a question
    /// for the owner, and only this branch waits for the answer.
    pub(super) fn start_branch(
        &mut self,
        now: Instant,
        cid: CallKey,
        b: BranchId,
        target: Target,
        udp_only: bool,
        txn: &mut TxnLayer,
    ) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let chosen = if call.fixed_hop.is_none() {
            let view = CallView {
                key: call.key,
                call_id: &call.call_id,
                request: &call.request,
                source: &call.source,
            };
            self.router.branch_hop(view, &target)
        } else {
            None
        };
        if let Some(h) = &chosen {
            call.branch_hops.insert(b, h.clone());
        }
        let hop = call
            .fixed_hop
            .clone()
            .or(chosen)
            .unwrap_or_else(|| target.clone());
        let (host, port) = match self.hops.of(&hop) {
            None => return call.engine.start_failed(now, b, StartFailure::Unresolvable),
            // Never a multicast, broadcast or unspecified address, as written or as resolved.
            Some(NextHop::Addr(a)) if rollover_failover::never_a_target(a.ip()) => {
                return call.engine.start_failed(now, b, StartFailure::NotAllowed);
            }
            Some(NextHop::Addr(a)) => {
                return self.send_branch_to(now, cid, b, target, vec![a], udp_only, txn);
            }
            Some(NextHop::Name(host, port)) => (host, port),
        };
        match self.resolver.lookup(&host, port, hop.transport) {
            Resolved::Addrs(addrs) => {
                self.send_branch_to(now, cid, b, target, addrs, udp_only, txn)
            }
            Resolved::NotFound => call.engine.start_failed(now, b, StartFailure::Unresolvable),
            Resolved::Ask => {
                let id = self.next_query;
                self.next_query += 1;
                debug!(call_id = call.call_id, "resolving {host} for {target}");
                self.questions.push_back(Question::Resolve {
                    id,
                    host,
                    port,
                    transport: hop.transport,
                });
                self.resolving.insert(
                    id,
                    Resolving {
                        cid,
                        branch: b,
                        target,
                        udp_only,
                    },
                );
            }
        }
    }

    /// The owner's answer to [`Question::Resolve`]: the addresses (empty when the name has
    /// none). The branch that waited is sent, or fails as unresolvable; if it was left
    /// behind meanwhile (its call ended, its timer fired), the answer is dropped.
    pub fn answer_resolve(
        &mut self,
        now: Instant,
        id: u64,
        addrs: Vec<SocketAddr>,
        txn: &mut TxnLayer,
    ) {
        let Some(r) = self.resolving.remove(&id) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&r.cid) else {
            return;
        };
        if !call.engine.is_pending(r.branch) {
            return;
        }
        if addrs.is_empty() {
            call.engine
                .start_failed(now, r.branch, StartFailure::Unresolvable);
        } else {
            self.send_branch_to(now, r.cid, r.branch, r.target, addrs, r.udp_only, txn);
        }
        self.drive(now, r.cid, txn);
    }

    /// The next question for the owner (a name to resolve).
    pub fn poll_question(&mut self) -> Option<Question> {
        self.questions.pop_front()
    }

    /// Sends a branch to the first of `addrs`; the others are kept, to be tried in turn if
    /// the transport fails.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_branch_to(
        &mut self,
        now: Instant,
        cid: CallKey,
        b: BranchId,
        target: Target,
        mut addrs: Vec<SocketAddr>,
        udp_only: bool,
        txn: &mut TxnLayer,
    ) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if addrs.is_empty() {
            return call.engine.start_failed(now, b, StartFailure::Unresolvable);
        }
        let first = addrs.remove(0);
        if rollover_failover::never_a_target(first.ip()) {
            return call.engine.start_failed(now, b, StartFailure::NotAllowed);
        }
        if addrs.is_empty() {
            call.alternates.remove(&b);
        } else {
            call.alternates.insert(b, addrs);
        }
        let hop_transport = call
            .fixed_hop
            .as_ref()
            .or_else(|| call.branch_hops.get(&b))
            .unwrap_or(&target)
            .transport;
        let dest = Peer {
            transport: hop_transport,
            addr: first,
        };
        let set_uri = if call.fixed_hop.is_some() {
            None
        } else {
            Some(target.uri.as_str())
        };
        let rr = self.cfg.record_route
            && call.fixed_hop.is_none()
            && call.request.method() == Some(&Method::Invite);
        let loop_hash = *call
            .loop_hash
            .get_or_insert_with(|| forward::loop_hash(&call.request));
        let built = forward::request(
            &call.request,
            loop_hash,
            set_uri,
            dest.transport,
            rr.then_some(call.source.transport),
            &self.local,
            &mut self.ids,
        )
        .and_then(|(req, branch)| {
            let (mtu, try_t) = (self.cfg.udp_mtu, self.cfg.udp_mtu_try);
            let big = req.as_bytes().len();
            if !udp_only && mtu > 0 && dest.transport == Transport::Udp && big > mtu {
                // §18.1.1: the top Via must name the transport actually used.
                let (req, branch) = forward::request(
                    &call.request,
                    loop_hash,
                    set_uri,
                    try_t,
                    rr.then_some(call.source.transport),
                    &self.local,
                    &mut self.ids,
                )?;
                info!(
                    call_id = call.call_id,
                    "{big}-byte request over udp_mtu ({mtu}): trying {try_t} to {} first",
                    dest.addr
                );
                call.switched.push(b);
                let dest = Peer {
                    transport: try_t,
                    ..dest
                };
                return Some((dest, req, branch));
            }
            Some((dest, req, branch))
        });
        // The branch route: edits for this branch's request only.
        let built = built.map(|(dest, req, branch)| {
            let mut edits = Edits::default();
            let view = CallView {
                key: call.key,
                call_id: &call.call_id,
                request: &call.request,
                source: &call.source,
            };
            self.router.on_branch(view, &target, &mut edits);
            // The branch is known to be the top Via's only while no edit has been made.
            let (req, branch) = if edits.is_empty() {
                (req, Some(branch))
            } else {
                (edits.apply(req.clone()).unwrap_or(req), None)
            };
            (dest, req, branch, edits.drop)
        });
        let started = match built {
            None => Err(StartFailure::Unbuildable),
            Some((_, _, _, true)) => {
                debug!(
                    call_id = call.call_id,
                    "branch to {target} dropped by the policy"
                );
                Err(StartFailure::Dropped)
            }
            Some((dest, req, branch, false)) => match branch {
                Some(b) => txn.send_request_on_branch(now, req, dest, &b),
                None => txn.send_request(now, req, dest),
            }
            .map_err(|e| {
                debug!(
                    call_id = call.call_id,
                    "could not start a client transaction: {e}"
                );
                StartFailure::Transaction(e)
            }),
        };
        match started {
            Ok(client) => {
                let i = b.index();
                if call.clients.len() <= i {
                    call.clients.resize(i + 1, None);
                }
                if let Some(slot) = call.clients.get_mut(i) {
                    *slot = Some(client);
                }
                call.live_clients += 1;
                self.by_client.insert(client, (cid, b));
            }
            Err(failure) => call.engine.start_failed(now, b, failure),
        }
    }

    /// A branch whose transport failed tries its target's next address, if it has one.
    pub(super) fn retry_next_address(
        &mut self,
        now: Instant,
        client: ClientTxn,
        e: rollover_txn::TransportError,
        txn: &mut TxnLayer,
    ) -> bool {
        let Some(&(cid, b)) = self.by_client.get(&client) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        let Some(addrs) = call.alternates.remove(&b) else {
            return false;
        };
        let Some(target) = call.engine.target(b).cloned() else {
            return false;
        };
        info!(
            call_id = call.call_id,
            "{target}: {e}; trying its next address {}",
            addrs.first().map_or_else(String::new, ToString::to_string)
        );
        self.send_branch_to(now, cid, b, target, addrs, false, txn);
        true
    }

    /// A branch moved off UDP by `udp_mtu` whose transport failed is sent over UDP after
    /// all, and the target is not failed. Returns whether it was.
    pub(super) fn retry_over_udp(
        &mut self,
        now: Instant,
        client: ClientTxn,
        e: rollover_txn::TransportError,
        txn: &mut TxnLayer,
    ) -> bool {
        let Some(&(cid, b)) = self.by_client.get(&client) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        let Some(pos) = call.switched.iter().position(|&x| x == b) else {
            return false;
        };
        call.switched.swap_remove(pos);
        let Some(target) = call.engine.target(b).cloned() else {
            return false;
        };
        info!(
            call_id = call.call_id,
            "{} to {target} failed ({e}): sending over UDP after all", self.cfg.udp_mtu_try
        );
        self.start_branch(now, cid, b, target, true, txn);
        true
    }
}
