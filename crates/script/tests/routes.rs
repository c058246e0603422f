#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! Each sentence of the OpenSIPS reply-route / failure-route semantics, and RFC 3261
//! §16.7, on the virtual network: a caller, the proxy running a script, scripted targets.

use std::sync::Arc;
use std::time::Duration;

use rollover_proxy::{
    FailoverPolicy, LiteralResolver, ProxyConfig, RouteDecision, Target, TargetPlan,
};
use rollover_script::{Script, ScriptPolicy};
use rollover_sip::Message;
use rollover_testkit::{invite_to, udp, Net, World, CALLER};
use rollover_txn::Peer;

const A: &str = "192.0.2.10:5060";
const B: &str = "192.0.2.20:5060";
const C: &str = "192.0.2.30:5060";

type Plan = fn(&Message, &Peer) -> RouteDecision;

/// The dial plan behind `req:dialplan()`: everything to C.
fn to_c(_: &Message, _: &Peer) -> RouteDecision {
    RouteDecision::Targets {
        plan: TargetPlan::serial(vec![Target::parse(&format!("sip:c@{C}")).unwrap()]),
        policy: FailoverPolicy::default(),
        rule: Arc::from("to-c"),
    }
}

fn script(src: &str) -> Arc<Script> {
    Arc::new(Script::from_source("routes.lua", src).unwrap())
}

fn net(src: &str, world: &str) -> Net<ScriptPolicy<Plan>> {
    let policy = ScriptPolicy::new(script(src), to_c as Plan);
    let mut n = Net::with_policy(ProxyConfig::default(), policy, Box::new(LiteralResolver));
    n.answer_with(&World::parse(world).unwrap());
    n
}

/// A caller's INVITE with this Call-ID, run for a minute of virtual time.
fn call(n: &mut Net<ScriptPolicy<Plan>>, call_id: &str) {
    let text = String::from_utf8_lossy(invite_to("sip:bob@example.com").unwrap().as_bytes())
        .replace("simulated-call@example.com", call_id);
    n.call(udp(CALLER), text.into_bytes().into());
    n.run(Duration::from_secs(60));
}

fn header(m: &Message, name: &str) -> Option<String> {
    m.headers_by_name(name)
        .next()
        .map(|h| m.value_unfolded(h).into_owned())
}

/// The responses the caller got (our 100 left out).
fn to_caller(n: &Net<ScriptPolicy<Plan>>) -> Vec<&Message> {
    n.sent_to(CALLER)
        .into_iter()
        .filter(|m| m.status().is_some_and(|s| s > 100))
        .collect()
}

fn statuses(n: &Net<ScriptPolicy<Plan>>) -> Vec<u16> {
    to_caller(n).iter().filter_map(|m| m.status()).collect()
}

/// The INVITEs sent to `to`, retransmissions left out.
fn invites(n: &Net<ScriptPolicy<Plan>>, to: &str) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for m in n.sent_to(to) {
        let invite = m.method().is_some_and(|m| m.as_str() == "INVITE");
        if invite && !out.iter().any(|o| o.as_bytes() == m.as_bytes()) {
            out.push(m.clone());
        }
    }
    out
}

#[test]
fn a_header_added_in_the_reply_route_on_a_408_is_on_the_408_the_caller_gets() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("mark")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function reply_route_mark(reply, req)
             reply:append_header("X-Reply-Route: saw " .. reply.status)
           end"#,
        "a=408@1s",
    );
    call(&mut n, "reply-408");
    let got = to_caller(&n);
    assert_eq!(statuses(&n), [408]);
    assert_eq!(header(got[0], "X-Reply-Route").as_deref(), Some("saw 408"));
}

const FAILOVER: &str = r#"
function request_route(req)
  req:on_failure("next")
  req:relay("sip:a@192.0.2.10:5060")
end
function failure_route_next(req, failed)
  req:append_header("X-Failover: after " .. failed.status .. " from " .. failed.target)
  if req.vars.no_relay then return end
  req:relay("sip:b@192.0.2.20:5060")
end
"#;

#[test]
fn a_header_added_in_the_failure_route_is_on_the_next_branch_and_on_no_reply() {
    let mut n = net(FAILOVER, "a=180@1s,486@2s b=180@1s,200@2s");
    call(&mut n, "failure-header");
    let to_a = invites(&n, A);
    let to_b = invites(&n, B);
    assert_eq!(header(&to_a[0], "X-Failover"), None);
    assert_eq!(
        header(&to_b[0], "X-Failover").as_deref(),
        Some("after 486 from sip:a@192.0.2.10:5060")
    );
    assert!(
        to_caller(&n)
            .iter()
            .all(|m| header(m, "X-Failover").is_none()),
        "the failure route's header is on no reply"
    );
}

#[test]
fn a_relay_in_the_failure_route_means_the_caller_never_sees_the_first_failure() {
    let mut n = net(FAILOVER, "a=180@1s,486@2s b=180@1s,200@2s");
    call(&mut n, "failure-relay");
    assert_eq!(statuses(&n), [180, 180, 200]);
}

#[test]
fn a_failure_route_that_does_not_relay_lets_the_best_reply_go() {
    let src = FAILOVER.replace(
        "req:on_failure(\"next\")",
        "req:on_failure(\"next\") req.vars.no_relay = true",
    );
    let mut n = net(&src, "a=486@1s");
    call(&mut n, "failure-no-relay");
    let got = to_caller(&n);
    assert_eq!(statuses(&n), [486]);
    assert_eq!(header(got[0], "X-Failover"), None);
    assert!(invites(&n, B).is_empty());
}

#[test]
fn without_reply_or_failure_routes_every_reply_is_relayed() {
    let mut n = net(
        r#"function request_route(req) req:relay("sip:a@192.0.2.10:5060") end"#,
        "a=180@1s,183@2s,486@3s",
    );
    call(&mut n, "no-routes");
    assert_eq!(statuses(&n), [180, 183, 486]);
}

#[test]
fn parallel_forking_sends_only_the_best_final_downstream() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("all")
             req:relay({"sip:a@192.0.2.10:5060", "sip:b@192.0.2.20:5060", "sip:c@192.0.2.30:5060"},
                       {mode = "parallel"})
           end
           function reply_route_all(reply, req) reply:append_header("X-Seen: yes") end"#,
        "a=486@1s b=404@2s c=603@3s",
    );
    call(&mut n, "parallel");
    assert_eq!(statuses(&n), [603]);
}

#[test]
fn a_reply_route_that_drops_a_180_keeps_it_from_the_caller() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("quiet")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function reply_route_quiet(reply, req)
             if reply.status == 180 then reply:drop() end
           end"#,
        "a=180@1s,183@2s,200@3s",
    );
    call(&mut n, "drop-180");
    assert_eq!(statuses(&n), [183, 200]);
}

#[test]
fn a_reply_route_cannot_drop_a_final_or_start_a_branch() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("greedy")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function reply_route_greedy(reply, req)
             reply:drop()
             req:relay("sip:b@192.0.2.20:5060")
           end"#,
        "a=486@1s",
    );
    call(&mut n, "greedy-reply");
    assert_eq!(statuses(&n), [486]);
    assert!(invites(&n, B).is_empty());
}

#[test]
fn a_branch_route_header_is_only_on_its_branch() {
    let mut n = net(
        r#"function request_route(req)
             req:on_branch("mark_b")
             req:relay({"sip:a@192.0.2.10:5060", "sip:b@192.0.2.20:5060"}, {mode = "parallel"})
           end
           function branch_route_mark_b(branch)
             if branch.ruri:find("^sip:b@") then branch:append_header("X-Branch: b") end
           end"#,
        "a=486@1s b=200@2s",
    );
    call(&mut n, "branch-route");
    assert_eq!(header(&invites(&n, A)[0], "X-Branch"), None);
    assert_eq!(header(&invites(&n, B)[0], "X-Branch").as_deref(), Some("b"));
    assert!(to_caller(&n)
        .iter()
        .all(|m| header(m, "X-Branch").is_none()));
}

#[test]
fn a_branch_route_may_drop_its_branch() {
    let mut n = net(
        r#"function request_route(req)
             req:on_branch("skip_a")
             req:relay({"sip:a@192.0.2.10:5060", "sip:b@192.0.2.20:5060"})
           end
           function branch_route_skip_a(branch)
             if branch.ruri:find("^sip:a@") then branch:drop() end
           end"#,
        "a=200@1s b=200@2s",
    );
    call(&mut n, "branch-drop");
    assert!(invites(&n, A).is_empty());
    assert_eq!(statuses(&n), [200]);
}

#[test]
fn vars_set_in_the_request_route_are_seen_by_branch_reply_and_failure_routes() {
    let mut n = net(
        r#"function request_route(req)
             req.vars.who = "alice"
             req.vars.n = 1
             req:on_branch("b") req:on_reply("r") req:on_failure("f")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function branch_route_b(branch)
             branch:append_header("X-Who: " .. branch.vars.who)
           end
           function reply_route_r(reply, req)
             req.vars.n = req.vars.n + 1
           end
           function failure_route_f(req, failed)
             req:append_header("X-Vars: " .. req.vars.who .. " " .. req.vars.n)
             req:relay("sip:b@192.0.2.20:5060")
           end"#,
        "a=180@1s,486@2s b=200@1s",
    );
    call(&mut n, "vars");
    assert_eq!(
        header(&invites(&n, A)[0], "X-Who").as_deref(),
        Some("alice")
    );
    // Two replies from a (180, 486) each counted once by the reply route.
    assert_eq!(
        header(&invites(&n, B)[0], "X-Vars").as_deref(),
        Some("alice 3")
    );
    assert_eq!(statuses(&n), [180, 200]);
}

#[test]
fn a_looping_request_route_is_stopped_and_the_call_completes_through_the_dial_plan() {
    let mut n = net(
        r#"function request_route(req) while true do end end"#,
        "c=200@1s",
    );
    call(&mut n, "loop");
    assert_eq!(statuses(&n), [200]);
    assert_eq!(invites(&n, C).len(), 1);
}

#[test]
fn a_looping_or_failing_reply_route_leaves_the_reply_as_it_was() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("bad")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function reply_route_bad(reply, req)
             reply:append_header("X-Half: done")
             if reply.status == 180 then while true do end end
             error("boom")
           end"#,
        "a=180@1s,200@2s",
    );
    call(&mut n, "bad-reply-route");
    let got = to_caller(&n);
    assert_eq!(statuses(&n), [180, 200]);
    assert!(got.iter().all(|m| header(m, "X-Half").is_none()));
}

#[test]
fn reply_drop_and_dialplan_in_the_request_route() {
    let src = r#"function request_route(req)
                   local who = req:header("X-Do")
                   if who == "reply" then req:reply(486, "Busy Here")
                   elseif who == "drop" then req:drop()
                   else req:dialplan() end
                 end"#;
    let run = |x: &str| {
        let mut n = net(src, "c=200@1s");
        let text = String::from_utf8_lossy(invite_to("sip:bob@example.com").unwrap().as_bytes())
            .replacen("\r\n\r\n", &format!("\r\nX-Do: {x}\r\n\r\n"), 1);
        n.call(udp(CALLER), text.into_bytes().into());
        n.run(Duration::from_secs(40));
        let dropped = n.proxy.stats().dropped;
        (n.statuses_to(CALLER), invites(&n, C).len(), dropped)
    };
    assert_eq!(run("reply"), (vec![486], 0, 0));
    // Dropped: nothing at all, not even for the caller's retransmissions.
    let (statuses, to_c, dropped) = run("drop");
    assert_eq!((statuses, to_c), (vec![], 0));
    assert!(dropped >= 1);
    assert_eq!(run("plan"), (vec![100, 200], 1, 0));
}

#[test]
fn set_ruri_changes_where_a_bare_relay_goes_and_what_the_dial_plan_sees() {
    let mut n = net(
        r#"function request_route(req)
             req:set_ruri("sip:bob@192.0.2.20:5060")
             req:append_header("X-Route: script")
             req:relay()
           end"#,
        "bob=200@1s",
    );
    call(&mut n, "set-ruri");
    let to_b = invites(&n, B);
    assert_eq!(to_b[0].request_uri_str(), Some("sip:bob@192.0.2.20:5060"));
    assert_eq!(header(&to_b[0], "X-Route").as_deref(), Some("script"));
    assert_eq!(statuses(&n), [200]);
}

#[test]
fn relay_options_roll_over_by_themselves_and_the_failure_route_runs_when_all_failed() {
    let mut n = net(
        r#"function request_route(req)
             req:on_failure("last")
             req:relay({"sip:a@192.0.2.10:5060", "sip:b@192.0.2.20:5060"},
                       {mode = "serial", on_response = "5..", no_response_timeout = 2})
           end
           function failure_route_last(req, failed)
             req:append_header("X-Last: " .. failed.status)
             req:relay("sip:c@192.0.2.30:5060")
           end"#,
        "a=503@1s b=silence c=200@1s",
    );
    call(&mut n, "compose");
    assert_eq!(invites(&n, A).len(), 1);
    assert!(!invites(&n, B).is_empty(), "rolled over to b by itself");
    let to_c = invites(&n, C);
    assert_eq!(to_c.len(), 1);
    // a's 503 and b's timeout (408): §16.7 ranks the 4xx first, and the failure route
    // sees what the caller would have had.
    assert_eq!(header(&to_c[0], "X-Last").as_deref(), Some("408"));
    assert_eq!(statuses(&n), [200]);
}

#[test]
fn a_failure_route_may_re_arm_itself() {
    let mut n = net(
        r#"local next = { "sip:b@192.0.2.20:5060", "sip:c@192.0.2.30:5060" }
           function request_route(req)
             req.vars.i = 1
             req:on_failure("again")
             req:relay("sip:a@192.0.2.10:5060")
           end
           function failure_route_again(req, failed)
             local t = next[req.vars.i]
             if t == nil then return end
             req.vars.i = req.vars.i + 1
             req:on_failure("again")
             req:relay(t)
           end"#,
        "a=486@1s b=486@1s c=480@1s",
    );
    call(&mut n, "re-arm");
    assert_eq!(
        (
            invites(&n, A).len(),
            invites(&n, B).len(),
            invites(&n, C).len()
        ),
        (1, 1, 1)
    );
    assert_eq!(statuses(&n), [480]);
}

#[test]
fn a_call_keeps_the_script_it_started_with_and_its_state_goes_with_it() {
    let v1 = r#"function request_route(req) req:on_failure("f") req:relay("sip:a@192.0.2.10:5060") end
                function failure_route_f(req, failed)
                  req:append_header("X-Version: 1") req:relay("sip:b@192.0.2.20:5060")
                end"#;
    let mut n = net(v1, "a=180@1s,486@5s b=200@1s");
    let text =
        String::from_utf8_lossy(invite_to("sip:bob@example.com").unwrap().as_bytes()).into_owned();
    n.call(udp(CALLER), text.into_bytes().into());
    n.run(Duration::from_secs(2));
    // Reloaded while the first target rings.
    let v2 = v1.replace("X-Version: 1", "X-Version: 2");
    n.proxy.router_mut().set_script(script(&v2));
    n.run(Duration::from_secs(60));
    assert_eq!(
        header(&invites(&n, B)[0], "X-Version").as_deref(),
        Some("1")
    );
    n.run(Duration::from_secs(60));
    assert_eq!(n.proxy.calls(), 0);
    assert_eq!(n.proxy.router_mut().calls_held(), 0, "no state left behind");
}

#[test]
fn a_route_that_allocates_too_much_fails_and_the_call_goes_on() {
    let mut n = net(
        r#"function request_route(req)
             local s = string.rep("x", 100 * 1024 * 1024)
             req:reply(500, "Unreachable " .. #s)
           end"#,
        "c=200@1s",
    );
    call(&mut n, "memory");
    assert_eq!(statuses(&n), [200], "the dial plan took the call");
}

#[test]
fn headers_removed_in_the_request_route_are_on_no_branch() {
    let mut n = net(
        r#"function request_route(req)
             req:remove_header("Contact")
             req:append_header("X-Note: " .. (req:header("Max-Forwards") or "none"))
             req:relay("sip:a@192.0.2.10:5060")
           end"#,
        "a=486@1s",
    );
    call(&mut n, "remove-header");
    let to_a = invites(&n, A);
    assert_eq!(header(&to_a[0], "Contact"), None);
    assert_eq!(header(&to_a[0], "X-Note").as_deref(), Some("70"));
    assert_eq!(statuses(&n), [486]);
}

#[test]
fn routes_armed_before_the_dial_plan_run_for_the_rules_targets() {
    let mut n = net(
        r#"function request_route(req)
             req:on_reply("mark")
             req:on_failure("rescue")
             req:dialplan()
           end
           function reply_route_mark(reply, req) reply:append_header("X-Rules: c") end
           function failure_route_rescue(req, failed)
             req:relay("sip:b@192.0.2.20:5060")
           end"#,
        "c=180@1s,486@2s b=200@1s",
    );
    call(&mut n, "rules-and-script");
    assert_eq!(invites(&n, C).len(), 1, "the rules sent it to c");
    assert_eq!(invites(&n, B).len(), 1, "the failure route to b");
    let got = to_caller(&n);
    assert_eq!(statuses(&n), [180, 200]);
    assert_eq!(header(got[0], "X-Rules").as_deref(), Some("c"));
}

#[test]
fn the_failure_route_sees_the_target_that_timed_out_and_the_request_its_source() {
    let mut n = net(
        r#"function request_route(req)
             req:on_failure("f")
             req:relay("sip:a@192.0.2.10:5060", {no_response_timeout = 2})
           end
           function failure_route_f(req, failed)
             req:append_header("X-Failed: " .. failed.status .. " " .. failed.reason .. " " .. tostring(failed.target))
             req:append_header("X-Source: " .. req.source .. " " .. req.method)
             req:relay("sip:b@192.0.2.20:5060")
           end"#,
        "a=silence b=200@1s",
    );
    call(&mut n, "timed-out");
    let to_b = invites(&n, B);
    assert_eq!(
        header(&to_b[0], "X-Failed").as_deref(),
        Some("408 Request Timeout sip:a@192.0.2.10:5060")
    );
    assert_eq!(
        header(&to_b[0], "X-Source").as_deref(),
        Some("udp:198.51.100.1:5060 INVITE")
    );
}

#[test]
fn globals_are_shared_by_the_calls_of_one_version() {
    let mut n = net(
        r#"local targets = { "sip:a@192.0.2.10:5060", "sip:b@192.0.2.20:5060" }
           calls = 0
           function request_route(req)
             calls = calls + 1
             req:relay(targets[(calls - 1) % 2 + 1])
           end"#,
        "a=200@1s b=200@1s",
    );
    call(&mut n, "round-1");
    call(&mut n, "round-2");
    assert_eq!((invites(&n, A).len(), invites(&n, B).len()), (1, 1));
}

#[test]
fn req_methods_are_shared_and_hidden_so_one_call_cannot_change_the_next() {
    // getmetatable(req) is false and the methods cannot be swapped: a call that tries
    // fails its route (the dial plan routes it), and the next call's req is intact.
    let mut n = net(
        r#"function request_route(req)
             if req:header("Call-ID") == "tamper" then
               assert(getmetatable(req) == false)
               setmetatable(req, {})
             end
             req:append_header("X-Seen: " .. req.method)
             req:relay("sip:a@192.0.2.10:5060")
           end"#,
        "a=200@0.1s c=200@0.1s",
    );
    call(&mut n, "tamper");
    call(&mut n, "after");
    let to_a = invites(&n, A);
    assert_eq!(to_a.len(), 1, "only the untampered call reached A");
    assert_eq!(header(&to_a[0], "Call-ID").as_deref(), Some("after"));
    assert_eq!(header(&to_a[0], "X-Seen").as_deref(), Some("INVITE"));
    assert_eq!(
        invites(&n, C).len(),
        1,
        "the tampering call went to the dial plan"
    );
}
