//! The failure route: when every target failed, the policy may start new branches in the
//! same transaction, let the best reply go, or answer later ([`Question::Failure`]).

use std::time::Instant;

use rollover_txn::TxnLayer;
use tracing::debug;

use super::{CallKey, Proxy, Question};
use crate::policy_hooks::{Failure, RoutePolicy};
use rollover_failover::Decision;

impl<R: RoutePolicy> Proxy<R> {
    /// Carries out the policy's answer to the failure question. True when the call goes on
    /// (new branches started, or the answer comes later); false to send the best reply.
    pub(super) fn after_failure(&mut self, now: Instant, cid: CallKey, answer: Failure) -> bool {
        let Some(call) = self.calls.get_mut(&cid) else {
            return true;
        };
        match answer {
            Failure::Retry(plan, policy) if !plan.groups.is_empty() => {
                let targets = plan.groups.iter().map(Vec::len).sum();
                let call_id = call.call_id.clone();
                call.engine.retry(now, plan, policy);
                self.decide(now, &call_id, Decision::FailureRoute { targets });
                true
            }
            Failure::Later => {
                let id = self.next_query;
                self.next_query += 1;
                call.awaiting_failure = true;
                self.questions.push_back(Question::Failure {
                    id,
                    call_id: call.call_id.clone(),
                    best: call.engine.best_status(),
                });
                self.failing.insert(id, cid);
                true
            }
            Failure::Retry(..) | Failure::Reply => false,
        }
    }

    /// The owner's answer to [`Question::Failure`], given when it came (a store look-up,
    /// a script that waited). The call had waited; every other call went on.
    pub fn answer_failure(&mut self, now: Instant, id: u64, answer: Failure, txn: &mut TxnLayer) {
        let Some(cid) = self.failing.remove(&id) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        call.awaiting_failure = false;
        let answer = match answer {
            // Asking again would wait forever: a later answer is a final one.
            Failure::Later => Failure::Reply,
            a => a,
        };
        if !self.after_failure(now, cid, answer) {
            let Some(call) = self.calls.get_mut(&cid) else {
                return;
            };
            if !call.final_sent {
                let (status, bytes) = call.engine.best().build(&call.request, &call.to_tag);
                call.final_sent = true;
                call.engine.forget_responses();
                super::settle_request(&mut call.request);
                if let Err(e) = txn.send_response(now, call.server, bytes) {
                    self.stats.unsent("response");
                    debug!(call_id = call.call_id, "final {status} not sent: {e}");
                }
                let call_id = call.call_id.clone();
                self.decide(now, &call_id, Decision::Final { status });
            }
        }
        self.drive(now, cid, txn);
    }
}
