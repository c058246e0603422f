//! Routing scripts in the real binary, one test per sentence of the OpenSIPS reply-route /
//! failure-route semantics: SIPp caller and targets, each tracing what it received.

use super::*;

/// A proxy whose `[script]` is `lua` (written next to its configuration), with `rules`
/// behind `req:dialplan()`.
fn script_proxy(dir: &Dir, lua: &str, rules: &str) -> Proxy {
    std::fs::write(dir.path("routes.lua"), lua).unwrap();
    let cfg = format!("{}\n[script]\nfile = \"routes.lua\"\n", config(rules));
    Proxy::start(dir, &cfg)
}

/// SIPp arguments that trace every message to `<name>.msg`.
fn trace(dir: &Dir, name: &str) -> Vec<String> {
    vec![
        "-trace_msg".into(),
        "-message_file".into(),
        dir.path(&format!("{name}.msg")).display().to_string(),
    ]
}

/// A traced callee.
fn traced_callee(dir: &Dir, name: &str, scenario: &Path) -> (Proc, u16) {
    sipp_callee(dir, name, scenario, 1, "u1", "40s", &trace(dir, name))
}

/// A traced caller making one call; true when it succeeded.
fn traced_caller(dir: &Dir, proxy: &Proxy, scenario: &Path) -> bool {
    let extra = trace(dir, "caller");
    let code = Caller {
        scenario,
        service: "100",
        calls: 1,
        rate: 1,
        transport: "u1",
        timeout: "40s",
        extra: &extra,
    }
    .run(dir, "caller", proxy.port, Duration::from_secs(45));
    if code != Some(0) {
        eprintln!("proxy log:\n{}", proxy.log_text());
    }
    code == Some(0)
}

/// The messages `name` received, as SIPp traced them.
fn received(dir: &Dir, name: &str) -> Vec<String> {
    dir.read(&format!("{name}.msg"))
        .split("----------------------------------------------- ")
        .filter(|b| b.contains("message received"))
        .filter_map(|b| b.split_once("\n\n").map(|(_, m)| m.trim().to_owned()))
        .filter(|m| !m.is_empty())
        .collect()
}

/// The received messages whose first line starts with `start`.
fn received_starting(dir: &Dir, name: &str, start: &str) -> Vec<String> {
    received(dir, name)
        .into_iter()
        .filter(|m| m.starts_with(start))
        .collect()
}

fn wait_done(p: &mut Proc) {
    let _ = p.wait(Duration::from_secs(10));
}

#[test]
fn a_header_added_in_the_reply_route_on_a_408_is_on_the_408_the_caller_gets() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-408");
    let (mut a, pa) = traced_callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "408", "Request Timeout", "0", ""),
    );
    let lua = format!(
        r#"function request_route(req)
             req:on_reply("mark")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function reply_route_mark(reply, req)
             reply:append_header("X-Reply-Route: saw " .. reply.status)
           end"#
    );
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &rejected_caller(&dir, "408")));
    wait_done(&mut a);
    let got = received_starting(&dir, "caller", "SIP/2.0 408");
    assert!(!got.is_empty(), "{:?}", received(&dir, "caller"));
    assert!(
        got.iter().all(|m| m.contains("X-Reply-Route: saw 408")),
        "{got:?}"
    );
}

/// The failure route: adds a header and relays to b.
fn failover_script(pa: u16, pb: u16, relay: bool) -> String {
    let relay = if relay {
        format!(r#"req:relay("sip:b@127.0.0.1:{pb}")"#)
    } else {
        String::new()
    };
    format!(
        r#"function request_route(req)
             req:on_failure("next")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function failure_route_next(req, failed)
             req:append_header("X-Failover: after " .. failed.status)
             {relay}
           end"#
    )
}

#[test]
fn a_failure_route_header_is_on_the_next_branch_and_the_caller_never_sees_the_first_failure() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-failure");
    let (mut a, pa) = traced_callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
    );
    let (mut b, pb) = traced_callee(&dir, "b", &answer_scenario(&dir, "b.xml", "0", "100"));
    let proxy = script_proxy(&dir, &failover_script(pa, pb, true), "");
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    wait_done(&mut b);
    let to_a = received_starting(&dir, "a", "INVITE ");
    let to_b = received_starting(&dir, "b", "INVITE ");
    assert!(to_a.iter().all(|m| !m.contains("X-Failover")), "{to_a:?}");
    assert!(
        !to_b.is_empty() && to_b.iter().all(|m| m.contains("X-Failover: after 486")),
        "{to_b:?}"
    );
    let at_caller = received(&dir, "caller");
    assert!(
        at_caller.iter().all(|m| !m.contains("X-Failover")),
        "{at_caller:?}"
    );
    assert!(
        at_caller.iter().all(|m| !m.starts_with("SIP/2.0 486")),
        "{at_caller:?}"
    );
}

#[test]
fn a_failure_route_that_does_not_relay_sends_the_failure_without_its_header() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-failure-reply");
    let (mut a, pa) = traced_callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
    );
    let proxy = script_proxy(&dir, &failover_script(pa, 9, false), "");
    assert!(traced_caller(&dir, &proxy, &rejected_caller(&dir, "486")));
    wait_done(&mut a);
    let got = received_starting(&dir, "caller", "SIP/2.0 486");
    assert!(
        !got.is_empty() && got.iter().all(|m| !m.contains("X-Failover")),
        "{got:?}"
    );
}

#[test]
fn without_reply_or_failure_routes_every_reply_is_relayed() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-plain");
    let (mut a, pa) = traced_callee(&dir, "a", &answer_scenario(&dir, "a.xml", "0", "200"));
    let lua = format!(r#"function request_route(req) req:relay("sip:a@127.0.0.1:{pa}") end"#);
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    assert!(!received_starting(&dir, "caller", "SIP/2.0 180").is_empty());
    assert!(!received_starting(&dir, "caller", "SIP/2.0 200").is_empty());
}

#[test]
fn parallel_486_404_603_give_the_caller_the_603_only() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-parallel");
    let (mut a, pa) = traced_callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
    );
    let (mut b, pb) = traced_callee(
        &dir,
        "b",
        &reject_scenario(&dir, "b.xml", "404", "Not Found", "100", ""),
    );
    let (mut c, pc) = traced_callee(
        &dir,
        "c",
        &reject_scenario(&dir, "c.xml", "603", "Decline", "300", ""),
    );
    let lua = format!(
        r#"function request_route(req)
             req:on_reply("seen")
             req:relay({{"sip:a@127.0.0.1:{pa}", "sip:b@127.0.0.1:{pb}", "sip:c@127.0.0.1:{pc}"}},
                       {{mode = "parallel"}})
           end
           function reply_route_seen(reply, req) reply:append_header("X-Seen: yes") end"#
    );
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &rejected_caller(&dir, "603")));
    for p in [&mut a, &mut b, &mut c] {
        wait_done(p);
    }
    let finals: Vec<String> = received(&dir, "caller")
        .into_iter()
        .filter_map(|m| m.lines().next().map(str::to_owned))
        .filter(|l| !l.starts_with("SIP/2.0 1"))
        .collect();
    assert!(
        !finals.is_empty() && finals.iter().all(|l| l.starts_with("SIP/2.0 603")),
        "{finals:?}"
    );
}

#[test]
fn a_reply_route_that_drops_a_180_keeps_it_from_the_caller() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-drop180");
    let (mut a, pa) = traced_callee(&dir, "a", &answer_scenario(&dir, "a.xml", "0", "300"));
    let lua = format!(
        r#"function request_route(req)
             req:on_reply("quiet")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function reply_route_quiet(reply, req)
             if reply.status == 180 then reply:drop() end
           end"#
    );
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    assert!(received_starting(&dir, "caller", "SIP/2.0 180").is_empty());
    assert!(!received_starting(&dir, "caller", "SIP/2.0 200").is_empty());
}

#[test]
fn a_branch_route_header_is_only_on_its_branch_and_vars_cross_routes() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-branch");
    let (mut a, pa) = traced_callee(
        &dir,
        "a",
        &reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", ""),
    );
    let (mut b, pb) = traced_callee(&dir, "b", &answer_scenario(&dir, "b.xml", "0", "100"));
    // The request route sets vars; the branch route marks b's branch with them; the reply
    // route counts replies; the failure route reports the count to the next branch.
    let lua = format!(
        r#"function request_route(req)
             req.vars.who = "alice"
             req.vars.replies = 0
             req:on_branch("mark") req:on_reply("count") req:on_failure("next")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function branch_route_mark(branch)
             if branch.ruri:find("^sip:b@") then
               branch:append_header("X-Branch: b for " .. branch.vars.who)
             end
           end
           function reply_route_count(reply, req)
             req.vars.replies = req.vars.replies + 1
           end
           function failure_route_next(req, failed)
             req:append_header("X-Vars: " .. req.vars.who .. " " .. req.vars.replies)
             req:relay("sip:b@127.0.0.1:{pb}")
           end"#
    );
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    wait_done(&mut b);
    let to_a = received_starting(&dir, "a", "INVITE ");
    let to_b = received_starting(&dir, "b", "INVITE ");
    assert!(
        !to_a.is_empty() && to_a.iter().all(|m| !m.contains("X-Branch")),
        "{to_a:?}"
    );
    assert!(
        to_b.iter().all(|m| m.contains("X-Branch: b for alice")),
        "{to_b:?}"
    );
    // a's 486 passed the reply route once before the failure route ran.
    assert!(
        to_b.iter().all(|m| m.contains("X-Vars: alice 1")),
        "{to_b:?}"
    );
    assert!(received(&dir, "caller")
        .iter()
        .all(|m| !m.contains("X-Branch")));
}

#[test]
fn a_script_that_loops_is_stopped_and_the_call_still_completes() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-loop");
    let (mut a, pa) = traced_callee(&dir, "a", &answer_scenario(&dir, "a.xml", "0", "100"));
    let lua = "function request_route(req) while true do end end";
    let rules = format!("[[route]]\nname = \"fallback\"\ntargets = [\"sip:a@127.0.0.1:{pa}\"]\n");
    let proxy = script_proxy(&dir, lua, &rules);
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    let log = proxy.log_text();
    assert!(log.contains("request_route stopped after"), "{log}");
    assert!(log.contains("call_id="), "the Call-ID is logged: {log}");
    assert_eq!(received_starting(&dir, "a", "INVITE ").len(), 1);
}

#[test]
fn a_script_that_does_not_load_stops_the_proxy_from_starting() {
    let dir = Dir::new("lua-bad");
    std::fs::write(
        dir.path("routes.lua"),
        "function request_route(req)\n  if x then\nend\n",
    )
    .unwrap();
    let cfg = dir.path("rollover.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp:127.0.0.1:{}\"]\n[script]\nfile = \"routes.lua\"\n",
            port()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["proxy", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:4: 'end' expected", dir.path("routes.lua").display());
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_route_that_fails_is_logged_with_call_id_and_route_and_the_call_goes_on() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-error");
    let (mut a, pa) = traced_callee(&dir, "a", &answer_scenario(&dir, "a.xml", "0", "100"));
    let lua = format!(
        r#"function request_route(req)
             req:on_reply("broken")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function reply_route_broken(reply, req)
             reply:append_header("X-Never: sent")
             error("no such carrier")
           end"#
    );
    let proxy = script_proxy(&dir, &lua, "");
    assert!(traced_caller(&dir, &proxy, &answered(&dir)));
    wait_done(&mut a);
    let log = proxy.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reply_route_broken failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("call_id="), "{line}");
    assert!(line.contains("route=\"reply_route_broken\""), "{line}");
    assert!(line.contains("routes.lua:7: no such carrier"), "{line}");
    assert!(received(&dir, "caller")
        .iter()
        .all(|m| !m.contains("X-Never")));
}

#[test]
fn with_two_workers_each_runs_the_script_and_calls_keep_their_state() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("lua-workers");
    let reject = reject_scenario(&dir, "a.xml", "486", "Busy Here", "0", "");
    let (mut a, pa) = sipp_callee(&dir, "a", &reject, 4, "u1", "40s", &trace(&dir, "a"));
    let answer = answer_scenario(&dir, "b.xml", "0", "100");
    let (mut b, pb) = sipp_callee(&dir, "b", &answer, 4, "u1", "40s", &trace(&dir, "b"));
    let lua = format!(
        r#"function request_route(req)
             req.vars.first = "a"
             req:on_failure("next")
             req:relay("sip:a@127.0.0.1:{pa}")
           end
           function failure_route_next(req, failed)
             req:append_header("X-After: " .. req.vars.first .. " " .. failed.status)
             req:relay("sip:b@127.0.0.1:{pb}")
           end"#
    );
    std::fs::write(dir.path("routes.lua"), lua).unwrap();
    let cfg = config("").replace("[server]\n", "[server]\nworkers = 2\n")
        + "\n[script]\nfile = \"routes.lua\"\n";
    let proxy = Proxy::start(&dir, &cfg);
    let extra = trace(&dir, "caller");
    let code = Caller {
        scenario: &answered(&dir),
        service: "100",
        calls: 4,
        rate: 10,
        transport: "u1",
        timeout: "40s",
        extra: &extra,
    }
    .run(&dir, "caller", proxy.port, Duration::from_secs(45));
    assert_eq!(code, Some(0), "{}", proxy.log_text());
    wait_done(&mut a);
    wait_done(&mut b);
    let to_b = received_starting(&dir, "b", "INVITE ");
    assert!(to_b.len() >= 4, "{to_b:?}");
    assert!(
        to_b.iter().all(|m| m.contains("X-After: a 486")),
        "{to_b:?}"
    );
    assert!(
        proxy.log_text().contains("2 worker(s)"),
        "{}",
        proxy.log_text()
    );
}
