//! The proxy core: one response context per server transaction, any number of client
//! branches, and the failover engine that decides when a branch is left behind.
//!
//! Driving it (after the transaction layer; see `rollover_txn::TxnLayer` for its order):
//! 1. every `rollover_txn::Event` goes to [`Proxy::handle_txn_event`];
//! 2. when [`Proxy::poll_timeout`] is due, call [`Proxy::handle_timeout`];
//! 3. after either, drain the transaction layer's transmits and events again;
//! 4. [`Proxy::poll_decision`] yields the log of decisions (one per roll-over, answer…).
//!
//! A call:
//! ```text
//!  INVITE ─▶ checks (483/482/420) ─▶ route ─▶ group 1 ─┬─ branch ─▶ 1xx: ring timer ─▶ 2xx: forward, CANCEL others
//!                                                      └─ branch ─▶ final: pattern? ─▶ next group … ─▶ best response
//!  timers per branch: no-response (abandon, §9.1: no CANCEL), ring (CANCEL), Timer C
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_sip::{HeaderName, Message, Method};
use rollover_txn::{ClientTxn, Event, Peer, ServerTxn, Transport, TxnLayer, TxnRef};
use tracing::{debug, info};

use crate::best::{BestResponse, Outcome};
use crate::decision::{Decision, Why};
use crate::forward::{self, Local};
use crate::policy::FailoverPolicy;
use crate::router::{destination, Resolver, RouteDecision, Router};
use crate::target::Target;

impl<R: Router> rollover_txn::TransactionUser for Proxy<R> {
    fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        Proxy::handle_txn_event(self, now, ev, txn);
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        Proxy::handle_timeout(self, now, txn);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        Proxy::poll_timeout(self)
    }
}

/// Requests larger than this go over TCP instead of UDP (RFC 3261 §18.1.1).
pub const UDP_MAX_REQUEST: usize = 1300;

/// Proxy settings that are not per call.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Our listening addresses: Via sent-by, Record-Route, and "is this URI us".
    pub local: Vec<(Transport, std::net::SocketAddr)>,
    /// Add Record-Route to dialog-creating requests.
    pub record_route: bool,
    /// Timer C (RFC 3261 §16.6 step 11: more than 3 minutes).
    pub timer_c: Duration,
    /// Seed for branch ids and tags.
    pub seed: u64,
    /// Keep every decision for [`Proxy::poll_decision`] (simulations); a server only logs.
    pub keep_decisions: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            local: Vec::new(),
            record_route: true,
            timer_c: Duration::from_secs(181),
            seed: 0x5eed,
            keep_decisions: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    NoResponse,
    Ring,
    C,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BranchState {
    /// Sent, nothing heard.
    Trying,
    /// 100 Trying heard: no longer silent, not yet ringing.
    Heard,
    /// A provisional above 100 arrived.
    Ringing,
    /// Left behind without a response (no-response timer); a late answer is still taken.
    Abandoned,
    /// CANCELled by us (ring timer, Timer C, another branch answered, upstream CANCEL).
    Cancelled,
    /// A final response arrived.
    Completed(u16),
}

#[derive(Debug)]
struct Branch {
    target: Target,
    client: ClientTxn,
    group: usize,
    state: BranchState,
    no_response_at: Option<Instant>,
    ring_at: Option<Instant>,
    timer_c_at: Option<Instant>,
}

impl Branch {
    fn is_active(&self) -> bool {
        matches!(
            self.state,
            BranchState::Trying | BranchState::Heard | BranchState::Ringing
        )
    }

    fn deadline(&self, kind: TimerKind) -> Option<Instant> {
        match kind {
            TimerKind::NoResponse => self.no_response_at,
            TimerKind::Ring => self.ring_at,
            TimerKind::C => self.timer_c_at,
        }
    }

    fn clear_timers(&mut self) {
        self.no_response_at = None;
        self.ring_at = None;
        self.timer_c_at = None;
    }
}

#[derive(Debug)]
struct Call {
    server: ServerTxn,
    request: Message,
    source: Peer,
    call_id: String,
    policy: FailoverPolicy,
    /// Groups not yet started.
    groups: VecDeque<Vec<Target>>,
    /// Identities of targets tried or queued (3xx Contacts already seen are dropped).
    seen: Vec<String>,
    targets_used: usize,
    group: usize,
    branches: Vec<Branch>,
    best: BestResponse,
    /// Send to this hop without touching the Request-URI (in-dialog and pre-routed requests).
    fixed_hop: Option<Target>,
    to_tag: String,
    answered: bool,
    final_sent: bool,
    cancelled: bool,
    live_clients: usize,
    server_done: bool,
}

/// The proxy core. See the module docs for how to drive it.
pub struct Proxy<R> {
    cfg: ProxyConfig,
    local: Local,
    router: R,
    resolver: Box<dyn Resolver + Send>,
    calls: HashMap<u64, Call>,
    by_server: HashMap<ServerTxn, u64>,
    by_client: HashMap<ClientTxn, (u64, usize)>,
    timers: BinaryHeap<Reverse<(Instant, u64, usize, TimerKind)>>,
    next_call: u64,
    ids: forward::Ids,
    decisions: VecDeque<(Instant, String, Decision)>,
}

impl<R: Router> Proxy<R> {
    /// A proxy with a router (the dial plan) and a resolver for host names.
    pub fn new(cfg: ProxyConfig, router: R, resolver: Box<dyn Resolver + Send>) -> Proxy<R> {
        Proxy {
            local: Local::new(&cfg.local),
            ids: forward::Ids::new(cfg.seed),
            cfg,
            router,
            resolver,
            calls: HashMap::new(),
            by_server: HashMap::new(),
            by_client: HashMap::new(),
            timers: BinaryHeap::new(),
            next_call: 1,
            decisions: VecDeque::new(),
        }
    }

    /// Calls in progress (response contexts not yet released).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The next decision made, with its time and Call-ID.
    pub fn poll_decision(&mut self) -> Option<(Instant, String, Decision)> {
        self.decisions.pop_front()
    }

    /// The next proxy timer (no-response, ring, Timer C).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, cid, bi, kind))) = self.timers.peek() {
            let live = self
                .calls
                .get(&cid)
                .and_then(|c| c.branches.get(bi))
                .is_some_and(|b| b.deadline(kind) == Some(at));
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    fn decide(&mut self, now: Instant, call_id: &str, d: Decision) {
        match &d {
            Decision::Ringing { .. } | Decision::TimerArmed { .. } => {
                debug!(call_id, "{d}")
            }
            _ => info!(call_id, "{d}"),
        }
        if self.cfg.keep_decisions {
            self.decisions.push_back((now, call_id.to_owned(), d));
        }
    }

    /// Feeds one event from the transaction layer.
    pub fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        match ev {
            Event::Request {
                txn: server,
                request,
                source,
                cancels,
            } => {
                if request.method() == Some(&Method::Cancel) {
                    self.on_cancel(now, server, &request, cancels, txn);
                } else {
                    self.on_request(now, server, request, source, txn);
                }
            }
            Event::Ack { request, source } => self.forward_ack(request, source, txn),
            Event::Response {
                txn: client,
                response,
            } => self.on_response(now, client, response, txn),
            Event::StrayResponse { response, source } => self.forward_stray(response, source, txn),
            Event::Timeout(TxnRef::Client(client)) => {
                self.on_branch_failure(now, client, Why::TransactionTimeout, 408, txn)
            }
            Event::TransportError(TxnRef::Client(client), e) => {
                self.on_branch_failure(now, client, Why::Transport(e), 503, txn)
            }
            Event::Terminated(TxnRef::Client(client)) => {
                if let Some((cid, _)) = self.by_client.remove(&client) {
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.live_clients = call.live_clients.saturating_sub(1);
                    }
                    self.maybe_release(cid);
                }
            }
            Event::Terminated(TxnRef::Server(server)) => {
                if let Some(cid) = self.by_server.remove(&server) {
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.server_done = true;
                    }
                    self.maybe_release(cid);
                }
            }
            // Timer H or a send failure upstream: the transaction ends by itself.
            Event::Timeout(TxnRef::Server(_)) | Event::TransportError(TxnRef::Server(_), _) => {}
            _ => {}
        }
    }

    fn maybe_release(&mut self, cid: u64) {
        let done = self
            .calls
            .get(&cid)
            .is_some_and(|c| c.server_done && c.live_clients == 0);
        if done {
            if let Some(call) = self.calls.remove(&cid) {
                self.by_server.remove(&call.server);
            }
        }
    }

    fn reply(
        &mut self,
        now: Instant,
        server: ServerTxn,
        req: &Message,
        code: u16,
        reason: &str,
        txn: &mut TxnLayer,
    ) {
        let mut b = req.response(code, reason).to_tag(&self.ids.tag());
        if code == 420 {
            let tags: Vec<&str> = req.tokens(HeaderName::ProxyRequire).collect();
            b = b.header("Unsupported", &tags.join(", "));
        }
        let _ = txn.send_response(now, server, b.build());
    }

    fn on_request(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: Message,
        source: Peer,
        txn: &mut TxnLayer,
    ) {
        let call_id = request.call_id().unwrap_or("-").to_owned();
        // RFC 3261 §16.3: Max-Forwards, loops, Proxy-Require.
        if request.max_forwards().ok().flatten() == Some(0) {
            self.decide(
                now,
                &call_id,
                Decision::Rejected {
                    status: 483,
                    reason: "Max-Forwards is 0".into(),
                },
            );
            return self.reply(now, server, &request, 483, "Too Many Hops", txn);
        }
        if self.local.is_loop(&request) {
            self.decide(
                now,
                &call_id,
                Decision::Rejected {
                    status: 482,
                    reason: "request looped".into(),
                },
            );
            return self.reply(now, server, &request, 482, "Loop Detected", txn);
        }
        if request.tokens(HeaderName::ProxyRequire).next().is_some() {
            self.decide(
                now,
                &call_id,
                Decision::Rejected {
                    status: 420,
                    reason: "Proxy-Require names an extension we lack".into(),
                },
            );
            return self.reply(now, server, &request, 420, "Bad Extension", txn);
        }
        let request = match self.local.preprocess_route(&request) {
            Ok(r) => r,
            Err(_) => return self.reply(now, server, &request, 400, "Bad Route", txn),
        };
        let is_invite = request.method() == Some(&Method::Invite);
        if is_invite {
            // Stop upstream retransmissions at once (§16.2 allows the proxy its own 100).
            let _ = txn.send_response(now, server, request.response(100, "Trying").build());
        }
        let in_dialog = request.to_tag().is_some();
        let top_route = request
            .routes()
            .next()
            .and_then(Result::ok)
            .map(|r| r.uri_str.to_owned());
        let (fixed_hop, plan, policy, rule) = if in_dialog || top_route.is_some() {
            let hop_uri = top_route
                .unwrap_or_else(|| request.request_uri_str().unwrap_or_default().to_owned());
            match Target::parse(&hop_uri) {
                Ok(hop) => (
                    Some(hop.clone()),
                    vec![vec![hop]],
                    FailoverPolicy::no_failover(),
                    Arc::from("(route set)"),
                ),
                Err(_) => {
                    return self.reply(now, server, &request, 416, "Unsupported URI Scheme", txn)
                }
            }
        } else {
            match self.router.route(&request, &source) {
                RouteDecision::Targets { plan, policy, rule } => (None, plan.groups, policy, rule),
                RouteDecision::Reject {
                    status,
                    reason,
                    rule,
                } => {
                    self.decide(
                        now,
                        &call_id,
                        Decision::Rejected {
                            status,
                            reason: format!("rule {rule:?}: {reason}"),
                        },
                    );
                    return self.reply(now, server, &request, status, &reason, txn);
                }
            }
        };
        if let Some(hop) = &fixed_hop {
            let to_us = destination(hop, self.resolver.as_ref())
                .is_some_and(|d| self.local.is_local_addr(d.addr));
            if to_us {
                // An in-dialog request whose next hop is this proxy: nowhere to go.
                self.decide(
                    now,
                    &call_id,
                    Decision::Rejected {
                        status: 404,
                        reason: "in-dialog request addressed to this proxy, without a Route".into(),
                    },
                );
                return self.reply(now, server, &request, 404, "Not Here", txn);
            }
        }
        let targets = plan.iter().map(Vec::len).sum();
        if fixed_hop.is_none() {
            self.decide(
                now,
                &call_id,
                Decision::Routed {
                    rule: rule.to_string(),
                    targets,
                },
            );
        }
        let cid = self.next_call;
        self.next_call += 1;
        let call = Call {
            server,
            request,
            source,
            call_id,
            policy,
            groups: plan.into_iter().collect(),
            seen: Vec::new(),
            targets_used: 0,
            group: 0,
            branches: Vec::new(),
            best: BestResponse::default(),
            fixed_hop,
            to_tag: self.ids.tag(),
            answered: false,
            final_sent: false,
            cancelled: false,
            live_clients: 0,
            server_done: false,
        };
        self.calls.insert(cid, call);
        self.by_server.insert(server, cid);
        self.next_group(now, cid, txn);
    }

    /// Starts the next group that yields at least one branch, or sends the final response.
    fn next_group(&mut self, now: Instant, cid: u64, txn: &mut TxnLayer) {
        loop {
            let Some(call) = self.calls.get_mut(&cid) else {
                return;
            };
            if call.answered || call.final_sent || call.cancelled {
                return;
            }
            let Some(group) = call.groups.pop_front() else {
                return self.finish_if_idle(now, cid, txn);
            };
            call.group += 1;
            let mut started = 0;
            for target in group {
                let Some(call) = self.calls.get_mut(&cid) else {
                    return;
                };
                if call.targets_used >= call.policy.max_targets {
                    let (id, max_targets) = (call.call_id.clone(), call.policy.max_targets);
                    call.groups.clear();
                    self.decide(now, &id, Decision::TargetLimit { max_targets });
                    break;
                }
                call.targets_used += 1;
                call.seen.push(target.identity());
                if self.start_branch(now, cid, target, txn) {
                    started += 1;
                }
            }
            if started > 0 {
                return;
            }
        }
    }

    fn start_branch(&mut self, now: Instant, cid: u64, target: Target, txn: &mut TxnLayer) -> bool {
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        let hop = call.fixed_hop.clone().unwrap_or_else(|| target.clone());
        let dest = destination(&hop, self.resolver.as_ref());
        let built = dest.and_then(|dest| {
            let set_uri = if call.fixed_hop.is_some() {
                None
            } else {
                Some(target.uri.as_str())
            };
            let rr = self.cfg.record_route
                && call.fixed_hop.is_none()
                && call.request.method() == Some(&Method::Invite);
            let req = forward::request(
                &call.request,
                set_uri,
                dest.transport,
                rr,
                &self.local,
                &mut self.ids,
            )?;
            if dest.transport == Transport::Udp && req.as_bytes().len() > UDP_MAX_REQUEST {
                // RFC 3261 §18.1.1: too big for UDP without a known path MTU; the top Via
                // must then name the transport actually used.
                let dest = Peer {
                    transport: Transport::Tcp,
                    ..dest
                };
                let req = forward::request(
                    &call.request,
                    set_uri,
                    Transport::Tcp,
                    rr,
                    &self.local,
                    &mut self.ids,
                )?;
                return Some((dest, req));
            }
            Some((dest, req))
        });
        let call_id = call.call_id.clone();
        let Some((dest, req)) = built else {
            call.best.offer(Outcome::Synthetic(503));
            self.decide(
                now,
                &call_id,
                Decision::RolledOver {
                    target: target.to_string(),
                    why: Why::Unresolvable,
                },
            );
            return false;
        };
        let client = match txn.send_request(now, req, dest) {
            Ok(c) => c,
            Err(e) => {
                debug!(call_id, "could not start a client transaction: {e}");
                call.best.offer(Outcome::Synthetic(503));
                return false;
            }
        };
        let is_invite = call.request.method() == Some(&Method::Invite);
        let policy = &call.policy;
        let branch = Branch {
            target: target.clone(),
            client,
            group: call.group,
            state: BranchState::Trying,
            no_response_at: Some(now + policy.no_response_timeout),
            ring_at: None,
            timer_c_at: is_invite.then(|| now + self.cfg.timer_c),
        };
        let bi = call.branches.len();
        let no_response = policy.no_response_timeout;
        for kind in [TimerKind::NoResponse, TimerKind::C] {
            if let Some(at) = branch.deadline(kind) {
                self.timers.push(Reverse((at, cid, bi, kind)));
            }
        }
        call.branches.push(branch);
        call.live_clients += 1;
        self.by_client.insert(client, (cid, bi));
        self.decide(
            now,
            &call_id,
            Decision::Trying {
                target: target.to_string(),
            },
        );
        self.decide(
            now,
            &call_id,
            Decision::TimerArmed {
                target: target.to_string(),
                timer: "no-response",
                after: no_response,
            },
        );
        true
    }

    fn on_response(&mut self, now: Instant, client: ClientTxn, resp: Message, txn: &mut TxnLayer) {
        let Some(&(cid, bi)) = self.by_client.get(&client) else {
            return;
        };
        let Some(code) = resp.status() else { return };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(branch) = call.branches.get_mut(bi) else {
            return;
        };
        let target = branch.target.to_string();
        let call_id = call.call_id.clone();
        if code < 200 {
            branch.no_response_at = None;
            let was = branch.state.clone();
            if matches!(
                was,
                BranchState::Trying | BranchState::Heard | BranchState::Abandoned
            ) {
                branch.state = if code == 100 {
                    BranchState::Heard
                } else {
                    BranchState::Ringing
                };
            }
            if code == 100 {
                return;
            }
            let mut armed = None;
            if call.request.method() == Some(&Method::Invite) {
                if branch.ring_at.is_none() && branch.state == BranchState::Ringing {
                    let after = call.policy.ring_timeout;
                    branch.ring_at = Some(now + after);
                    self.timers
                        .push(Reverse((now + after, cid, bi, TimerKind::Ring)));
                    armed = Some(Decision::TimerArmed {
                        target: target.clone(),
                        timer: "ring",
                        after,
                    });
                }
                // Timer C restarts with every provisional (§16.7 step 2).
                let at = now + self.cfg.timer_c;
                branch.timer_c_at = Some(at);
                self.timers.push(Reverse((at, cid, bi, TimerKind::C)));
            }
            let relay = branch.state != BranchState::Cancelled && !call.answered;
            if relay && !call.final_sent {
                let _ = txn.send_response(now, call.server, forward::response(&resp));
            }
            if let Some(d) = armed {
                self.decide(now, &call_id, d);
            }
            if !relay {
                return;
            }
            self.decide(
                now,
                &call_id,
                Decision::Ringing {
                    target,
                    status: code,
                },
            );
            return;
        }
        branch.clear_timers();
        let previous = std::mem::replace(&mut branch.state, BranchState::Completed(code));
        if (200..300).contains(&code) {
            return self.on_answer(now, cid, bi, resp, txn);
        }
        match previous {
            // Already left behind and accounted for: only the final outcome matters.
            BranchState::Cancelled => return self.finish_if_idle(now, cid, txn),
            BranchState::Abandoned => {
                call.best.offer(Outcome::Response(resp));
                return self.finish_if_idle(now, cid, txn);
            }
            BranchState::Completed(_) => return,
            _ => {}
        }
        if call.answered || call.final_sent {
            return;
        }
        if call.cancelled {
            call.best.offer(Outcome::Response(resp));
            return self.finish_if_idle(now, cid, txn);
        }
        let pattern = call.policy.on_response.clone();
        if (300..400).contains(&code) && call.policy.follow_redirects {
            let (added, dropped) = self.redirect_targets(cid, &resp);
            if !added.is_empty() {
                let names = added.iter().map(Target::to_string).collect();
                if let Some(call) = self.calls.get_mut(&cid) {
                    // Each Contact alone, highest q first, before the remaining groups.
                    for t in added.into_iter().rev() {
                        call.groups.push_front(vec![t]);
                    }
                }
                self.decide(
                    now,
                    &call_id,
                    Decision::Redirected {
                        target,
                        added: names,
                        dropped,
                    },
                );
                return self.advance(now, cid, txn);
            }
            if dropped > 0 {
                // Every Contact was a duplicate, already tried, or over max_targets.
                let redirect = Decision::Redirected {
                    target: target.clone(),
                    added: vec![],
                    dropped,
                };
                self.decide(now, &call_id, redirect);
            }
        }
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        call.best.offer(Outcome::Response(resp));
        if code == 503 || pattern.rolls_over(code) {
            self.decide(
                now,
                &call_id,
                Decision::RolledOver {
                    target,
                    why: Why::Status {
                        status: code,
                        pattern: pattern.as_str().to_owned(),
                    },
                },
            );
        } else {
            call.groups.clear();
            self.decide(
                now,
                &call_id,
                Decision::Stopped {
                    target,
                    status: code,
                },
            );
            if code >= 600 {
                // A global failure: nothing else is worth ringing (§16.7 step 5).
                self.cancel_active(now, cid, None, "6xx received", txn);
            }
        }
        self.advance(now, cid, txn);
    }

    fn on_answer(&mut self, now: Instant, cid: u64, bi: usize, resp: Message, txn: &mut TxnLayer) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let bytes = forward::response(&resp);
        // Every 2xx goes upstream (§16.7 step 5), even after a final was sent: a late answer
        // is never lost. Outside the transaction it goes statelessly to the same peer.
        if txn.send_response(now, call.server, bytes.clone()).is_err() {
            txn.send_stateless(call.source, bytes);
        }
        let target = call
            .branches
            .get(bi)
            .map(|b| b.target.to_string())
            .unwrap_or_default();
        let call_id = call.call_id.clone();
        let first = !call.answered;
        call.answered = true;
        call.final_sent = true;
        call.groups.clear();
        if first {
            self.decide(
                now,
                &call_id,
                Decision::Answered {
                    target,
                    status: resp.status().unwrap_or(200),
                },
            );
            self.cancel_active(
                now,
                cid,
                Some("SIP;cause=200;text=\"Call completed elsewhere\""),
                "call completed elsewhere",
                txn,
            );
        }
    }

    /// CANCELs every active branch (or abandons it when it has not rung yet, §9.1).
    fn cancel_active(
        &mut self,
        now: Instant,
        cid: u64,
        reason: Option<&str>,
        why: &str,
        txn: &mut TxnLayer,
    ) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let call_id = call.call_id.clone();
        let mut cancelled = Vec::new();
        for b in call.branches.iter_mut().filter(|b| b.is_active()) {
            // The transaction sends the CANCEL now, or when a provisional arrives.
            let _ = txn.cancel(now, b.client, reason);
            b.state = if b.state == BranchState::Ringing {
                BranchState::Cancelled
            } else {
                BranchState::Abandoned
            };
            b.clear_timers();
            cancelled.push(b.target.to_string());
        }
        for target in cancelled {
            self.decide(
                now,
                &call_id,
                Decision::Cancelled {
                    target,
                    reason: why.to_owned(),
                },
            );
        }
    }

    /// The Contacts of a 3xx as new targets: by q (highest first), without duplicates or
    /// targets already tried, within `max_targets`. Returns them and how many were dropped.
    fn redirect_targets(&mut self, cid: u64, resp: &Message) -> (Vec<Target>, usize) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return (vec![], 0);
        };
        let mut contacts: Vec<(u16, Target)> = Vec::new();
        let mut dropped = 0;
        for c in resp.contacts() {
            match c
                .ok()
                .and_then(|c| Some((c.q().unwrap_or(1000), Target::parse(c.uri_str).ok()?)))
            {
                Some(qt) => contacts.push(qt),
                None => dropped += 1,
            }
        }
        contacts.sort_by_key(|(q, _)| Reverse(*q)); // stable: equal q keep their order
        let queued: usize = call.groups.iter().map(Vec::len).sum();
        let room = call
            .policy
            .max_targets
            .saturating_sub(call.targets_used + queued);
        let mut added = Vec::new();
        for (_, t) in contacts {
            let id = t.identity();
            if call.seen.contains(&id) || added.len() >= room {
                dropped += 1;
                continue;
            }
            call.seen.push(id);
            added.push(t);
        }
        (added, dropped)
    }

    /// After a branch ended: start the next group when the current one has nothing pending.
    fn advance(&mut self, now: Instant, cid: u64, txn: &mut TxnLayer) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let group = call.group;
        let pending = call
            .branches
            .iter()
            .any(|b| b.group == group && b.is_active());
        if !pending {
            self.next_group(now, cid, txn);
        }
    }

    /// Sends the best response upstream once nothing can still answer.
    fn finish_if_idle(&mut self, now: Instant, cid: u64, txn: &mut TxnLayer) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.final_sent
            || call.branches.iter().any(Branch::is_active)
            || (!call.groups.is_empty() && !call.cancelled)
        {
            return;
        }
        let (status, bytes) = if call.cancelled {
            (
                487,
                call.request
                    .response(487, "Request Terminated")
                    .to_tag(&call.to_tag)
                    .build(),
            )
        } else {
            call.best.build(&call.request, &call.to_tag)
        };
        call.final_sent = true;
        let _ = txn.send_response(now, call.server, bytes);
        let call_id = call.call_id.clone();
        self.decide(now, &call_id, Decision::Final { status });
    }

    fn on_branch_failure(
        &mut self,
        now: Instant,
        client: ClientTxn,
        why: Why,
        synthetic: u16,
        txn: &mut TxnLayer,
    ) {
        let Some(&(cid, bi)) = self.by_client.get(&client) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(branch) = call.branches.get_mut(bi) else {
            return;
        };
        let was_active = branch.is_active();
        branch.clear_timers();
        branch.state = BranchState::Completed(synthetic);
        let target = branch.target.to_string();
        let call_id = call.call_id.clone();
        if !was_active {
            return self.finish_if_idle(now, cid, txn);
        }
        call.best.offer(Outcome::Synthetic(synthetic));
        if !call.answered && !call.final_sent && !call.cancelled {
            self.decide(now, &call_id, Decision::RolledOver { target, why });
        }
        self.advance(now, cid, txn);
        self.finish_if_idle(now, cid, txn);
    }

    /// Fires the proxy timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        while let Some(&Reverse((at, cid, bi, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get_mut(&cid) else {
                continue;
            };
            let Some(branch) = call.branches.get_mut(bi) else {
                continue;
            };
            if branch.deadline(kind) != Some(at) || !branch.is_active() {
                continue;
            }
            // §16.8: a branch that sent any provisional (a 100 too) is CANCELled.
            let ringing = matches!(branch.state, BranchState::Ringing | BranchState::Heard);
            let (why, state) = match kind {
                TimerKind::NoResponse => (
                    Why::NoResponse(call.policy.no_response_timeout),
                    BranchState::Abandoned,
                ),
                TimerKind::Ring => (
                    Why::RingTimeout(call.policy.ring_timeout),
                    BranchState::Cancelled,
                ),
                TimerKind::C if ringing => (Why::TimerC, BranchState::Cancelled),
                TimerKind::C => (Why::TimerC, BranchState::Abandoned),
            };
            if state == BranchState::Cancelled {
                let _ = txn.cancel(now, branch.client, None);
            } else {
                // §9.1: no CANCEL before a provisional; stop retransmitting instead.
                txn.abandon(branch.client);
            }
            branch.state = state;
            branch.clear_timers();
            let target = branch.target.to_string();
            let call_id = call.call_id.clone();
            call.best.offer(Outcome::Synthetic(408));
            self.decide(now, &call_id, Decision::RolledOver { target, why });
            self.advance(now, cid, txn);
            self.finish_if_idle(now, cid, txn);
        }
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        server: ServerTxn,
        cancel: &Message,
        cancels: Option<ServerTxn>,
        txn: &mut TxnLayer,
    ) {
        let cid = cancels.and_then(|s| self.by_server.get(&s).copied());
        let Some(cid) = cid else {
            let _ = txn.send_response(
                now,
                server,
                cancel
                    .response(481, "Call/Transaction Does Not Exist")
                    .build(),
            );
            return;
        };
        // §16.10: answer the CANCEL, then cancel every pending branch.
        let _ = txn.send_response(now, server, cancel.response(200, "OK").build());
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.final_sent {
            return;
        }
        call.cancelled = true;
        call.groups.clear();
        let reason = cancel
            .header_str(HeaderName::Reason)
            .and_then(Result::ok)
            .map(str::to_owned);
        self.cancel_active(now, cid, reason.as_deref(), "cancelled upstream", txn);
        // Branches that never rang are abandoned at once; wait only for the ringing ones.
        self.finish_if_idle(now, cid, txn);
    }

    /// ACK for a 2xx: forwarded statelessly along its route (§16.11).
    fn forward_ack(&mut self, ack: Message, source: Peer, txn: &mut TxnLayer) {
        let Ok(ack) = self.local.preprocess_route(&ack) else {
            return;
        };
        let hop = ack
            .routes()
            .next()
            .and_then(Result::ok)
            .map(|r| r.uri_str.to_owned())
            .or_else(|| ack.request_uri_str().map(str::to_owned));
        let Some(dest) = hop
            .and_then(|h| Target::parse(&h).ok())
            .and_then(|t| destination(&t, self.resolver.as_ref()))
            .filter(|d| !self.local.is_local_addr(d.addr))
        else {
            debug!(%source, "ACK with no usable next hop dropped");
            return;
        };
        if let Some(bytes) = forward::stateless_request(&ack, dest.transport, &self.local) {
            txn.send_stateless(dest, bytes);
        }
    }

    /// A response with no transaction: a 2xx retransmitted after its transaction ended is
    /// forwarded statelessly to the next Via (§16.7 / §18.2.2); anything else is dropped.
    fn forward_stray(&mut self, resp: Message, source: Peer, txn: &mut TxnLayer) {
        let ours = resp.top_via().ok().is_some_and(|v| self.local.is_ours(&v));
        let is_2xx = resp.status().is_some_and(|c| (200..300).contains(&c));
        let next = resp
            .vias()
            .nth(1)
            .and_then(Result::ok)
            .and_then(|v| forward::via_destination(&v));
        match (ours && is_2xx, next) {
            (true, Some(dest)) => txn.send_stateless(dest, forward::response(&resp)),
            _ => {
                debug!(%source, status = resp.status(), "response matching no transaction dropped")
            }
        }
    }
}
