//! [`Routing`]: what a server routes with, the dial plan's rules or a script, behind one
//! type for the proxy core.

use std::sync::Arc;

use rollover_proxy::{
    CallView, Edits, Failed, Failure, RouteDecision, RoutePolicy, Router, Target,
};
use rollover_sip::Message;
use rollover_txn::Peer;

use crate::{Script, ScriptPolicy};

/// The `[[route]]` rules alone, or a script with the rules behind `req:dialplan()`.
#[derive(Debug)]
pub enum Routing<D> {
    /// No `[script]`: the rules decide.
    Rules(D),
    /// A script decides.
    Script(ScriptPolicy<D>),
}

/// A reload that would switch between rules and a script (a restart does that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("[script] was added or removed: restart to switch between the rules and a script")]
pub struct SwitchNeedsRestart;

impl<D: Router> Routing<D> {
    /// Rules, or a script over them.
    pub fn new(rules: D, script: Option<Arc<Script>>) -> Routing<D> {
        match script {
            Some(s) => Routing::Script(ScriptPolicy::new(s, rules)),
            None => Routing::Rules(rules),
        }
    }

    /// A reload: new rules, and the new version of the script. Calls under way keep the
    /// rules' targets and the script version they started with.
    pub fn reload(
        &mut self,
        rules: D,
        script: Option<Arc<Script>>,
    ) -> Result<(), SwitchNeedsRestart> {
        match (self, script) {
            (Routing::Rules(r), None) => {
                *r = rules;
                Ok(())
            }
            (Routing::Script(p), Some(s)) => {
                p.set_dialplan(rules);
                p.set_script(s);
                Ok(())
            }
            _ => Err(SwitchNeedsRestart),
        }
    }

    /// The script new calls run, if any.
    pub fn script(&self) -> Option<&Arc<Script>> {
        match self {
            Routing::Rules(_) => None,
            Routing::Script(p) => Some(p.script()),
        }
    }
}

impl<D: Router> RoutePolicy for Routing<D> {
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision {
        match self {
            Routing::Rules(r) => r.route(request, source),
            Routing::Script(p) => p.on_request(request, source),
        }
    }

    fn on_route(&mut self, call: CallView<'_>) -> RouteDecision {
        match self {
            Routing::Rules(r) => r.route(call.request, call.source),
            Routing::Script(p) => p.on_route(call),
        }
    }

    fn on_release(&mut self, key: u64) {
        if let Routing::Script(p) = self {
            p.on_release(key);
        }
    }

    fn on_branch(&mut self, call: CallView<'_>, target: &Target, edits: &mut Edits) {
        if let Routing::Script(p) = self {
            p.on_branch(call, target, edits);
        }
    }

    fn on_reply(
        &mut self,
        call: CallView<'_>,
        target: &Target,
        reply: &Message,
        edits: &mut Edits,
    ) {
        if let Routing::Script(p) = self {
            p.on_reply(call, target, reply, edits);
        }
    }

    fn on_failure(&mut self, call: CallView<'_>, failed: Failed<'_>) -> Failure {
        match self {
            Routing::Rules(_) => Failure::Reply,
            Routing::Script(p) => p.on_failure(call, failed),
        }
    }
}
