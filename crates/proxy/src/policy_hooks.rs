//! The routing policy: the questions the proxy core asks about a call, after OpenSIPS's and
//! Kamailio's routes. A dial plan answers only the first (`on_request`); a script or an
//! application can answer the others:
//!
//! | hook | OpenSIPS | asked | may |
//! |---|---|---|---|
//! | [`RoutePolicy::on_request`] | `route` | once per initial request | route, reject |
//! | [`RoutePolicy::branch_hop`] | `$du` | before each branch is sent | send it to another hop than its URI's |
//! | [`RoutePolicy::on_branch`] | `branch_route` | before each branch is sent | edit that branch's request only |
//! | [`RoutePolicy::on_reply`] | `onreply_route` | for each reply received | edit the reply (what is relayed, or ranked for the final) |
//! | [`RoutePolicy::on_failure`] | `failure_route` | when every target failed | start new branches in the same transaction, or let the best reply go |
//!
//! Every hook sees the call's `key` ([`CallView::key`]): a policy that keeps state per call (a
//! script's variables and armed routes) keys it by that, and forgets it in
//! [`RoutePolicy::on_release`].
//!
//! `on_failure` may answer later ([`Failure::Later`]): the core asks
//! [`crate::Question::Failure`] and only that call waits for
//! [`crate::Proxy::answer_failure`].

use rollover_sip::{Message, ParseError, StatusCode};
use rollover_txn::Peer;

use crate::router::{RouteDecision, Router};
use rollover_failover::FailoverPolicy;
use rollover_failover::{Target, TargetPlan};

/// What the hooks see of a call.
#[derive(Debug, Clone, Copy)]
pub struct CallView<'a> {
    /// The call's number: unique for the proxy's lifetime, the same in every hook of one
    /// call (the request route included).
    pub key: u64,
    /// Its Call-ID.
    pub call_id: &'a str,
    /// The request as received (after Route processing).
    pub request: &'a Message,
    /// Where it came from.
    pub source: &'a Peer,
}

/// Header edits to one message: added lines and removed names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Header lines to add, as `(name, value)`.
    pub add: Vec<(String, String)>,
    /// Header names to remove (every line of each).
    pub remove: Vec<String>,
    /// Drop the message: a branch is not sent (it fails), a provisional reply is not
    /// relayed. A final reply cannot be dropped (§16.7 decides what goes upstream).
    pub drop: bool,
}

impl Edits {
    /// Adds `name: value`.
    pub fn append_header(&mut self, name: &str, value: &str) {
        self.add.push((name.to_owned(), value.to_owned()));
    }

    /// Removes every `name` header.
    pub fn remove_header(&mut self, name: &str) {
        self.remove.push(name.to_owned());
    }

    /// Drops the message (see [`Edits::drop`]).
    pub fn drop_message(&mut self) {
        self.drop = true;
    }

    /// Whether there are no header edits.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// The message with the edits applied (`msg` itself, not a copy, when there are none).
    pub fn apply(&self, msg: Message) -> Result<Message, ParseError> {
        if self.is_empty() {
            return Ok(msg);
        }
        let mut e = msg.edit();
        for name in &self.remove {
            let lines: Vec<_> = msg.headers_by_name(name).copied().collect();
            for h in &lines {
                e.remove_header(h);
            }
        }
        for (n, v) in &self.add {
            e.add_header(n, v);
        }
        e.finish_message()
    }
}

/// What [`RoutePolicy::on_failure`] sees of the failure: the status the caller would get
/// and, when a target sent it, that reply (edited by the reply hook).
#[derive(Debug, Clone, Copy)]
pub struct Failed<'a> {
    /// The best status (§16.7), 408 when no target answered.
    pub status: StatusCode,
    /// The reply it comes from, when it came from a target.
    pub reply: Option<&'a Message>,
}

/// The answer to [`RoutePolicy::on_failure`].
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Send the best final response (the default).
    Reply,
    /// Try these targets in the same transaction (the failed replies are not sent), with
    /// this policy, or the call's own when `None`.
    Retry(TargetPlan, Option<FailoverPolicy>),
    /// Answer later, with [`crate::Proxy::answer_failure`].
    Later,
}

/// The routing policy the proxy core asks. Every hook but `on_request` has a default that
/// does what the proxy did without it; any [`Router`] (a dial plan) is a policy.
pub trait RoutePolicy {
    /// A new request: where to send it (the request route).
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision;

    /// A new request, with the key its call will have: what the core asks. By default
    /// [`RoutePolicy::on_request`]; a policy with per-call state answers here.
    fn on_route(&mut self, call: CallView<'_>) -> RouteDecision {
        self.on_request(call.request, call.source)
    }

    /// The call `key` is over (or was never started: rejected, dropped): its state can go.
    fn on_release(&mut self, key: u64) {
        let _ = key;
    }

    /// Where a branch to `target` is sent when not where its URI says (the flow a
    /// registered phone behind NAT registered on, or the first hop of its Path); the
    /// Request-URI stays the target's. `None` (the default): where the URI says.
    fn branch_hop(&mut self, call: CallView<'_>, target: &Target) -> Option<Target> {
        let _ = (call, target);
        None
    }

    /// A branch is about to be sent to `target`: edits for this branch's request only.
    fn on_branch(&mut self, call: CallView<'_>, target: &Target, edits: &mut Edits) {
        let _ = (call, target, edits);
    }

    /// A reply arrived from `target`: edits to it, applied before it is relayed or ranked.
    fn on_reply(
        &mut self,
        call: CallView<'_>,
        target: &Target,
        reply: &Message,
        edits: &mut Edits,
    ) {
        let _ = (call, target, reply, edits);
    }

    /// Every target failed; `failed` is what the caller would get: new targets, the
    /// reply, or an answer later.
    fn on_failure(&mut self, call: CallView<'_>, failed: Failed<'_>) -> Failure {
        let _ = (call, failed);
        Failure::Reply
    }
}

impl<R: Router> RoutePolicy for R {
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision {
        self.route(request, source)
    }
}
