//! [`ScriptPolicy`]: the proxy core's routing policy, answered by a script. Each call keeps
//! its own state (the script version it started with, `req.vars`, the armed routes, the
//! request-level header edits) under the key the core gives it.

use std::collections::HashMap;
use std::sync::Arc;

use mlua::{Function, Lua, Scope};
use rollover_proxy::{
    CallView, Edits, Failed, Failure, RouteDecision, RoutePolicy, Router, Target, TargetPlan,
};
use rollover_sip::{Message, StatusCode};
use rollover_txn::Peer;
use tracing::warn;

use crate::api::{self, Acts, Decide, Kind, RelayOpts};
use crate::vars::Vars;
use crate::{runtime_message, Script, INSTRUCTION_LIMIT};

/// What one call remembers between its routes.
#[derive(Debug)]
struct CallState {
    /// The version the call started with (a reload does not change it).
    script: Arc<Script>,
    vars: Vars,
    on_failure: Option<String>,
    on_reply: Option<String>,
    on_branch: Option<String>,
    /// Headers added and removed by the request and failure routes: on every branch sent
    /// after them, never on a reply.
    request_edits: Edits,
    /// The Request-URI as the script set it.
    ruri: String,
    /// Negative finals received, with their target, for `failed.target`.
    failures: Vec<(u16, String)>,
    /// The targets of the branches sent, in order (a timeout's `failed.target`).
    branched: Vec<String>,
}

impl CallState {
    fn new(script: Arc<Script>, ruri: String) -> CallState {
        CallState {
            script,
            vars: Vars::default(),
            on_failure: None,
            on_reply: None,
            on_branch: None,
            request_edits: Edits::default(),
            ruri,
            failures: Vec::new(),
            branched: Vec::new(),
        }
    }

    /// Takes in what a request or failure route asked for (not its decision).
    fn absorb(&mut self, acts: &mut Acts) {
        if let Some(u) = acts.ruri.take() {
            self.ruri = u;
        }
        self.arm(acts);
        let e = std::mem::take(&mut acts.edits);
        self.request_edits.add.extend(e.add);
        self.request_edits.remove.extend(e.remove);
    }

    fn arm(&mut self, acts: &mut Acts) {
        if let Some(n) = acts.on_failure.take() {
            self.on_failure = Some(n);
        }
        if let Some(n) = acts.on_reply.take() {
            self.on_reply = Some(n);
        }
        if let Some(n) = acts.on_branch.take() {
            self.on_branch = Some(n);
        }
    }
}

/// The routing policy of a proxy run by a script: `request_route` decides each new
/// request (handing it to the dial plan `D` on `req:dialplan()`, when it decides nothing,
/// or when it fails), and the routes it arms are run for the call's branches, replies and
/// failure.
#[derive(Debug)]
pub struct ScriptPolicy<D> {
    script: Arc<Script>,
    dialplan: D,
    calls: HashMap<u64, CallState>,
}

impl<D: Router> ScriptPolicy<D> {
    /// A policy running `script`, with `dialplan` for `req:dialplan()`.
    pub fn new(script: Arc<Script>, dialplan: D) -> ScriptPolicy<D> {
        ScriptPolicy {
            script,
            dialplan,
            calls: HashMap::new(),
        }
    }

    /// A reloaded script: calls that start from now on run it; calls under way keep theirs.
    pub fn set_script(&mut self, script: Arc<Script>) {
        self.script = script;
    }

    /// A reloaded dial plan, for `req:dialplan()` from now on.
    pub fn set_dialplan(&mut self, dialplan: D) {
        self.dialplan = dialplan;
    }

    /// The script new calls run.
    pub fn script(&self) -> &Arc<Script> {
        &self.script
    }

    /// Calls whose state is held (for tests: it must go back to 0).
    pub fn calls_held(&self) -> usize {
        self.calls.len()
    }

    /// Runs `request_route` and turns its decision into the core's.
    fn route(
        &mut self,
        key: Option<u64>,
        call_id: &str,
        request: &Message,
        source: &Peer,
    ) -> RouteDecision {
        let script = self.script.clone();
        let ruri = request.request_uri_str().unwrap_or_default().to_owned();
        let mut st = CallState::new(script.clone(), ruri.clone());
        let src = source_text(source);
        api::begin(&script.lua, request, Kind::Request);
        let vars = run(&script, "request_route", call_id, |lua, f, _| {
            let vars = st.vars.to_table(lua)?;
            let req = api::req_table(lua, &ruri, &src, &vars)?;
            f.call::<()>(req)?;
            Ok(Vars::from_table(&vars))
        });
        let mut acts = api::end(&script.lua);
        let decision = match vars {
            Some(v) => {
                st.vars = v;
                st.absorb(&mut acts);
                acts.decision.take()
            }
            // As if no script had spoken: the dial plan.
            None => None,
        };
        let rule: Arc<str> = Arc::from(format!("{}:request_route", script.name()));
        let out = match decision {
            None | Some(Decide::Dialplan) => {
                if st.ruri == ruri {
                    self.dialplan.route(request, source)
                } else {
                    let mut e = request.edit();
                    e.set_request_uri(&st.ruri);
                    match Message::parse(e.finish()) {
                        Ok(m) => self.dialplan.route(&m, source),
                        Err(_) => bad_ruri(&st.ruri, rule),
                    }
                }
            }
            Some(Decide::Reply(code, reason)) => match StatusCode::new(code) {
                Ok(status) => RouteDecision::Reject {
                    status,
                    reason: if reason.is_empty() {
                        status.reason().to_owned()
                    } else {
                        reason
                    },
                    rule,
                },
                Err(_) => bad_ruri(&st.ruri, rule),
            },
            Some(Decide::Drop) => RouteDecision::Drop { rule },
            Some(Decide::Relay(targets, opts)) => match plan(targets, &st.ruri, &opts) {
                Ok(plan) => {
                    let n = plan.groups.iter().map(Vec::len).sum();
                    RouteDecision::Targets {
                        plan,
                        policy: opts.policy(n),
                        rule,
                    }
                }
                Err(uri) => bad_ruri(&uri, rule),
            },
        };
        if let Some(k) = key {
            self.calls.insert(k, st);
        }
        out
    }
}

/// `"udp:1.2.3.4:5060"`.
fn source_text(p: &Peer) -> String {
    format!("{}:{}", p.transport.as_str().to_ascii_lowercase(), p.addr)
}

/// A Request-URI or relay target that is not a SIP URI.
fn bad_ruri(uri: &str, rule: Arc<str>) -> RouteDecision {
    warn!("{rule}: {uri:?} is not a target");
    RouteDecision::Reject {
        status: StatusCode::UNSUPPORTED_URI_SCHEME,
        reason: StatusCode::UNSUPPORTED_URI_SCHEME.reason().to_owned(),
        rule,
    }
}

/// The targets of a relay; the URI that is not one as the error.
fn plan(targets: Option<Vec<String>>, ruri: &str, o: &RelayOpts) -> Result<TargetPlan, String> {
    let uris = targets.unwrap_or_else(|| vec![ruri.to_owned()]);
    let mut ts = Vec::with_capacity(uris.len());
    for u in uris {
        if u.trim() == Target::LOCATION {
            // The registered contacts: the binary's location service expands it.
            ts.push(Target::location());
            continue;
        }
        ts.push(Target::parse(&u).map_err(|_| u.clone())?);
    }
    if ts.is_empty() {
        return Err(String::new());
    }
    Ok(if o.parallel {
        TargetPlan::parallel(ts)
    } else {
        TargetPlan::serial(ts)
    })
}

/// Runs the global function `route` with the objects `body` builds, under a full
/// instruction budget. `None` when it is missing, fails or loops: logged with the Call-ID.
fn run<'env, R>(
    script: &Script,
    route: &str,
    call_id: &str,
    body: impl for<'s> FnOnce(&Lua, Function, &'s Scope<'s, 'env>) -> mlua::Result<R>,
) -> Option<R> {
    let f = match script.lua.globals().get::<Option<Function>>(route) {
        Ok(Some(f)) => f,
        _ => {
            warn!(
                call_id,
                route,
                "{}: no function {route}: the route is not run",
                script.name()
            );
            return None;
        }
    };
    script.refill();
    match script.lua.scope(|scope| body(&script.lua, f, scope)) {
        Ok(r) => Some(r),
        Err(_) if script.exhausted() => {
            warn!(
                call_id,
                route,
                "{}: {route} stopped after {INSTRUCTION_LIMIT} instructions; the call goes on without it",
                script.name()
            );
            None
        }
        Err(e) => {
            warn!(
                call_id,
                route,
                "{}: {route} failed: {}; the call goes on without it",
                script.name(),
                runtime_message(&e)
            );
            None
        }
    }
}

impl<D: Router> RoutePolicy for ScriptPolicy<D> {
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision {
        let call_id = request.call_id().unwrap_or("-").to_owned();
        self.route(None, &call_id, request, source)
    }

    fn on_route(&mut self, call: CallView<'_>) -> RouteDecision {
        self.route(Some(call.key), call.call_id, call.request, call.source)
    }

    fn on_release(&mut self, key: u64) {
        self.calls.remove(&key);
    }

    fn on_branch(&mut self, call: CallView<'_>, target: &Target, edits: &mut Edits) {
        let Some(st) = self.calls.get_mut(&call.key) else {
            return;
        };
        st.branched.push(target.uri.clone());
        edits.add.extend(st.request_edits.add.iter().cloned());
        edits.remove.extend(st.request_edits.remove.iter().cloned());
        let Some(name) = st.on_branch.clone() else {
            return;
        };
        let route = format!("branch_route_{name}");
        let script = st.script.clone();
        api::begin(&script.lua, call.request, Kind::Failure);
        let vars = run(&script, &route, call.call_id, |lua, f, scope| {
            let vars = st.vars.to_table(lua)?;
            let branch = api::branch_table(lua, scope, call.request, &target.uri)?;
            branch.set("vars", &vars)?;
            f.call::<()>(branch)?;
            Ok(Vars::from_table(&vars))
        });
        let acts = api::end(&script.lua);
        if let Some(v) = vars {
            st.vars = v;
            let e = acts.edits;
            edits.add.extend(e.add);
            edits.remove.extend(e.remove);
            edits.drop |= e.drop;
        }
    }

    fn on_reply(
        &mut self,
        call: CallView<'_>,
        target: &Target,
        reply: &Message,
        edits: &mut Edits,
    ) {
        let Some(st) = self.calls.get_mut(&call.key) else {
            return;
        };
        let status = reply.status().unwrap_or(0);
        if status >= 300 {
            st.failures.push((status, target.uri.clone()));
        }
        if status == 100 {
            return; // never relayed
        }
        let Some(name) = st.on_reply.clone() else {
            return;
        };
        let route = format!("reply_route_{name}");
        let script = st.script.clone();
        let src = source_text(call.source);
        let ruri = st.ruri.clone();
        api::begin(&script.lua, call.request, Kind::Reply);
        let vars = run(&script, &route, call.call_id, |lua, f, scope| {
            let vars = st.vars.to_table(lua)?;
            let rep = api::reply_table(lua, scope, reply)?;
            let req = api::req_table(lua, &ruri, &src, &vars)?;
            f.call::<()>((rep, req))?;
            Ok(Vars::from_table(&vars))
        });
        let mut acts = api::end(&script.lua);
        if let Some(v) = vars {
            st.vars = v;
            st.arm(&mut acts);
            edits.add.extend(acts.edits.add);
            edits.remove.extend(acts.edits.remove);
            edits.drop |= acts.edits.drop;
        }
    }

    fn on_failure(&mut self, call: CallView<'_>, failed: Failed<'_>) -> Failure {
        let Some(st) = self.calls.get_mut(&call.key) else {
            return Failure::Reply;
        };
        // A failure route runs once per arming (OpenSIPS's t_on_failure).
        let Some(name) = st.on_failure.take() else {
            return Failure::Reply;
        };
        let route = format!("failure_route_{name}");
        let status = failed.status.as_u16();
        let target = if failed.reply.is_some() {
            st.failures
                .iter()
                .rev()
                .find(|(s, _)| *s == status)
                .map(|(_, t)| t.clone())
        } else {
            // No reply: the last target sent to that never answered with a final.
            st.branched
                .iter()
                .rev()
                .find(|t| !st.failures.iter().any(|(_, f)| f == *t))
                .cloned()
        };
        let script = st.script.clone();
        let src = source_text(call.source);
        let ruri = st.ruri.clone();
        api::begin(&script.lua, call.request, Kind::Failure);
        let vars = run(&script, &route, call.call_id, |lua, f, scope| {
            let vars = st.vars.to_table(lua)?;
            let req = api::req_table(lua, &ruri, &src, &vars)?;
            let fl = api::failed_table(lua, scope, status, failed.reply, target.as_deref())?;
            f.call::<()>((req, fl))?;
            Ok(Vars::from_table(&vars))
        });
        let mut acts = api::end(&script.lua);
        let Some(v) = vars else {
            return Failure::Reply;
        };
        st.vars = v;
        st.absorb(&mut acts);
        match acts.decision {
            Some(Decide::Relay(targets, opts)) => match plan(targets, &st.ruri, &opts) {
                Ok(p) => {
                    let n = p.groups.iter().map(Vec::len).sum();
                    Failure::Retry(p, opts.given.then(|| opts.policy(n)))
                }
                Err(uri) => {
                    warn!(
                        call_id = call.call_id,
                        route, "{uri:?} is not a target: the best reply goes"
                    );
                    Failure::Reply
                }
            },
            _ => Failure::Reply,
        }
    }
}
