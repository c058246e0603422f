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
//!  INVITE ─▶ checks (483/482/420) ─▶ route ─▶ Engine (crate::engine): which targets, when
//!          to leave one ─▶ Steps ─▶ here: build each branch's request, CANCEL, relay
//!          1xx and 2xx upstream, send the best final response when every target failed
//! ```

use std::collections::VecDeque;

/// The core's tables, hashed with a per-process random key (ahash): several are keyed by
/// what peers send, and SipHash cost more than the lookups themselves.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_sip::{HeaderName, Message, Method, StatusCode};
use rollover_txn::{
    Admit, ClientTxn, Event, Peer, ServerTxn, TimerWheel, Transport, TxnLayer, TxnMap, TxnRef,
};
use tracing::debug;

use crate::forward::{self, Local};
use crate::guard::{Overload, Pike, RefusalLog, SecurityConfig};
use crate::policy_hooks::{CallView, Edits, Failed, RoutePolicy};
use crate::router::{destination, Hops, RouteDecision};
use crate::secret::Secret;
use crate::stats::ProxyStats;
use rollover_failover::engine::{BranchId, End, Engine, RedirectMode, Step};
use rollover_failover::FailoverPolicy;
use rollover_failover::Resolver;
use rollover_failover::{Decision, Why};

mod branch;
mod calls;
mod decide;
mod dialog;
mod door;
mod failure;
mod routing;

pub use branch::Question;
use branch::Resolving;
use calls::{CallKey, Calls};
use door::{stateless_tag, ALLOW};
use rollover_failover::Target;
use routing::Routing;
pub use routing::ROUTE_ANSWER_TIMEOUT;

impl<R: RoutePolicy> rollover_txn::TransactionUser for Proxy<R> {
    fn handle_txn_event(&mut self, now: Instant, ev: Event, txn: &mut TxnLayer) {
        Proxy::handle_txn_event(self, now, ev, txn);
    }

    fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        Proxy::handle_timeout(self, now, txn);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        Proxy::poll_timeout(self)
    }

    fn admit(&mut self, now: Instant, source: &Peer, msg: &Message, backlog: usize) -> Admit {
        Proxy::admit(self, now, source, msg, backlog)
    }

    fn is_blocked(&mut self, now: Instant, source: &Peer) -> bool {
        Proxy::is_blocked(self, now, source)
    }
}

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
    /// The key our Record-Route tokens and branch MACs are made with. The default is a
    /// fixed, public value for tests and simulations: a server sets its own.
    pub secret: Secret,
    /// Trusted sources, the allow list, flood and overload limits.
    pub security: SecurityConfig,
    /// What to do with a 2xx from a branch left behind after another branch answered.
    pub late_answer: LateAnswer,
    /// RFC 3261 §18.1.1, off by default as in Kamailio (`udp_mtu = 0`): a request for a UDP
    /// target larger than this many bytes is tried over `udp_mtu_try` first, and sent over
    /// UDP after all when that transport cannot connect.
    pub udp_mtu: usize,
    /// The transport tried for a request over `udp_mtu` (TCP).
    pub udp_mtu_try: Transport,
}

/// What happens to a 2xx that arrives after another branch answered the call (a target
/// that answered after its no-response timer left it, so it could not be CANCELled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LateAnswer {
    /// Relayed to the caller (RFC 3261 §16.7: every 2xx goes upstream); the caller then
    /// ACKs and hangs up the dialog it does not want.
    #[default]
    Relay,
    /// Not relayed: the proxy ACKs it and ends that dialog with a BYE itself.
    Hangup,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            local: Vec::new(),
            record_route: true,
            timer_c: Duration::from_secs(181),
            seed: 0x5eed,
            keep_decisions: false,
            secret: Secret::new(b"rollover: insecure default secret"),
            security: SecurityConfig::default(),
            late_answer: LateAnswer::Relay,
            udp_mtu: 0,
            udp_mtu_try: Transport::Tcp,
        }
    }
}

#[derive(Debug)]
struct Call {
    /// The number the routing policy knows the call by (`CallView::key`).
    key: u64,
    server: ServerTxn,
    request: Message,
    source: Peer,
    call_id: String,
    /// §16.6 step 8's hash of `request`, for every branch's Via (made once, when needed).
    loop_hash: Option<u32>,
    engine: Engine,
    /// The client transaction of each branch (by branch id), once started.
    clients: Vec<Option<ClientTxn>>,
    /// Send to this hop without touching the Request-URI (in-dialog and pre-routed requests).
    fixed_hop: Option<Target>,
    to_tag: String,
    final_sent: bool,
    /// The branch that answered, once one did.
    answered_by: Option<BranchId>,
    /// Late answers already hung up (To tags), so a retransmitted 2xx is only ACKed.
    hung_up: Vec<String>,
    /// The failure question was asked; the call waits for its answer.
    awaiting_failure: bool,
    /// Branches moved off UDP by `udp_mtu`: a transport failure sends them over UDP.
    switched: Vec<BranchId>,
    /// A branch's target's addresses not tried yet, in order.
    alternates: HashMap<BranchId, Vec<SocketAddr>>,
    /// Branches sent to a hop the policy chose rather than their Request-URI (a registered
    /// phone's flow or Path, [`RoutePolicy::branch_hop`]).
    branch_hops: HashMap<BranchId, Target>,
    live_clients: usize,
    server_done: bool,
}

/// The proxy core. See the module docs for how to drive it.
pub struct Proxy<R> {
    cfg: ProxyConfig,
    local: Local,
    router: R,
    resolver: Box<dyn Resolver + Send>,
    hops: Hops,
    /// By slot (`calls.rs`). Boxed: a call lingers after its final, so the table holds
    /// tens of thousands; boxed, an empty slot costs a pointer, not a whole call.
    calls: Calls<Call>,
    /// By transaction slot, not hashed: under load these are read for almost every
    /// message and are far larger than the caches (`TxnMap`).
    by_server: TxnMap<ServerTxn, CallKey>,
    by_client: TxnMap<ClientTxn, (CallKey, BranchId)>,
    /// (deadline, call): each call's next engine deadline, lazily invalidated.
    timers: TimerWheel<CallKey>,
    next_call: u64,
    ids: forward::Ids,
    decisions: VecDeque<(Instant, String, Decision)>,
    pike: Pike,
    overload: Overload,
    /// Shutting down: no new calls.
    draining: bool,
    stats: ProxyStats,
    /// Questions for the owner not yet polled.
    questions: VecDeque<Question>,
    /// Branches waiting for a name to be resolved, by question id.
    resolving: HashMap<u64, Resolving>,
    /// Calls waiting for the failure question's answer, by question id.
    failing: HashMap<u64, CallKey>,
    /// Requests waiting for their routing answer, by question id.
    routing: HashMap<u64, Routing>,
    routing_by_server: TxnMap<ServerTxn, u64>,
    /// (deadline, question id), in the order asked (every wait is as long).
    routing_deadlines: VecDeque<(Instant, u64)>,
    next_query: u64,
    /// Refusals logged per kind, so a flood cannot flood the log.
    pub(crate) refusals: RefusalLog,
}

impl<R: RoutePolicy> Proxy<R> {
    /// A proxy with a routing policy (a dial plan, or anything implementing [`RoutePolicy`])
    /// and a resolver for host names.
    pub fn new(cfg: ProxyConfig, router: R, resolver: Box<dyn Resolver + Send>) -> Proxy<R> {
        Proxy {
            local: Local::new(&cfg.local, cfg.secret.clone()),
            ids: forward::Ids::new(cfg.seed),
            pike: Pike::new(&cfg.security),
            overload: Overload::new(cfg.security.overload_backlog),
            draining: false,
            stats: ProxyStats::default(),
            questions: VecDeque::new(),
            resolving: HashMap::default(),
            failing: HashMap::default(),
            routing: HashMap::default(),
            routing_by_server: TxnMap::new(),
            routing_deadlines: VecDeque::new(),
            next_query: 1,
            refusals: RefusalLog::default(),
            cfg,
            router,
            resolver,
            hops: Hops::default(),
            calls: Calls::default(),
            by_server: TxnMap::new(),
            by_client: TxnMap::new(),
            timers: TimerWheel::new(),
            next_call: 1,
            decisions: VecDeque::new(),
        }
    }

    /// Calls in progress (response contexts not yet released).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// What the proxy has done since it started.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// How many refusals of `kind` the current log windows counted (each window's first is
    /// logged in full, the rest in one line when it ends).
    pub fn refusals_noted(&self, kind: crate::Refusal) -> u64 {
        self.refusals.noted(kind)
    }

    /// Calls still being set up: no final response sent to the caller yet (what a drain
    /// waits for; answered calls only linger to absorb retransmissions).
    pub fn calls_in_setup(&self) -> usize {
        self.calls.values().filter(|c| !c.final_sent).count()
    }

    /// Replaces the router (a reloaded dial plan). Calls under way keep the targets and
    /// policy they were routed with; new requests use the new router.
    pub fn set_router(&mut self, router: R) {
        self.router = router;
    }

    /// The routing policy (a reloadable script keeps its own state there; a location
    /// service its bindings).
    pub fn router_mut(&mut self) -> &mut R {
        &mut self.router
    }

    /// Stops taking new calls: from now on a new request gets a stateless 503 with
    /// `Retry-After`, while the calls under way and in-dialog requests are still served.
    /// The owner ends the process once [`Proxy::calls_in_setup`] is 0 (or its drain
    /// timeout ran).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// The next decision made, with its time and Call-ID.
    pub fn poll_decision(&mut self) -> Option<(Instant, String, Decision)> {
        rollover_txn::queue::take_front(&mut self.decisions)
    }

    /// The next proxy timer (no-response, ring, Timer C, the flood table's sweep).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let calls = &self.calls;
        let call = self.timers.next_deadline(|at, cid| {
            calls
                .get(cid)
                .is_some_and(|c| c.engine.poll_timeout() == Some(at))
        });
        [
            call,
            self.pike.poll_timeout(),
            self.refusals.poll_timeout(),
            self.routing_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
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
            Event::Ack { request, source } => self.forward_ack(now, request, source, txn),
            Event::Response {
                txn: client,
                response,
            } => self.on_response(now, client, response, txn),
            Event::StrayResponse { response, source } => {
                self.forward_stray(now, response, source, txn)
            }
            Event::Timeout(TxnRef::Client(client)) => self.on_branch_failure(
                now,
                client,
                Why::TransactionTimeout,
                StatusCode::REQUEST_TIMEOUT,
                txn,
            ),
            Event::TransportError(TxnRef::Client(client), e) => {
                // udp_mtu's fallback first, then the target's other addresses, then failover.
                let cid = self.by_client.get(&client).map(|&(cid, _)| cid);
                let retried = self.retry_over_udp(now, client, e, txn)
                    || self.retry_next_address(now, client, e, txn);
                if retried {
                    if let Some(cid) = cid {
                        self.drive(now, cid, txn);
                    }
                } else {
                    self.on_branch_failure(
                        now,
                        client,
                        Why::Transport(e),
                        StatusCode::SERVICE_UNAVAILABLE,
                        txn,
                    )
                }
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

    /// Drops stale deadlines from the timer wheel once they outnumber the live ones: a
    /// deadline left behind (a branch answered before its Timer C) would otherwise stay
    /// until it is due, up to 3 minutes, for every call.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.calls.len() + 1024 {
            return;
        }
        let calls = &self.calls;
        self.timers.retain(|at, cid| {
            calls
                .get(cid)
                .is_some_and(|c| c.engine.poll_timeout() == Some(at))
        });
    }

    /// Our own 100 Trying for an INVITE (§16.2), which stops the caller's retransmissions.
    fn send_trying(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: &Message,
        call_id: &str,
        txn: &mut TxnLayer,
    ) {
        if request.method() != Some(&Method::Invite) {
            return;
        }
        let trying = request.reply(StatusCode::TRYING).build();
        if let Err(e) = txn.send_response(now, server, trying) {
            self.stats.unsent("response");
            debug!(call_id, "100 Trying not sent: {e}");
        }
    }

    /// 400 Bad Route: a Route header that does not parse.
    fn refuse_bad_route(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: &Message,
        txn: &mut TxnLayer,
    ) {
        let why = "Route header does not parse".into();
        let code = StatusCode::BAD_REQUEST;
        self.refuse_with_reason(now, server, request, code, "Bad Route", why, txn);
    }

    /// Gives memory back after a peak of load: the calls' slab, a quarter full, drops the
    /// empty slots past its last call.
    fn shrink_after_peak(&mut self) {
        self.calls.shrink_after_peak();
        // The per-transaction maps keep their length, as the layer's slab does. The timer
        // wheel gives a slot's memory back as the slot empties.
    }

    /// Forgets a call whose transactions still run: their events then find no call.
    fn release_now(&mut self, cid: CallKey) {
        if let Some(call) = self.calls.remove(&cid) {
            self.router.on_release(call.key);
            self.by_server.remove(&call.server);
            for c in call.clients.iter().flatten() {
                self.by_client.remove(c);
            }
        }
    }

    fn maybe_release(&mut self, cid: CallKey) {
        let done = self
            .calls
            .get(&cid)
            .is_some_and(|c| c.server_done && c.live_clients == 0);
        if done {
            if let Some(call) = self.calls.remove(&cid) {
                self.router.on_release(call.key);
                self.by_server.remove(&call.server);
            }
        }
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
        if self.local.request_uri_is_us(&request) && request.routes().next().is_none() {
            // Addressed to the proxy itself: a keep-alive ping (Kamailio's dispatcher, an
            // SBC) gets 200 even with Max-Forwards 0 (§11, §16.3); a REGISTER gets 405
            // while there is no registrar.
            match request.method() {
                Some(Method::Options) => {
                    let resp = request
                        .reply(StatusCode::OK)
                        .to_tag(&stateless_tag(&request))
                        .header("Allow", ALLOW)
                        .header("Accept", "application/sdp")
                        .header("Supported", "")
                        .build();
                    debug!(%source, call_id, "OPTIONS to the proxy answered 200");
                    return txn.reply_stateless(server, resp);
                }
                Some(Method::Register) => {
                    let why = "REGISTER to the proxy: no registrar".into();
                    return self.refuse(
                        now,
                        server,
                        &request,
                        StatusCode::METHOD_NOT_ALLOWED,
                        why,
                        txn,
                    );
                }
                _ => {}
            }
        }
        // RFC 3261 §16.3: Max-Forwards, loops, Proxy-Require.
        if request.max_forwards().ok().flatten() == Some(0) {
            let why = "Max-Forwards is 0".into();
            return self.refuse(now, server, &request, StatusCode::TOO_MANY_HOPS, why, txn);
        }
        if self.local.is_loop(&request) {
            let why = "request looped".into();
            return self.refuse(now, server, &request, StatusCode::LOOP_DETECTED, why, txn);
        }
        if request.tokens(HeaderName::ProxyRequire).next().is_some() {
            let why = "Proxy-Require names an extension we lack".into();
            return self.refuse(now, server, &request, StatusCode::BAD_EXTENSION, why, txn);
        }
        let routed = match self.local.preprocess_route(&request) {
            Ok(r) => r,
            Err(_) => return self.refuse_bad_route(now, server, &request, txn),
        };
        let trusted = self.cfg.security.is_trusted(source.addr.ip());
        let routed_request = routed.request.as_ref().unwrap_or(&request);
        let in_dialog = routed_request.to_tag().is_some();
        let method = routed_request
            .method()
            .map_or_else(String::new, |m| m.as_str().to_owned());
        // Which path: along a route set (ours, or a trusted source's), or the dial plan.
        let follow_route = if in_dialog {
            if !routed.ours && !trusted {
                // Kamailio's stock answer to an in-dialog request that did not come along a
                // route set it recorded: it is not ours to relay (an open relay otherwise).
                let why =
                    format!("in-dialog {method} from {source} without a Route this proxy recorded");
                return self.refuse_with_reason(
                    now,
                    server,
                    routed_request,
                    StatusCode::NOT_FOUND,
                    "Not Here",
                    why,
                    txn,
                );
            }
            true
        } else if routed.foreign > 0 && trusted {
            // RFC 3261 §16.4/§16.6: a preloaded route from a trusted upstream is honoured.
            true
        } else {
            false
        };
        let request = if !follow_route && routed.foreign > 0 {
            // A stranger's preloaded Route: removed, and the dial plan decides.
            match forward::strip_routes(routed_request) {
                Ok(r) => {
                    self.decide(
                        now,
                        &call_id,
                        Decision::RouteRemoved {
                            entries: routed.foreign,
                            source: source.to_string(),
                        },
                    );
                    r
                }
                Err(_) => return self.refuse_bad_route(now, server, &request, txn),
            }
        } else {
            routed.request.unwrap_or(request)
        };
        let top_route = request
            .routes()
            .next()
            .and_then(Result::ok)
            .map(|r| r.uri_str.to_owned());
        let key = self.new_policy_key();
        let (fixed_hop, plan, policy, rule) = if follow_route {
            let hop_uri = top_route
                .unwrap_or_else(|| request.request_uri_str().unwrap_or_default().to_owned());
            match self.hops.target(&hop_uri) {
                Ok(hop) => (
                    Some(hop.clone()),
                    vec![vec![hop]],
                    FailoverPolicy::no_failover(),
                    Arc::from("(route set)"),
                ),
                Err(_) => {
                    let why = format!("next hop {hop_uri:?} is not a sip: or sips: URI");
                    return self.refuse(
                        now,
                        server,
                        &request,
                        StatusCode::UNSUPPORTED_URI_SCHEME,
                        why,
                        txn,
                    );
                }
            }
        } else {
            let view = CallView {
                key,
                call_id: &call_id,
                request: &request,
                source: &source,
            };
            match self.router.on_route(view) {
                RouteDecision::Targets { plan, policy, rule } => (None, plan.groups, policy, rule),
                RouteDecision::Reject {
                    status,
                    reason,
                    rule,
                } => {
                    self.router.on_release(key);
                    let why = format!("rule {rule:?}: {reason}");
                    return self
                        .refuse_with_reason(now, server, &request, status, &reason, why, txn);
                }
                RouteDecision::Drop { rule } => {
                    self.router.on_release(key);
                    return self.drop_request(now, server, &call_id, &rule, txn);
                }
                RouteDecision::Later => {
                    return self.ask_route(now, server, request, source, call_id, key, txn);
                }
            }
        };
        if let Some(hop) = &fixed_hop {
            let to_us = destination(&mut self.hops, hop, self.resolver.as_ref())
                .is_some_and(|d| self.local.is_local_addr(d.addr));
            if to_us {
                // Its next hop is this proxy: nowhere to go.
                let why = format!("{method} addressed to this proxy, without a Route");
                return self.refuse_with_reason(
                    now,
                    server,
                    &request,
                    StatusCode::NOT_FOUND,
                    "Not Here",
                    why,
                    txn,
                );
            }
            let trusted = trusted && !routed.ours;
            self.decide_lazily(
                now,
                &call_id,
                |s| s.relayed += 1,
                || Decision::Relayed {
                    method: method.clone(),
                    hop: hop.uri.clone(),
                    source: source.to_string(),
                    trusted,
                },
            );
        }
        // Routed: stop upstream retransmissions at once (§16.2 allows our own 100).
        self.send_trying(now, server, &request, &call_id, txn);
        self.start_call(
            now, server, request, source, call_id, key, fixed_hop, plan, policy, rule, txn,
        );
    }

    /// A fresh number for the routing policy to know a call by (given before routing, so
    /// the policy sees it when asked).
    fn new_policy_key(&mut self) -> u64 {
        let key = self.next_call;
        self.next_call += 1;
        key
    }

    /// The policy dropped the request: no reply, the transaction is forgotten.
    fn drop_request(
        &mut self,
        now: Instant,
        server: ServerTxn,
        call_id: &str,
        rule: &str,
        txn: &mut TxnLayer,
    ) {
        self.decide(
            now,
            call_id,
            Decision::Dropped {
                rule: rule.to_owned(),
            },
        );
        txn.ignore(server);
    }

    /// Creates the response context of a routed request and starts its first branches.
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        now: Instant,
        server: ServerTxn,
        request: Message,
        source: Peer,
        call_id: String,
        key: u64,
        fixed_hop: Option<Target>,
        plan: Vec<Vec<Target>>,
        policy: FailoverPolicy,
        rule: Arc<str>,
        txn: &mut TxnLayer,
    ) {
        let targets = plan.iter().map(Vec::len).sum();
        if fixed_hop.is_none() {
            self.decide_lazily(
                now,
                &call_id,
                |s| s.routed += 1,
                || Decision::Routed {
                    rule: rule.to_string(),
                    targets,
                },
            );
        }
        let is_invite = request.method() == Some(&Method::Invite);
        let mut engine = Engine::new(
            rollover_failover::TargetPlan { groups: plan },
            policy,
            is_invite,
            self.cfg.timer_c,
            RedirectMode::Follow,
        );
        engine.start(now);
        let call = Call {
            key,
            server,
            request,
            source,
            call_id,
            loop_hash: None,
            engine,
            clients: Vec::new(),
            fixed_hop,
            to_tag: self.ids.tag(),
            final_sent: false,
            answered_by: None,
            hung_up: Vec::new(),
            switched: Vec::new(),
            awaiting_failure: false,
            alternates: HashMap::default(),
            branch_hops: HashMap::default(),
            live_clients: 0,
            server_done: false,
        };
        let cid = self.calls.insert(Box::new(call));
        self.by_server.insert(server, cid);
        self.drive(now, cid, txn);
    }

    /// Carries out the engine's steps for a call, then schedules its next deadline.
    fn drive(&mut self, now: Instant, cid: CallKey, txn: &mut TxnLayer) {
        loop {
            let Some(call) = self.calls.get_mut(&cid) else {
                return;
            };
            let Some(step) = call.engine.poll_step() else {
                break;
            };
            match step {
                Step::Start { branch, target } => {
                    self.start_branch(now, cid, branch, target, false, txn)
                }
                Step::Cancel { branch, reason } => {
                    if let Some(Some(c)) = call.clients.get(branch.index()) {
                        // The transaction sends it now, or when a provisional arrives (§9.1).
                        if let Err(e) = txn.cancel(now, *c, reason.as_deref()) {
                            self.stats.unsent("cancel");
                            debug!(
                                call_id = call.call_id,
                                "CANCEL of branch {branch} not sent: {e}"
                            );
                        }
                    }
                }
                Step::Abandon { branch } => {
                    if let Some(Some(c)) = call.clients.get(branch.index()) {
                        txn.abandon(*c);
                    }
                }
                // A proxy follows every redirect: the engine never asks.
                Step::Redirect { .. } => {}
                Step::Decision { decision: d, .. } => {
                    let call_id = call.call_id.clone();
                    if call.fixed_hop.is_some() {
                        self.stats.note(&d);
                        // In-dialog requests follow their route set: no roll-over to report.
                        debug!(
                            call_id,
                            "{} {d}",
                            call.request.method().map_or("", |m| m.as_str())
                        );
                        if self.cfg.keep_decisions {
                            self.decisions.push_back((now, call_id, d));
                        }
                    } else {
                        self.decide(now, &call_id, d);
                    }
                }
                Step::Done(End::Answered(b)) => {
                    call.final_sent = true;
                    call.engine.forget_responses();
                    settle_request(&mut call.request);
                    call.answered_by = Some(b);
                }
                Step::Done(end) => {
                    if call.final_sent || call.awaiting_failure {
                        continue;
                    }
                    if end == End::Failed {
                        // The failure route: the policy may start new branches in this
                        // transaction, answer later, or let the best reply go.
                        let view = CallView {
                            key: call.key,
                            call_id: &call.call_id,
                            request: &call.request,
                            source: &call.source,
                        };
                        let failed = Failed {
                            status: call.engine.best_status(),
                            reply: call.engine.best().response(),
                        };
                        let answer = self.router.on_failure(view, failed);
                        if self.after_failure(now, cid, answer) {
                            continue;
                        }
                    }
                    let Some(call) = self.calls.get_mut(&cid) else {
                        return;
                    };
                    let (status, bytes) = if end == End::Cancelled {
                        let resp = call.request.reply(StatusCode::REQUEST_TERMINATED);
                        (
                            StatusCode::REQUEST_TERMINATED,
                            resp.to_tag(&call.to_tag).build(),
                        )
                    } else {
                        call.engine.best().build(&call.request, &call.to_tag)
                    };
                    call.final_sent = true;
                    call.engine.forget_responses();
                    settle_request(&mut call.request);
                    if let Err(e) = txn.send_response(now, call.server, bytes) {
                        self.stats.unsent("response");
                        debug!(call_id = call.call_id, "final {status} not sent: {e}");
                    }
                    let call_id = call.call_id.clone();
                    self.decide(now, &call_id, Decision::Final { status });
                }
            }
        }
        let finished = self.calls.get(&cid).is_some_and(|c| {
            c.final_sent && c.engine.is_done() && c.request.method() != Some(&Method::Invite)
        });
        if finished {
            // A non-INVITE's final is sent: its transactions absorb retransmissions on
            // their own (a non-INVITE has no late 2xx to relay), so the call goes now
            // rather than lingering with them for Timer J.
            return self.release_now(cid);
        }
        if let Some(at) = self.calls.get(&cid).and_then(|c| c.engine.poll_timeout()) {
            self.timers.insert(at, cid);
            self.compact_timers();
        }
    }

    fn on_response(&mut self, now: Instant, client: ClientTxn, resp: Message, txn: &mut TxnLayer) {
        let Some(&(cid, b)) = self.by_client.get(&client) else {
            return;
        };
        let Some(code) = resp.status_code() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        // The reply route: edits apply to what is relayed and to what is ranked.
        let mut edits = Edits::default();
        if let Some(target) = call.engine.target(b) {
            let view = CallView {
                key: call.key,
                call_id: &call.call_id,
                request: &call.request,
                source: &call.source,
            };
            self.router.on_reply(view, target, &resp, &mut edits);
        }
        let dropped = edits.drop && code.is_provisional();
        if edits.drop && !dropped {
            debug!(
                call_id = call.call_id,
                "{code}: a final reply cannot be dropped"
            );
        }
        let resp = if edits.is_empty() {
            resp
        } else {
            edits.apply(resp.clone()).unwrap_or(resp)
        };
        if code.is_provisional() {
            let relay = call.engine.on_provisional(now, b, code);
            if relay && !call.final_sent && !dropped {
                let bytes = forward::response(&resp);
                if let Err(e) = txn.send_response(now, call.server, bytes) {
                    self.stats.unsent("response");
                    debug!(call_id = call.call_id, "{code} not relayed: {e}");
                }
            }
        } else {
            let late = call.answered_by.is_some_and(|a| a != b);
            if code.is_success() && late && self.cfg.late_answer == LateAnswer::Hangup {
                let call_id = call.call_id.clone();
                let transport = txn
                    .peer(TxnRef::Client(client))
                    .map_or(Transport::Udp, |p| p.transport);
                return self.hang_up_late(now, cid, transport, &resp, &call_id, txn);
            }
            if code.is_success() {
                // Every 2xx goes upstream (§16.7 step 5), even after a final was sent: a late
                // answer is never lost. Outside the transaction it goes statelessly.
                let bytes = forward::response(&resp);
                if txn.send_response(now, call.server, bytes.clone()).is_err() {
                    txn.send_stateless(call.source, bytes);
                }
            }
            call.engine.on_final(now, b, &resp);
        }
        self.drive(now, cid, txn);
    }

    fn on_branch_failure(
        &mut self,
        now: Instant,
        client: ClientTxn,
        why: Why,
        synthetic: StatusCode,
        txn: &mut TxnLayer,
    ) {
        let Some(&(cid, b)) = self.by_client.get(&client) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&cid) {
            call.engine.on_failure(now, b, why, synthetic);
        }
        self.drive(now, cid, txn);
    }

    /// Fires the engine timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        self.pike.handle_timeout(now);
        self.refusals.flush(now);
        self.expire_routes(now, txn);
        self.shrink_after_peak();
        while let Some((_, cid)) = self.timers.pop_due(now) {
            let Some(call) = self.calls.get_mut(&cid) else {
                continue;
            };
            if call.engine.poll_timeout().is_some_and(|t| t <= now) {
                call.engine.handle_timeout(now);
                self.drive(now, cid, txn);
            }
        }
    }
}

/// A call's request once its final is sent: only its headers are needed again (a late 2xx
/// to hang up, the reply route's view), so a lingering call does not keep the body.
pub(super) fn settle_request(request: &mut Message) {
    if !request.body().is_empty() {
        *request = request.without_body();
    }
    request.shrink_to_fit();
}
