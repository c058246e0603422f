//! One outgoing call: the failover engine decides which target to try and when to leave it;
//! this builds each INVITE, asks the application about redirects, and reports progress.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_failover::{
    default_port, BranchId, Decision, End, Engine, FailoverPolicy, RedirectMode, Resolver,
    StartFailure, Step, Target, TargetPlan, Why,
};
use rollover_sip::{Message, Method, RequestBuilder, StatusCode};
use rollover_txn::{ClientTxn, Peer, TxnLayer};
use tracing::debug;

/// The application's answer about one redirect target (PJSUA's `pjsip_redirect_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectDecision {
    /// Try this target.
    Accept,
    /// Try this target and put it in the To header of this and later INVITEs.
    AcceptReplace,
    /// Skip this target; go on with the next.
    Reject,
    /// End the call now and report the 3xx.
    Stop,
    /// Decide later with [`OutgoingCall::process_redirect`] (within the time limit).
    Pending,
}

/// Asked for each new target a 3xx offers.
pub trait RedirectHandler: Send {
    /// Decides on `target`, offered by `response`.
    fn on_redirect(&mut self, target: &Target, response: &Message) -> RedirectDecision;
}

impl<F: FnMut(&Target, &Message) -> RedirectDecision + Send> RedirectHandler for F {
    fn on_redirect(&mut self, target: &Target, response: &Message) -> RedirectDecision {
        self(target, response)
    }
}

/// What to do with redirects.
pub enum Redirects {
    /// Try every new Contact (the default: Rollover's job is to get the call answered).
    Follow,
    /// Treat a 3xx like any other final response.
    Reject,
    /// Ask the application, target by target.
    Ask(Box<dyn RedirectHandler>),
}

impl std::fmt::Debug for Redirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redirects::Follow => "Follow",
            Redirects::Reject => "Reject",
            Redirects::Ask(_) => "Ask",
        })
    }
}

/// How to place a call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Our identity, a name-addr without tag: `"Alice" <sip:alice@example.com>`.
    pub from: String,
    /// Where we can be reached: `<sip:alice@192.0.2.1:5060>`.
    pub contact: String,
    /// The address in our Via.
    pub local: std::net::SocketAddr,
    /// The targets: the primary first, then the alternates (or parallel groups).
    pub targets: TargetPlan,
    /// Timers, pattern, redirect rule and `max_targets` (default 5 for a call).
    pub policy: FailoverPolicy,
    /// Every INVITE goes through this proxy (a `Route` with `;lr`).
    pub outbound_proxy: Option<Target>,
    /// The SDP offer.
    pub sdp: Option<Bytes>,
    /// Extra headers on every INVITE.
    pub headers: Vec<(String, String)>,
    /// How long a `Pending` redirect may wait for the application (then the call stops).
    pub redirect_timeout: Duration,
    /// The Call-ID shared by every INVITE of the call.
    pub call_id: String,
    /// Our From tag, shared likewise.
    pub from_tag: String,
    /// Timer C: a target that keeps ringing (or stays at 100 Trying) without a final
    /// response is left after this long, restarted by each provisional above 100 (RFC
    /// 3261 §16.6 step 11: more than 3 minutes; [`TIMER_C`] by default).
    pub timer_c: Duration,
    /// Answers 401/407 challenges, once per target (digest, MD5 or SHA-256, qop=auth).
    pub credentials: Option<crate::digest::Credentials>,
    /// When the INVITE carried no offer and the 2xx does, the answer for the ACK (RFC 3261
    /// §13.2.2.4): given the offer, returns the answer's SDP. Without it the ACK carries
    /// none, and no media can be set up.
    pub answer: Option<SdpAnswerer>,
}

/// The default Timer C of a call: 3 minutes and 1 second, as RFC 3261 asks for more than
/// 3 minutes (the proxy's default too).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Given an SDP offer, the answer (or `None` to send none).
pub type AnswerFn = dyn Fn(&[u8]) -> Option<Bytes> + Send + Sync;

/// Makes an SDP answer from an offer (see [`CallOptions::answer`]).
#[derive(Clone)]
pub struct SdpAnswerer(pub std::sync::Arc<AnswerFn>);

impl std::fmt::Debug for SdpAnswerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdpAnswerer(..)")
    }
}

impl CallOptions {
    /// Options with the defaults: `max_targets` 5, the seed's timers, 30 s for a decision.
    pub fn new(
        from: &str,
        local: std::net::SocketAddr,
        targets: TargetPlan,
        call_id: &str,
        from_tag: &str,
    ) -> CallOptions {
        CallOptions {
            from: from.to_owned(),
            contact: format!("<sip:rollover@{local}>"),
            local,
            targets,
            policy: FailoverPolicy {
                max_targets: 5,
                ..FailoverPolicy::default()
            },
            outbound_proxy: None,
            sdp: None,
            headers: Vec::new(),
            redirect_timeout: Duration::from_secs(30),
            timer_c: TIMER_C,
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            credentials: None,
            answer: None,
        }
    }
}

/// How one target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The target.
    pub target: Target,
    /// What happened, in words (`486 matched pattern …`, `no response within 10s`, `answered 200`).
    pub how: String,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// The target that answered, if one did.
    pub answered_by: Option<Target>,
    /// The final status: the 2xx, or the best failure (RFC 3261 §16.7 rules).
    pub status: StatusCode,
    /// Every target tried, in order, with how it ended.
    pub attempts: Vec<Attempt>,
}

/// Progress of a call, as an application sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// An INVITE went to this target.
    Trying(Target),
    /// A target is ringing (or sent another provisional).
    Ringing(Target, StatusCode),
    /// A 3xx from this target offered these new targets.
    Redirected(Target, Vec<Target>),
    /// The application's decision on this redirect target is awaited.
    RedirectPending(Target),
    /// A target was left behind; the call rolls over.
    RolledOver(Target, String),
    /// A target answered.
    Answered(Target, Message),
    /// Targeting is over: answered, or every target failed, or cancelled.
    Ended(CallOutcome),
    /// The answered call was hung up (`remote`: by the other side).
    HungUp {
        /// Whether the other side sent the BYE.
        remote: bool,
    },
}

/// What a BYE needs once a target answered (RFC 3261 §12.1.2).
#[derive(Debug, Clone)]
struct Dialog {
    remote_target: String,
    /// The route set, first hop first.
    routes: Vec<String>,
    /// The To header with the remote tag.
    to: String,
}

#[derive(Debug)]
struct PendingRedirect {
    branch: BranchId,
    response: Message,
    candidates: Vec<Target>,
    next: usize,
    accepted: Vec<Target>,
    rejected: usize,
    deadline: Option<Instant>,
}

/// One outgoing call, sans-IO: events and `now` in, transaction commands out.
pub struct OutgoingCall {
    opts: CallOptions,
    engine: Engine,
    redirects: Redirects,
    resolver: Box<dyn Resolver + Send>,
    cseq: u32,
    /// The To header for new INVITEs (the original target, or an `AcceptReplace`d one).
    to: String,
    /// The INVITE transaction of each branch started (the latest, after a challenge).
    branches: HashMap<BranchId, ClientTxn>,
    /// And the branch of each of those transactions.
    clients: HashMap<ClientTxn, BranchId>,
    pending: Option<PendingRedirect>,
    attempts: Vec<Attempt>,
    answered_by: Option<Target>,
    events: VecDeque<CallEvent>,
    ended: bool,
    next_branch: u64,
    dialog: Option<Dialog>,
    bye: Option<ClientTxn>,
    hung_up: bool,
    /// Branches whose challenge was answered already (once per target).
    authed: Vec<BranchId>,
}

impl std::fmt::Debug for OutgoingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingCall")
            .field("call_id", &self.opts.call_id)
            .field("ended", &self.ended)
            .finish()
    }
}

impl OutgoingCall {
    /// Starts the call: the first INVITE (or group of INVITEs) goes out.
    pub fn start(
        now: Instant,
        opts: CallOptions,
        redirects: Redirects,
        resolver: Box<dyn Resolver + Send>,
        txn: &mut TxnLayer,
    ) -> OutgoingCall {
        let to = opts
            .targets
            .groups
            .first()
            .and_then(|g| g.first())
            .map(|t| format!("<{}>", t.uri))
            .unwrap_or_default();
        let mode = match redirects {
            Redirects::Follow => RedirectMode::Follow,
            Redirects::Reject | Redirects::Ask(_) => RedirectMode::Ask,
        };
        let mut policy = opts.policy.clone();
        if matches!(redirects, Redirects::Reject) {
            policy.follow_redirects = false;
        }
        let engine = Engine::new(opts.targets.clone(), policy, true, opts.timer_c, mode);
        let mut call = OutgoingCall {
            opts,
            engine,
            redirects,
            resolver,
            cseq: 0,
            to,
            branches: HashMap::new(),
            clients: HashMap::new(),
            pending: None,
            attempts: Vec::new(),
            answered_by: None,
            events: VecDeque::new(),
            ended: false,
            next_branch: 0,
            dialog: None,
            bye: None,
            hung_up: false,
            authed: Vec::new(),
        };
        call.engine.start(now);
        call.drive(now, txn);
        call
    }

    /// The Call-ID of every INVITE of this call.
    pub fn call_id(&self) -> &str {
        &self.opts.call_id
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether a client transaction belongs to this call.
    pub fn owns(&self, client: ClientTxn) -> bool {
        self.bye == Some(client) || self.branch_of(client).is_some()
    }

    /// Whether the call is over and hung up (nothing more will happen).
    pub fn is_finished(&self) -> bool {
        self.ended && (self.answered_by.is_none() || self.hung_up)
    }

    /// Hangs up an answered call (BYE), or cancels one still being placed.
    pub fn hangup(&mut self, now: Instant, txn: &mut TxnLayer) {
        let Some(d) = self.dialog.clone() else {
            return self.cancel(now, txn);
        };
        if self.bye.is_some() || self.hung_up {
            return;
        }
        self.cseq += 1;
        self.next_branch += 1;
        let n = self.next_branch;
        let mut b = RequestBuilder::new(Method::Bye, &d.remote_target)
            .via(&format!(
                "SIP/2.0/UDP {};branch=z9hG4bK-{}-{n:x}",
                self.opts.local, self.opts.from_tag
            ))
            .from(&format!("{};tag={}", self.opts.from, self.opts.from_tag))
            .to(&d.to)
            .call_id(&self.opts.call_id)
            .cseq(self.cseq);
        for r in &d.routes {
            b = b.header("Route", r);
        }
        let hop = d
            .routes
            .first()
            .map(|r| r.trim_start_matches('<').trim_end_matches('>').to_owned())
            .unwrap_or(d.remote_target.clone());
        let sent = b
            .build()
            .ok()
            .and_then(|bytes| Message::parse(bytes).ok())
            .zip(self.dest_for(&hop))
            .and_then(|(bye, dest)| match txn.send_request(now, bye, dest) {
                Ok(c) => Some(c),
                Err(e) => {
                    debug!(call_id = self.opts.call_id, "BYE not sent: {e}");
                    None
                }
            });
        match sent {
            Some(c) => self.bye = Some(c),
            None => {
                self.hung_up = true;
                self.events.push_back(CallEvent::HungUp { remote: false });
            }
        }
    }

    /// A BYE from the other side: answered 200, the call is over.
    pub fn handle_bye(
        &mut self,
        now: Instant,
        server: rollover_txn::ServerTxn,
        bye: &Message,
        txn: &mut TxnLayer,
    ) {
        if let Err(e) = txn.send_response(now, server, bye.reply(StatusCode::OK).build()) {
            debug!(call_id = self.call_id(), "200 for the BYE not sent: {e}");
        }
        if !self.hung_up {
            self.hung_up = true;
            self.events.push_back(CallEvent::HungUp { remote: true });
        }
    }

    fn branch_of(&self, client: ClientTxn) -> Option<BranchId> {
        self.clients.get(&client).copied()
    }

    /// The client transactions of this call (its INVITEs and its BYE), for an owner that
    /// routes transaction events to calls by key.
    pub fn transactions(&self) -> impl Iterator<Item = ClientTxn> + '_ {
        self.clients.keys().copied().chain(self.bye)
    }

    /// The next progress event.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// The next deadline (failover timers, a pending redirect's limit).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.engine.poll_timeout(),
            self.pending.as_ref().and_then(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A response on one of this call's INVITEs.
    pub fn handle_response(
        &mut self,
        now: Instant,
        client: ClientTxn,
        resp: Message,
        txn: &mut TxnLayer,
    ) {
        let Some(code) = resp.status_code() else {
            return;
        };
        if self.bye == Some(client) {
            if code.is_final() && !self.hung_up {
                self.hung_up = true;
                self.events.push_back(CallEvent::HungUp { remote: false });
            }
            return;
        }
        let Some(b) = self.branch_of(client) else {
            return;
        };
        let challenged =
            code == StatusCode::UNAUTHORIZED || code == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
        if challenged && self.answer_challenge(now, b, &resp, txn) {
            // The target answered; the same branch goes on with the authenticated INVITE.
            self.engine.on_provisional(now, b, StatusCode::TRYING);
            self.drive(now, txn);
            return;
        }
        if code.is_provisional() {
            self.engine.on_provisional(now, b, code);
        } else {
            if code.is_success() {
                self.acknowledge(&resp, txn);
                if self.answered_by.is_none() {
                    let target = self.target(b);
                    self.answered_by = Some(target.clone());
                    self.dialog = dialog_of(&resp);
                    self.events
                        .push_back(CallEvent::Answered(target, resp.clone()));
                }
            }
            self.engine.on_final(now, b, &resp);
        }
        self.drive(now, txn);
    }

    /// A transaction of this call timed out or its transport failed.
    pub fn handle_failure(
        &mut self,
        now: Instant,
        client: ClientTxn,
        why: Why,
        synthetic: StatusCode,
        txn: &mut TxnLayer,
    ) {
        if self.bye == Some(client) {
            if !self.hung_up {
                self.hung_up = true;
                self.events.push_back(CallEvent::HungUp { remote: false });
            }
            return;
        }
        if let Some(b) = self.branch_of(client) {
            self.engine.on_failure(now, b, why, synthetic);
            self.drive(now, txn);
        }
    }

    /// Fires the call's timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, txn: &mut TxnLayer) {
        if self
            .pending
            .as_ref()
            .and_then(|p| p.deadline)
            .is_some_and(|d| d <= now)
        {
            // No decision in time: nothing the application did not approve is called.
            self.pending = None;
            self.engine.stop("no redirect decision in time");
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.drive(now, txn);
    }

    /// The application's late answer for the target announced by `RedirectPending`.
    pub fn process_redirect(
        &mut self,
        now: Instant,
        decision: RedirectDecision,
        txn: &mut TxnLayer,
    ) {
        if self.pending.is_some() && decision != RedirectDecision::Pending {
            self.apply(now, decision);
            self.ask(now);
        }
        self.drive(now, txn);
    }

    /// Gives up: CANCELs what rings, abandons the rest; the call ends with 487.
    pub fn cancel(&mut self, now: Instant, txn: &mut TxnLayer) {
        self.pending = None;
        self.engine
            .cancel(now, None, "cancelled by the application");
        self.drive(now, txn);
    }

    fn target(&self, b: BranchId) -> Target {
        self.engine.target(b).cloned().unwrap_or_else(|| Target {
            uri: String::new(),
            transport: rollover_txn::Transport::Udp,
        })
    }

    /// The ACK for a 2xx (RFC 3261 §13.2.2.4): a transaction of its own, to the Contact,
    /// along the route set.
    fn acknowledge(&mut self, resp: &Message, txn: &mut TxnLayer) {
        let Some(ack) = ack_for_2xx(&self.opts, resp, &mut self.next_branch) else {
            return;
        };
        let dest = self.dest_for(&ack.0);
        if let Some(dest) = dest {
            txn.send_stateless(dest, ack.1);
        }
    }

    fn dest_for(&self, uri: &str) -> Option<Peer> {
        self.dest_of(Target::parse(uri).ok()?)
    }

    /// Where a request for `target` goes: the outbound proxy, or the target itself over
    /// the transport it names (a `/TCP` target keeps TCP: the transport is not re-read
    /// from its URI).
    fn dest_of(&self, target: Target) -> Option<Peer> {
        let hop = match &self.opts.outbound_proxy {
            Some(p) => p.clone(),
            None => target,
        };
        peer_of(&hop, self.resolver.as_ref())
    }

    fn drive(&mut self, now: Instant, txn: &mut TxnLayer) {
        while let Some(step) = self.engine.poll_step() {
            match step {
                Step::Start { branch, target } => self.start_branch(now, branch, target, txn),
                Step::Cancel { branch, reason } => {
                    if let Some(c) = self.branches.get(&branch) {
                        if let Err(e) = txn.cancel(now, *c, reason.as_deref()) {
                            debug!(
                                call_id = self.opts.call_id,
                                "CANCEL of {branch} not sent: {e}"
                            );
                        }
                    }
                }
                Step::Abandon { branch } => {
                    if let Some(c) = self.branches.get(&branch) {
                        txn.abandon(*c);
                    }
                }
                Step::Redirect {
                    branch,
                    response,
                    candidates,
                } => {
                    let target = self.target(branch);
                    self.events
                        .push_back(CallEvent::Redirected(target, candidates.clone()));
                    self.pending = Some(PendingRedirect {
                        branch,
                        response,
                        candidates,
                        next: 0,
                        accepted: Vec::new(),
                        rejected: 0,
                        deadline: None,
                    });
                    self.ask(now);
                }
                Step::Decision { branch, decision } => self.note(branch, decision),
                Step::Done(end) => {
                    self.ended = true;
                    let status = match end {
                        End::Answered(_) => StatusCode::OK,
                        End::Cancelled => StatusCode::REQUEST_TERMINATED,
                        End::Failed => self.engine.best_status(),
                    };
                    let outcome = CallOutcome {
                        answered_by: self.answered_by.clone(),
                        status: if self.answered_by.is_some() {
                            StatusCode::OK
                        } else {
                            status
                        },
                        attempts: self.attempts.clone(),
                    };
                    self.events.push_back(CallEvent::Ended(outcome));
                }
            }
        }
    }

    /// Records decisions as attempts and events, with the branch's own target.
    fn note(&mut self, branch: Option<BranchId>, d: Decision) {
        let Some(t) = branch.and_then(|b| self.engine.target(b)).cloned() else {
            return;
        };
        let how = match d {
            Decision::Trying { .. } => {
                self.events.push_back(CallEvent::Trying(t));
                return;
            }
            Decision::Ringing { status, .. } => {
                self.events.push_back(CallEvent::Ringing(t, status));
                return;
            }
            Decision::RolledOver { why, .. } => {
                self.events
                    .push_back(CallEvent::RolledOver(t.clone(), why.to_string()));
                why.to_string()
            }
            Decision::Stopped { status, .. } => format!("{status}, final"),
            Decision::Redirected { added, .. } => format!("redirected to [{}]", added.join(", ")),
            Decision::Answered { status, .. } => format!("answered {status}"),
            Decision::Cancelled { reason, .. } => format!("cancelled ({reason})"),
            _ => return,
        };
        self.attempts.push(Attempt { target: t, how });
    }

    /// Asks the handler about the remaining candidates of the pending redirect.
    fn ask(&mut self, now: Instant) {
        loop {
            let Some(p) = self.pending.as_mut() else {
                return;
            };
            let Some(candidate) = p.candidates.get(p.next).cloned() else {
                let p = self.pending.take();
                if let Some(p) = p {
                    let status = p
                        .response
                        .status_code()
                        .unwrap_or(StatusCode::MULTIPLE_CHOICES);
                    self.engine
                        .redirect(now, p.branch, status, p.accepted, p.rejected);
                }
                return;
            };
            let decision = match &mut self.redirects {
                Redirects::Follow => RedirectDecision::Accept,
                Redirects::Reject => RedirectDecision::Reject,
                Redirects::Ask(h) => h.on_redirect(&candidate, &p.response),
            };
            if decision == RedirectDecision::Pending {
                p.deadline = Some(now + self.opts.redirect_timeout);
                self.events.push_back(CallEvent::RedirectPending(candidate));
                return;
            }
            self.apply(now, decision);
        }
    }

    /// Applies a decision to the candidate the pending redirect is at.
    fn apply(&mut self, _now: Instant, decision: RedirectDecision) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let Some(candidate) = p.candidates.get(p.next).cloned() else {
            return;
        };
        p.deadline = None;
        p.next += 1;
        match decision {
            RedirectDecision::Accept => p.accepted.push(candidate),
            RedirectDecision::AcceptReplace => {
                self.to = format!("<{}>", candidate.uri);
                p.accepted.push(candidate);
            }
            RedirectDecision::Reject => p.rejected += 1,
            RedirectDecision::Stop => {
                self.pending = None;
                self.engine.stop("the application stopped at a redirect");
            }
            RedirectDecision::Pending => {}
        }
    }

    /// Re-sends a branch's INVITE with credentials for a 401/407 (RFC 3261 §22.2), once.
    fn answer_challenge(
        &mut self,
        now: Instant,
        b: BranchId,
        resp: &Message,
        txn: &mut TxnLayer,
    ) -> bool {
        let Some(creds) = self.opts.credentials.clone() else {
            return false;
        };
        if self.authed.contains(&b) {
            return false;
        }
        let (challenge, answer_as) = if resp.status() == Some(407) {
            (
                rollover_sip::HeaderName::ProxyAuthenticate,
                "Proxy-Authorization",
            )
        } else {
            (rollover_sip::HeaderName::WwwAuthenticate, "Authorization")
        };
        let target = self.target(b);
        let cnonce = format!("{}{:x}", self.opts.from_tag, self.next_branch + 1);
        let Some(value) = resp
            .auths(challenge)
            .filter_map(Result::ok)
            .find_map(|c| crate::digest::authorization(&c, &creds, "INVITE", &target.uri, &cnonce))
        else {
            return false;
        };
        self.cseq += 1;
        self.next_branch += 1;
        let Some(invite) = build_invite(
            &self.opts,
            &target,
            &self.to,
            self.cseq,
            self.next_branch,
            Some((answer_as, value)),
        ) else {
            return false;
        };
        let Some(dest) = self.dest_for(&target.uri) else {
            return false;
        };
        let Ok(client) = txn.send_request(now, invite, dest) else {
            return false;
        };
        if let Some(old) = self.branches.insert(b, client) {
            self.clients.remove(&old);
        }
        self.clients.insert(client, b);
        self.authed.push(b);
        true
    }

    fn start_branch(&mut self, now: Instant, b: BranchId, target: Target, txn: &mut TxnLayer) {
        self.cseq += 1;
        self.next_branch += 1;
        let invite = build_invite(
            &self.opts,
            &target,
            &self.to,
            self.cseq,
            self.next_branch,
            None,
        );
        let started = invite.ok_or(StartFailure::Unbuildable).and_then(|inv| {
            let dest = self
                .dest_of(target.clone())
                .ok_or(StartFailure::Unresolvable)?;
            txn.send_request(now, inv, dest)
                .map_err(StartFailure::Transaction)
        });
        match started {
            Ok(client) => {
                self.branches.insert(b, client);
                self.clients.insert(client, b);
            }
            Err(failure) => self.engine.start_failed(now, b, failure),
        }
    }
}

/// Where a request to `hop` goes: its address by `resolver`, on the transport it names,
/// at its port or the transport's default.
pub(crate) fn peer_of(hop: &Target, resolver: &dyn Resolver) -> Option<Peer> {
    let sip = hop.sip_uri()?;
    let port = sip.port.unwrap_or(default_port(hop.transport));
    let host = sip.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = resolver.resolve(host, port, hop.transport)?;
    Some(Peer {
        transport: hop.transport,
        addr,
    })
}

/// The dialog a 2xx creates at the UAC: remote target from Contact, route set from
/// Record-Route reversed, To with the remote tag.
fn dialog_of(resp: &Message) -> Option<Dialog> {
    let remote_target = resp.contacts().next()?.ok()?.uri_str.to_owned();
    // An entry that does not decode spoils the whole route set: no dialog on it.
    let mut routes: Vec<String> = resp
        .record_routes()
        .map(|r| r.map(|r| format!("<{}>", r.uri_str)))
        .collect::<Result<_, _>>()
        .ok()?;
    routes.reverse();
    let to = String::from_utf8_lossy(resp.value_bytes(resp.header(rollover_sip::HeaderName::To)?))
        .into_owned();
    Some(Dialog {
        remote_target,
        routes,
        to,
    })
}

fn build_invite(
    opts: &CallOptions,
    target: &Target,
    to: &str,
    cseq: u32,
    n: u64,
    auth: Option<(&str, String)>,
) -> Option<Message> {
    // Unique per call (the From tag is) and per INVITE (n).
    let via = format!(
        "SIP/2.0/{} {};branch=z9hG4bK-{}-{n:x}",
        target.transport, opts.local, opts.from_tag
    );
    let mut b = RequestBuilder::new(Method::Invite, &target.uri)
        .via(&via)
        .from(&format!("{};tag={}", opts.from, opts.from_tag))
        .to(to)
        .call_id(&opts.call_id)
        .cseq(cseq)
        .header("Contact", &opts.contact);
    if let Some(p) = &opts.outbound_proxy {
        b = b.header("Route", &format!("<{};lr>", p.uri));
    }
    for (n, v) in &opts.headers {
        b = b.header(n, v);
    }
    if let Some((name, value)) = auth {
        b = b.header(name, &value);
    }
    if let Some(sdp) = &opts.sdp {
        b = b.body("application/sdp", sdp.clone());
    }
    Message::parse(b.build().ok()?).ok()
}

/// The ACK for a 2xx: (next hop URI: the first route, else the Contact; bytes).
pub(crate) fn ack_for_2xx(
    opts: &CallOptions,
    resp: &Message,
    n: &mut u64,
) -> Option<(String, Bytes)> {
    let target = resp.contacts().next()?.ok()?.uri_str.to_owned();
    *n += 1;
    let to = String::from_utf8_lossy(resp.value_bytes(resp.header(rollover_sip::HeaderName::To)?))
        .into_owned();
    let mut b = RequestBuilder::new(Method::Ack, &target)
        .via(&format!(
            "SIP/2.0/UDP {};branch=z9hG4bK-{}-ack{n:x}",
            opts.local, opts.from_tag
        ))
        .from(&format!("{};tag={}", opts.from, opts.from_tag))
        .to(&to)
        .call_id(&opts.call_id)
        .cseq(resp.cseq().ok()?.seq);
    // The route set is the Record-Route in reverse order at the UAC (§12.1.2).
    // An entry that does not decode spoils the whole route set: no ACK along it.
    let routes: Vec<String> = resp
        .record_routes()
        .map(|r| r.map(|r| format!("<{}>", r.uri_str)))
        .collect::<Result<_, _>>()
        .ok()?;
    for r in routes.iter().rev() {
        b = b.header("Route", r);
    }
    // No offer in our INVITE and one in the 2xx: the answer goes in the ACK (§13.2.2.4).
    let offered = resp
        .header_str(rollover_sip::HeaderName::ContentType)
        .and_then(Result::ok)
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        && !resp.body().is_empty();
    if opts.sdp.is_none() && offered {
        if let Some(answer) = opts.answer.as_ref().and_then(|a| (a.0)(resp.body())) {
            b = b.body("application/sdp", answer);
        }
    }
    let hop = routes
        .last()
        .map(|r| r.trim_start_matches('<').trim_end_matches('>').to_owned())
        .unwrap_or(target);
    Some((hop, b.build().ok()?))
}
