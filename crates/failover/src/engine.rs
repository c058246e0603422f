//! The failover engine: one call's target set and every decision on it, with no
//! transactions and no messages to build. The proxy core and the user agent both drive it;
//! they differ only in how a branch's request is made and where answers go.
//!
//! ```text
//!  owner                               Engine
//!  ─────                               ──────
//!  start(now) ───────────────────────▶ next group ─▶ Step::Start{branch, target} per target
//!  on_provisional / on_final ────────▶ timers, pattern, redirects, best response
//!  on_failure (timeout, transport) ──▶   ─▶ Step::Cancel / Abandon / Redirect / Decision
//!  handle_timeout(now) ──────────────▶   ─▶ Step::Done(Answered | Failed | Cancelled)
//!  poll_step() ◀──────────────────────── one step at a time; poll_timeout() for the next deadline
//! ```
//!
//! Branch ids are handed out in order: the n-th `Start` is branch n
//! ([`BranchId::index`]), so an owner may keep its branches in a `Vec`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_sip::{Message, StatusClass, StatusCode};

use crate::best::{BestResponse, Outcome};
use crate::decision::{Decision, StartFailure, Why};
use crate::policy::FailoverPolicy;
use crate::target::{Target, TargetPlan};

/// A branch of a call: the n-th target started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchId(usize);

impl BranchId {
    /// Its place in the order branches were started, from 0.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "branch {}", self.0)
    }
}

/// The `Reason` a CANCEL carries after another branch answered (RFC 3326).
pub const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// How long a cancelled call waits for its branches' final responses before the owner
/// answers 487 itself (a target that never answers a CANCEL).
pub const CANCEL_WAIT: Duration = Duration::from_secs(4);

/// Who decides on the Contacts of a 3xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMode {
    /// Every new Contact is tried (a proxy; a UA without a handler).
    Follow,
    /// The owner is asked with [`Step::Redirect`] and answers with [`Engine::redirect`].
    Ask,
}

/// What the owner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start a branch: build the request for `target` and send it.
    Start {
        /// The new branch.
        branch: BranchId,
        /// Where to.
        target: Target,
    },
    /// CANCEL a branch (the transaction waits for a provisional if none came yet, §9.1).
    Cancel {
        /// The branch.
        branch: BranchId,
        /// The Reason header value, if any.
        reason: Option<String>,
    },
    /// Stop retransmitting a branch that never answered: no CANCEL before a provisional.
    Abandon {
        /// The branch.
        branch: BranchId,
    },
    /// A 3xx offered these new targets (q-ordered, duplicates and tried ones removed,
    /// within `max_targets`); answer with [`Engine::redirect`]. Only in [`RedirectMode::Ask`].
    Redirect {
        /// The branch that was redirected.
        branch: BranchId,
        /// The response (for its status and headers).
        response: Message,
        /// The candidates.
        candidates: Vec<Target>,
    },
    /// A decision, for logs and timelines.
    Decision {
        /// The branch it is about, if it is about one (its target is [`Engine::target`]).
        branch: Option<BranchId>,
        /// What was decided.
        decision: Decision,
    },
    /// The call is over.
    Done(End),
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// This branch answered (2xx).
    Answered(BranchId),
    /// Every target failed; [`Engine::best`] says how.
    Failed,
    /// The call was cancelled by its owner.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Sent, nothing heard.
    Trying,
    /// 100 Trying heard: no longer silent, not yet ringing.
    Heard,
    /// A provisional above 100 arrived.
    Ringing,
    /// Left behind without a response; a late answer is still taken.
    Abandoned,
    /// CANCELled by us.
    Cancelled,
    /// A final response (or a failure ranked as one) arrived.
    Completed,
}

#[derive(Debug)]
struct Branch {
    target: Target,
    /// The target as decisions name it, written once (a call's decisions name it several
    /// times: trying, timers, ringing, answered or left).
    name: Arc<str>,
    group: usize,
    state: State,
    no_response_at: Option<Instant>,
    ring_at: Option<Instant>,
    timer_c_at: Option<Instant>,
}

impl Branch {
    fn is_active(&self) -> bool {
        matches!(self.state, State::Trying | State::Heard | State::Ringing)
    }

    fn clear_timers(&mut self) {
        self.no_response_at = None;
        self.ring_at = None;
        self.timer_c_at = None;
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.no_response_at, self.ring_at, self.timer_c_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// One call's failover state. See the module docs.
#[derive(Debug)]
pub struct Engine {
    policy: FailoverPolicy,
    mode: RedirectMode,
    /// INVITE semantics: ring timer and Timer C apply.
    invite: bool,
    timer_c: Duration,
    groups: VecDeque<Vec<Target>>,
    /// Identities of the 3xx Contacts queued (they and the targets tried, which the
    /// branches hold, are not queued again). Only a redirect reads it, so a target tried
    /// costs no identity.
    seen: Vec<String>,
    targets_used: usize,
    group: usize,
    branches: Vec<Branch>,
    best: BestResponse,
    answered: bool,
    done: bool,
    cancelled: bool,
    /// Redirect questions not yet answered: the call waits for them before rolling over.
    pending_redirects: usize,
    /// After a cancel: the branches whose final response (487, or a 2xx that crossed the
    /// CANCEL) is still awaited, and how long it is awaited at most.
    awaiting: Vec<BranchId>,
    cancel_by: Option<Instant>,
    steps: VecDeque<Step>,
}

impl Engine {
    /// A call over `plan`. `invite` turns on the ring timer and Timer C.
    pub fn new(
        plan: TargetPlan,
        policy: FailoverPolicy,
        invite: bool,
        timer_c: Duration,
        mode: RedirectMode,
    ) -> Engine {
        Engine {
            policy,
            mode,
            invite,
            timer_c,
            groups: plan.groups.into_iter().collect(),
            seen: Vec::new(),
            targets_used: 0,
            group: 0,
            branches: Vec::new(),
            best: BestResponse::default(),
            answered: false,
            done: false,
            cancelled: false,
            pending_redirects: 0,
            awaiting: Vec::new(),
            cancel_by: None,
            steps: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &FailoverPolicy {
        &self.policy
    }

    /// The target of a branch.
    pub fn target(&self, b: BranchId) -> Option<&Target> {
        self.branches.get(b.0).map(|br| &br.target)
    }

    /// Whether a branch is still waiting to be sent or answered (not left behind or done).
    pub fn is_pending(&self, b: BranchId) -> bool {
        self.branches.get(b.0).is_some_and(Branch::is_active)
    }

    /// Whether a branch answered.
    pub fn is_answered(&self) -> bool {
        self.answered
    }

    /// Whether the call is over (answered, failed or cancelled).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next step for the owner.
    pub fn poll_step(&mut self) -> Option<Step> {
        self.steps.pop_front()
    }

    /// The next deadline of any branch timer, or of the wait after a cancel.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.branches
            .iter()
            .filter_map(Branch::next_deadline)
            .chain(self.cancel_by.filter(|_| !self.done))
            .min()
    }

    /// The best final outcome so far (RFC 3261 §16.7 step 6).
    pub fn best(&self) -> &BestResponse {
        &self.best
    }

    /// Drops what only choosing the final response needed (the responses ranked so far,
    /// the targets not tried, the identities seen), once the owner has sent that final:
    /// a call that only lingers to relay a retransmitted 2xx keeps its branches' targets
    /// and nothing else.
    pub fn forget_responses(&mut self) {
        self.best = BestResponse::default();
        self.groups = VecDeque::new();
        self.seen = Vec::new();
        self.steps.shrink_to_fit();
        self.branches.shrink_to_fit();
    }

    /// The status the caller gets when every target failed.
    pub fn best_status(&self) -> StatusCode {
        self.best.status()
    }

    fn decide(&mut self, branch: Option<BranchId>, decision: Decision) {
        self.steps.push_back(Step::Decision { branch, decision });
    }

    fn name(&self, b: BranchId) -> Arc<str> {
        self.branches
            .get(b.0)
            .map_or_else(|| Arc::from(""), |br| br.name.clone())
    }

    /// Starts the first group.
    pub fn start(&mut self, now: Instant) {
        self.next_group(now);
    }

    /// Starts the next group that yields a branch, or ends the call.
    fn next_group(&mut self, now: Instant) {
        if self.answered || self.done || self.cancelled || self.pending_redirects > 0 {
            return;
        }
        let Some(group) = self.groups.pop_front() else {
            return self.finish_if_idle();
        };
        self.group += 1;
        for target in group {
            if self.targets_used >= self.policy.max_targets {
                self.groups.clear();
                self.decide(
                    None,
                    Decision::TargetLimit {
                        max_targets: self.policy.max_targets,
                    },
                );
                break;
            }
            self.targets_used += 1;
            let branch = BranchId(self.branches.len());
            let name: Arc<str> = target.to_string().into();
            self.branches.push(Branch {
                target: target.clone(),
                name: name.clone(),
                group: self.group,
                state: State::Trying,
                no_response_at: Some(now + self.policy.no_response_timeout),
                ring_at: None,
                timer_c_at: self.invite.then(|| now + self.timer_c),
            });
            self.decide(
                Some(branch),
                Decision::Trying {
                    target: name.clone(),
                },
            );
            self.decide(
                Some(branch),
                Decision::TimerArmed {
                    target: name,
                    timer: "no-response",
                    after: self.policy.no_response_timeout,
                },
            );
            self.steps.push_back(Step::Start { branch, target });
        }
        if !self.branches.iter().any(|b| b.group == self.group) {
            self.next_group(now);
        }
    }

    /// The owner could not start a branch (unresolvable host, an address never called, no
    /// transaction): it counts as a 503 and the call rolls over; the decision says why.
    pub fn start_failed(&mut self, now: Instant, b: BranchId, failure: StartFailure) {
        let Some(branch) = self.branches.get_mut(b.0) else {
            return;
        };
        branch.state = State::Completed;
        branch.clear_timers();
        self.best
            .offer(Outcome::Synthetic(StatusCode::SERVICE_UNAVAILABLE));
        let target = self.name(b);
        let why = Why::from(failure);
        self.decide(Some(b), Decision::RolledOver { target, why });
        self.advance(now);
    }

    /// A provisional arrived on a branch. Returns whether to relay it upstream.
    pub fn on_provisional(&mut self, now: Instant, b: BranchId, code: StatusCode) -> bool {
        let (policy_ring, timer_c, invite) = (self.policy.ring_timeout, self.timer_c, self.invite);
        let Some(branch) = self.branches.get_mut(b.0) else {
            return false;
        };
        branch.no_response_at = None;
        if matches!(
            branch.state,
            State::Trying | State::Heard | State::Abandoned
        ) {
            branch.state = if code == StatusCode::TRYING {
                State::Heard
            } else {
                State::Ringing
            };
        }
        let mut armed = false;
        if invite {
            // Any provisional, 100 included, ends the no-response timer and starts the ring
            // timer (Kamailio's fr_inv_timer, Brekeke's failover.timer.provisional): a
            // carrier that stalls after 100 Trying is left at ring_timeout, not Timer C.
            if branch.ring_at.is_none() && matches!(branch.state, State::Heard | State::Ringing) {
                branch.ring_at = Some(now + policy_ring);
                armed = true;
            }
            if code != StatusCode::TRYING {
                // Timer C restarts with every provisional above 100 (§16.7 step 2).
                branch.timer_c_at = Some(now + timer_c);
            }
        }
        let relay =
            code != StatusCode::TRYING && branch.state != State::Cancelled && !self.answered;
        let target = self.name(b);
        if armed {
            self.decide(
                Some(b),
                Decision::TimerArmed {
                    target: target.clone(),
                    timer: "ring",
                    after: policy_ring,
                },
            );
        }
        if relay {
            self.decide(
                Some(b),
                Decision::Ringing {
                    target,
                    status: code,
                },
            );
        }
        relay && !self.done
    }

    /// A final response arrived on a branch (the owner relays a 2xx upstream itself: every
    /// 2xx goes up, RFC 3261 §16.7 step 5).
    pub fn on_final(&mut self, now: Instant, b: BranchId, resp: &Message) {
        let code = resp
            .status_code()
            .unwrap_or(StatusCode::SERVER_INTERNAL_ERROR);
        let Some(branch) = self.branches.get_mut(b.0) else {
            return;
        };
        branch.clear_timers();
        let previous = std::mem::replace(&mut branch.state, State::Completed);
        if code.is_success() {
            return self.on_answer(b, code);
        }
        match previous {
            // Left behind and accounted for: only the final outcome matters now.
            State::Cancelled => return self.finish_if_idle(),
            State::Abandoned => {
                self.best.offer(Outcome::Response(resp.clone()));
                return self.finish_if_idle();
            }
            State::Completed => return,
            _ => {}
        }
        if self.answered || self.done {
            return;
        }
        if self.cancelled {
            self.best.offer(Outcome::Response(resp.clone()));
            return self.finish_if_idle();
        }
        let target = self.name(b);
        if code.class() == StatusClass::Redirection && self.policy.follow_redirects {
            let (candidates, dropped, refused) = self.redirect_candidates(b, resp);
            for contact in refused {
                self.decide(
                    Some(b),
                    Decision::OutsideReach {
                        target: target.clone(),
                        contact,
                    },
                );
            }
            if self.mode == RedirectMode::Ask && !candidates.is_empty() {
                self.pending_redirects += 1;
                self.steps.push_back(Step::Redirect {
                    branch: b,
                    response: resp.clone(),
                    candidates,
                });
                // The 3xx stands as this branch's outcome if nothing it offered is taken.
                self.best.offer(Outcome::Response(resp.clone()));
                return;
            }
            if !candidates.is_empty() {
                return self.add_redirect_targets(now, b, candidates, dropped);
            }
            if dropped > 0 {
                // Every Contact was a duplicate, already tried, or over max_targets.
                self.decide(
                    Some(b),
                    Decision::Redirected {
                        target: target.clone(),
                        added: vec![],
                        dropped,
                    },
                );
            }
        }
        self.best.offer(Outcome::Response(resp.clone()));
        let pattern = &self.policy.on_response;
        if code == StatusCode::SERVICE_UNAVAILABLE || pattern.rolls_over(code) {
            let why = Why::Status {
                status: code,
                pattern: pattern.source(),
            };
            self.decide(Some(b), Decision::RolledOver { target, why });
        } else {
            self.groups.clear();
            self.decide(
                Some(b),
                Decision::Stopped {
                    target,
                    status: code,
                },
            );
            if code.class() == StatusClass::GlobalFailure {
                // A global failure: nothing else is worth ringing (§16.7 step 5).
                self.cancel_active(None, "6xx received");
            }
        }
        self.advance(now);
    }

    fn add_redirect_targets(
        &mut self,
        now: Instant,
        b: BranchId,
        added: Vec<Target>,
        dropped: usize,
    ) {
        let target = self.name(b);
        let names = added.iter().map(Target::to_string).collect();
        for t in &added {
            self.seen.push(t.identity());
        }
        // Each Contact alone, highest q first, before the remaining groups.
        for t in added.into_iter().rev() {
            self.groups.push_front(vec![t]);
        }
        self.decide(
            Some(b),
            Decision::Redirected {
                target,
                added: names,
                dropped,
            },
        );
        self.advance(now);
    }

    /// The owner's answer to a [`Step::Redirect`]: the candidates it accepts, in order.
    /// Accepting none rolls over (or ends the call) as the 3xx itself would.
    pub fn redirect(
        &mut self,
        now: Instant,
        b: BranchId,
        status: StatusCode,
        accepted: Vec<Target>,
        rejected: usize,
    ) {
        self.pending_redirects = self.pending_redirects.saturating_sub(1);
        if self.answered || self.done || self.cancelled {
            return self.finish_if_idle();
        }
        let target = self.name(b);
        if accepted.is_empty() {
            self.decide(
                Some(b),
                Decision::Redirected {
                    target: target.clone(),
                    added: vec![],
                    dropped: rejected,
                },
            );
            let pattern = &self.policy.on_response;
            if pattern.rolls_over(status) {
                let why = Why::Status {
                    status,
                    pattern: pattern.source(),
                };
                self.decide(Some(b), Decision::RolledOver { target, why });
            } else {
                self.groups.clear();
                self.decide(Some(b), Decision::Stopped { target, status });
            }
            return self.advance(now);
        }
        self.add_redirect_targets(now, b, accepted, rejected);
    }

    /// Every target failed and the owner's policy gives new ones (a failure route): they are
    /// tried in this same call, under `policy` when given. The best response so far is
    /// kept, so if these fail too the caller gets the best of all.
    pub fn retry(&mut self, now: Instant, plan: TargetPlan, policy: Option<FailoverPolicy>) {
        if self.answered || self.cancelled {
            return;
        }
        if let Some(p) = policy {
            self.policy = p;
        }
        self.done = false;
        self.groups = plan.groups.into_iter().collect();
        self.next_group(now);
    }

    /// The owner stops the call (CANCEL from upstream, the application hangs up).
    ///
    /// RFC 3261 §16.10: the branches are CANCELled and the call ends when their final
    /// responses are in (a 487, or a 2xx that crossed the CANCEL, which answers the call),
    /// so a caller never gets a 487 and then a 2xx. Branches that never sent a provisional
    /// cannot be CANCELled (§9.1); the call waits for them at most [`CANCEL_WAIT`].
    pub fn cancel(&mut self, now: Instant, reason: Option<String>, why: &str) {
        if self.done || self.answered {
            return;
        }
        self.cancelled = true;
        self.groups.clear();
        self.pending_redirects = 0;
        self.awaiting = self
            .branches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_active())
            .map(|(i, _)| BranchId(i))
            .collect();
        self.cancel_by = Some(now + CANCEL_WAIT);
        self.cancel_active(reason, why);
        self.finish_if_idle();
    }

    /// The owner ends the call now with what it has (a redirect answered `Stop`): pending
    /// branches are cancelled and the best response so far is the outcome.
    pub fn stop(&mut self, why: &str) {
        if self.done || self.answered {
            return;
        }
        self.groups.clear();
        self.pending_redirects = 0;
        self.cancel_active(None, why);
        self.finish_if_idle();
    }

    /// A branch failed without a final response: transaction timeout (ranked 408) or
    /// transport error (ranked 503).
    pub fn on_failure(&mut self, now: Instant, b: BranchId, why: Why, synthetic: StatusCode) {
        let Some(branch) = self.branches.get_mut(b.0) else {
            return;
        };
        let was_active = branch.is_active();
        branch.clear_timers();
        branch.state = State::Completed;
        if !was_active {
            return self.finish_if_idle();
        }
        self.best.offer(Outcome::Synthetic(synthetic));
        if !self.answered && !self.done && !self.cancelled {
            let target = self.name(b);
            self.decide(Some(b), Decision::RolledOver { target, why });
        }
        self.advance(now);
        self.finish_if_idle();
    }

    fn on_answer(&mut self, b: BranchId, code: StatusCode) {
        let first = !self.answered;
        self.answered = true;
        self.groups.clear();
        if first {
            let target = self.name(b);
            self.decide(
                Some(b),
                Decision::Answered {
                    target,
                    status: code,
                },
            );
            self.cancel_active(
                Some(COMPLETED_ELSEWHERE.to_owned()),
                "call completed elsewhere",
            );
            self.done = true;
            self.steps.push_back(Step::Done(End::Answered(b)));
        }
    }

    /// CANCELs every active branch, or abandons it when it has not rung yet (§9.1).
    fn cancel_active(&mut self, reason: Option<String>, why: &str) {
        let mut steps = Vec::new();
        for (i, br) in self
            .branches
            .iter_mut()
            .enumerate()
            .filter(|(_, b)| b.is_active())
        {
            steps.push((BranchId(i), br.name.clone()));
            // A 100 Trying is a provisional too: the CANCEL may go (§9.1).
            br.state = if matches!(br.state, State::Ringing | State::Heard) {
                State::Cancelled
            } else {
                State::Abandoned
            };
            br.clear_timers();
        }
        for (branch, target) in steps {
            // The transaction sends the CANCEL now, or when a provisional arrives.
            self.steps.push_back(Step::Cancel {
                branch,
                reason: reason.clone(),
            });
            self.decide(
                Some(branch),
                Decision::Cancelled {
                    target,
                    reason: why.to_owned(),
                },
            );
        }
    }

    /// The Contacts of a 3xx as new targets: by q (highest first), without duplicates or
    /// targets already tried, within `max_targets` and the policy's reach (the redirecting
    /// target's own host is always allowed). Returns them, how many were dropped, and the
    /// Contacts refused for being outside the reach.
    fn redirect_candidates(
        &self,
        b: BranchId,
        resp: &Message,
    ) -> (Vec<Target>, usize, Vec<String>) {
        let mut contacts: Vec<(u16, Target)> = Vec::new();
        let mut dropped = 0;
        let mut refused = Vec::new();
        let own_host = self
            .branches
            .get(b.0)
            .and_then(|br| br.target.sip_uri().map(|u| crate::reach::host_of(&u)));
        for c in resp.contacts() {
            match c
                .ok()
                .and_then(|c| Some((c.q().unwrap_or(1000), Target::parse(c.uri_str).ok()?)))
            {
                Some((q, t)) => {
                    let host = t.sip_uri().map(|u| crate::reach::host_of(&u));
                    let inside = match &self.policy.reach {
                        None => true,
                        Some(r) => host.is_some() && host == own_host || r.allows_uri(&t.uri),
                    };
                    if inside {
                        contacts.push((q, t));
                    } else {
                        refused.push(t.to_string());
                    }
                }
                None => dropped += 1,
            }
        }
        contacts.sort_by_key(|(q, _)| std::cmp::Reverse(*q)); // stable: equal q keep their order
        let queued: usize = self.groups.iter().map(Vec::len).sum();
        let room = self
            .policy
            .max_targets
            .saturating_sub(self.targets_used + queued);
        let mut added: Vec<Target> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let tried: Vec<String> = self.branches.iter().map(|b| b.target.identity()).collect();
        for (_, t) in contacts {
            let id = t.identity();
            if tried.contains(&id)
                || self.seen.contains(&id)
                || ids.contains(&id)
                || added.len() >= room
            {
                dropped += 1;
                continue;
            }
            ids.push(id);
            added.push(t);
        }
        (added, dropped, refused)
    }

    /// After a branch ended: start the next group when the current one has nothing pending.
    fn advance(&mut self, now: Instant) {
        let group = self.group;
        let pending = self
            .branches
            .iter()
            .any(|b| b.group == group && b.is_active());
        if !pending {
            self.next_group(now);
        }
    }

    /// Ends the call once nothing can still answer.
    fn finish_if_idle(&mut self) {
        let branches = &self.branches;
        self.awaiting.retain(|&b| {
            branches
                .get(b.0)
                .is_some_and(|br| br.state != State::Completed)
        });
        let waiting = self.branches.iter().any(Branch::is_active)
            || self.pending_redirects > 0
            || (!self.groups.is_empty() && !self.cancelled)
            || (self.cancelled && !self.awaiting.is_empty());
        if self.done || waiting {
            return;
        }
        self.done = true;
        let end = if self.cancelled {
            End::Cancelled
        } else {
            End::Failed
        };
        self.steps.push_back(Step::Done(end));
    }

    /// Fires the branch timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cancel_by.is_some_and(|t| t <= now) && !self.done {
            // The CANCELled branches had their chance: the owner answers 487 itself.
            self.cancel_by = None;
            self.awaiting.clear();
            self.finish_if_idle();
        }
        for i in 0..self.branches.len() {
            let b = BranchId(i);
            let Some(branch) = self.branches.get_mut(i) else {
                continue;
            };
            if !branch.is_active() {
                continue;
            }
            let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
            let provisional = matches!(branch.state, State::Ringing | State::Heard);
            let (why, cancel) = if due(branch.no_response_at) {
                (Why::NoResponse(self.policy.no_response_timeout), false)
            } else if due(branch.ring_at) {
                (Why::RingTimeout(self.policy.ring_timeout), true)
            } else if due(branch.timer_c_at) {
                // §16.8: CANCEL a branch that sent any provisional (a 100 too).
                (Why::TimerC, provisional)
            } else {
                continue;
            };
            branch.state = if cancel {
                State::Cancelled
            } else {
                State::Abandoned
            };
            branch.clear_timers();
            self.steps.push_back(if cancel {
                Step::Cancel {
                    branch: b,
                    reason: None,
                }
            } else {
                // §9.1: no CANCEL before a provisional; stop retransmitting instead.
                Step::Abandon { branch: b }
            });
            self.best
                .offer(Outcome::Synthetic(StatusCode::REQUEST_TIMEOUT));
            let target = self.name(b);
            self.decide(Some(b), Decision::RolledOver { target, why });
            self.advance(now);
            self.finish_if_idle();
        }
    }
}
