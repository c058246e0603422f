use super::*;
use rollover_sip::{Method, RequestBuilder};

fn invite(uri: &str, extra: &[(&str, &str)]) -> Message {
    let mut b = RequestBuilder::new(Method::Invite, uri)
        .via("SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-1")
        .from("\"Alice\" <sip:alice@example.com>;tag=1")
        .to("<sip:100@192.168.0.100>")
        .call_id("c@example.com")
        .cseq(1);
    for (n, v) in extra {
        b = b.header(n, v);
    }
    Message::parse(b.build().unwrap()).unwrap()
}

fn peer(addr: &str, t: Transport) -> Peer {
    Peer {
        transport: t,
        addr: addr.parse().unwrap(),
    }
}

fn udp() -> Peer {
    peer("10.1.2.3:5060", Transport::Udp)
}

const PLAN: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]

[failover]
no_response_timeout = 10
ring_timeout = "20s"

[[route]]
name = "extensions"
match.method = "^INVITE$"
match.request_uri = '^sip:(\d{3})@'
match.from = '<sip:(?P<caller>[a-z]+)@'
targets = ["sip:$1@192.168.0.101", "sip:${caller}-vm@192.168.0.102/TCP"]
failover.no_response_timeout = 30
failover.on_response = "4.."

[[route]]
name = "office"
match.source = "10.0.0.0/8"
match.header.X-Office = "^yes$"
mode = "parallel"
targets = ["sip:a@192.168.0.1", "sip:b@192.168.0.2"]

[[route]]
name = "groups"
match.transport = "tcp"
[[route.group]]
targets = ["sip:a@192.168.0.1", "sip:b@192.168.0.2"]
[[route.group]]
targets = ["sip:c@192.168.0.3"]

[[route]]
name = "nobody"
match.request_uri = "^sip:nobody@"
reject = 480
reason = "Gone Fishing"
"#;

fn plan() -> DialPlan {
    Config::parse("test.toml", PLAN).unwrap().plan
}

#[test]
fn first_matching_rule_with_captures_and_overrides() {
    let m = plan().explain(&invite("sip:100@192.168.0.100", &[]), &udp());
    assert_eq!(m.rule.as_deref(), Some("extensions"));
    let RouteDecision::Targets { plan, policy, .. } = m.decision else {
        panic!()
    };
    assert_eq!(plan.groups.len(), 2, "serial by default");
    assert_eq!(plan.groups[0][0].uri, "sip:100@192.168.0.101");
    assert_eq!(plan.groups[1][0].uri, "sip:alice-vm@192.168.0.102");
    assert_eq!(plan.groups[1][0].transport, Transport::Tcp);
    assert_eq!(policy.no_response_timeout, Duration::from_secs(30));
    assert_eq!(
        policy.ring_timeout,
        Duration::from_secs(20),
        "inherited from [failover]"
    );
    assert!(
        policy.on_response.rolls_over(StatusCode::NOT_FOUND)
            && !policy
                .on_response
                .rolls_over(StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[test]
fn source_header_transport_and_groups() {
    let p = plan();
    let m = p.explain(&invite("sip:zed@h", &[("X-Office", "yes")]), &udp());
    assert_eq!(m.rule.as_deref(), Some("office"));
    let RouteDecision::Targets { plan, .. } = m.decision else {
        panic!()
    };
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].len(), 2);
    let outside = peer("192.0.2.1:5060", Transport::Udp);
    assert_eq!(
        p.explain(&invite("sip:zed@h", &[("X-Office", "yes")]), &outside)
            .rule,
        None
    );
    let m = p.explain(
        &invite("sip:zed@h", &[]),
        &peer("192.0.2.1:5060", Transport::Tcp),
    );
    assert_eq!(m.rule.as_deref(), Some("groups"));
    let RouteDecision::Targets { plan, .. } = m.decision else {
        panic!()
    };
    assert_eq!(plan.groups.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
}

#[test]
fn reject_and_no_match() {
    let p = plan();
    match p
        .explain(
            &invite("sip:nobody@h", &[]),
            &peer("192.0.2.1:5060", Transport::Udp),
        )
        .decision
    {
        RouteDecision::Reject { status, reason, .. } => {
            assert_eq!((status.as_u16(), reason.as_str()), (480, "Gone Fishing"))
        }
        other => panic!("{other:?}"),
    }
    match p
        .explain(
            &invite("sip:zed@h", &[]),
            &peer("192.0.2.1:5060", Transport::Udp),
        )
        .decision
    {
        RouteDecision::Reject { status, .. } => assert_eq!(status, 404),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_name_file_line_and_key() {
    let bad = "[failover]\nring_timeout = \"soon\"\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line, e.key.as_str()),
        ("plan.toml", 2, "failover.ring_timeout")
    );

    let bad = "[[route]]\ntargets = [\"sip:a@h\"]\n\n[[route]]\nmatch.request_uri = \"(\"\ntargets = [\"sip:b@h\"]\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (5, "route[2].match.request_uri"));

    let bad = "[[route]]\ntargets = [\"tel:+1234\"]\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "route[1].targets[1]"));
    assert!(e.message.contains("not a sip: or sips: URI"), "{e}");

    let bad = "[server]\nlisten = [\"udp:127.0.0.1\"]\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "server.listen"));

    let bad = "[failover]\nno_respons_timeout = 3\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1));
    assert_eq!(e.key, "failover.no_respons_timeout");

    let bad = "[[route]]\nmode = \"sideways\"\ntargets = [\"sip:a@h\"]\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "route[1].mode"));

    let bad = "[[route]]\nname = \"x\"\n";
    assert!(Config::parse("plan.toml", bad)
        .unwrap_err()
        .message
        .contains("exactly one"));
}

#[test]
fn durations() {
    let cfg = Config::parse("t", "[failover]\nno_response_timeout = \"1.5s\"\nring_timeout = \"800ms\"\n[server]\nt1 = \"2m\"\n").unwrap();
    assert_eq!(
        cfg.plan.defaults().no_response_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(cfg.plan.defaults().ring_timeout, Duration::from_millis(800));
    assert_eq!(cfg.server.t1, Duration::from_secs(120));
    assert!(Config::parse("t", "[failover]\nring_timeout = -1\n").is_err());
}

#[test]
fn seed_defaults() {
    let cfg = Config::parse("t", "").unwrap();
    let d = cfg.plan.defaults();
    assert_eq!(d.no_response_timeout, Duration::from_secs(10));
    assert_eq!(d.ring_timeout, Duration::from_secs(20));
    assert!(d.follow_redirects);
    assert_eq!(d.max_targets, 10);
    assert_eq!(cfg.server.listen.len(), 2);
}

#[test]
fn expansion() {
    let mut caps = HashMap::new();
    caps.insert("1".to_owned(), "100".to_owned());
    caps.insert("user".to_owned(), "bob".to_owned());
    assert_eq!(expand("sip:$1@h;x=${user}$$", &caps), "sip:100@h;x=bob$");
}

#[test]
fn rules_without_a_method_route_invites_only_and_register_gets_405() {
    let cfg = Config::parse(
        "t.toml",
        "[[route]]\nname = \"pstn\"\nmatch.request_uri = '^sip:'\ntargets = [\"sip:gw@192.0.2.9\"]\n",
    )
    .unwrap();
    let req = |m: Method| {
        Message::parse(
            RequestBuilder::new(m, "sip:100@example.com")
                .via("SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-1")
                .from("<sip:a@example.com>;tag=1")
                .to("<sip:100@example.com>")
                .call_id("m@example.com")
                .cseq(1)
                .build()
                .unwrap(),
        )
        .unwrap()
    };
    let status = |m: Method| match cfg.plan.route(&req(m), &udp()) {
        RouteDecision::Targets { .. } => 0,
        RouteDecision::Reject { status, .. } => status.as_u16(),
        RouteDecision::Later | RouteDecision::Drop { .. } => {
            unreachable!("a dial plan answers at once")
        }
    };
    assert_eq!(status(Method::Invite), 0);
    assert_eq!(
        status(Method::Options),
        404,
        "an OPTIONS ping never reaches the PSTN"
    );
    assert_eq!(status(Method::Message), 404);
    assert_eq!(status(Method::Register), 405, "no registrar");
    assert!(cfg
        .plan
        .to_string()
        .contains("method INVITE (no match.method)"));
}

fn parse_err(text: &str) -> ConfigError {
    Config::parse("plan.toml", text).unwrap_err()
}

#[test]
fn unknown_keys_keep_their_whole_path() {
    let e = parse_err("[[route]]\ntargets = [\"sip:a@h\"]\n\n[[route]]\ntargets = [\"sip:b@h\"]\nfailover.ring_timout = 3\n");
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (6, 10, "route[2].failover.ring_timout")
    );
    assert!(e.message.contains("ring_timeout"), "{e}");
    let e = parse_err("[[route]]\ntargets = [\"sip:a@h\"]\n[route.failover]\nring_timout = 3\n");
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (4, 1, "route[1].failover.ring_timout")
    );
    let e = parse_err("[[route]]\nmatch.methd = \"^INVITE$\"\ntargets = [\"sip:a@h\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "route[1].match.methd"));
    let e = parse_err("[server]\nlisten = []\nrecord_routes = true\n");
    assert_eq!((e.line, e.key.as_str()), (3, "server.record_routes"));
}

#[test]
fn targets_naming_a_capture_that_does_not_exist_are_refused() {
    // One group: $2 does not exist.
    let e = parse_err(
        "[[route]]\nname = \"a\"\ntargets = [\"sip:x@h\"]\n\n[[route]]\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@h\", \"sip:$2@h\"]\n",
    );
    assert_eq!(
        (e.file.as_str(), e.line, e.column, e.key.as_str()),
        ("plan.toml", 7, 29, "route[2].targets[2]")
    );
    assert_eq!(
        e.message,
        "capture $2 does not exist: match.request_uri has 1 group; defined here: $0, $1, ${ruri}"
    );
    // A misspelt name.
    let e = parse_err(
        "[[route]]\nmatch.from = '<sip:(?P<name>[a-z]+)@'\ntargets = [\"sip:${nam}@h\"]\n",
    );
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (3, 17, "route[1].targets[1]")
    );
    assert!(
        e.message.contains("${nam} does not exist") && e.message.contains("${name}, ${ruri}"),
        "{e}"
    );
    // Numbered captures need match.request_uri.
    let e = parse_err("[[route]]\nmatch.to = '(\\d+)'\ntargets = [\"sip:$1@h\"]\n");
    assert!(e.message.contains("come from match.request_uri"), "{e}");
    // In groups too, and `${1}` is `$1`.
    let e = parse_err(
        "[[route]]\nmatch.request_uri = '^sip:(\\d+)@'\n[[route.group]]\ntargets = [\"sip:${1}@h\"]\n[[route.group]]\ntargets = [\"sip:${3}@h\"]\n",
    );
    assert_eq!(e.key, "route[1].group[2].targets[1]");
    assert!(e.message.contains("${3} does not exist"), "{e}");
    let e = parse_err("[[route]]\ntargets = [\"sip:${ruri@h\"]\n");
    assert!(e.message.contains("unclosed"), "{e}");
    // What exists is accepted: numbered and named (from any condition), $0, ${ruri}, $$.
    let cfg = Config::parse(
        "t",
        "[[route]]\nmatch.request_uri = '^sip:(?P<user>\\d+)@(\\w+)'\nmatch.header.X-Id = '(?P<id>\\w+)'\ntargets = [\"sip:$1-$2@h\", \"sip:${user}-${id}@h\", \"$0\", \"${ruri}\", \"sip:a$$b@h\"]\n",
    );
    assert!(cfg.is_ok(), "{:?}", cfg.err());
}

#[test]
fn target_errors_name_the_exact_problem() {
    let e = parse_err("[[route]]\ntargets = [\"sip:1@h:99999\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "route[1].targets[1]"));
    assert!(
        e.message.contains("port 99999 out of range (1–65535)"),
        "{e}"
    );
    let e = parse_err(
        "[[route]]\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@192.0.2.1/TPC\"]\n",
    );
    assert_eq!(
        e.message,
        "target \"sip:$1@192.0.2.1/TPC\": unknown transport suffix /TPC (UDP, TCP or TLS)"
    );
    let e = parse_err("[[route]]\ntargets = [\"sip:a@h;transport=sctp\"]\n");
    assert!(e.message.contains("unknown transport \"sctp\""), "{e}");
    // A capture may stand for a host or a whole URI.
    assert!(Config::parse(
        "t",
        "[[route]]\nmatch.request_uri = '^sip:(\\d+)@([^;]+)'\ntargets = [\"sip:$1@$2\", \"sip:100@$2:5070/TCP\"]\n"
    )
    .is_ok());
}

#[test]
fn sips_targets_with_captures_are_accepted_and_use_tls() {
    let cfg = Config::parse(
        "t",
        "[[route]]\nmatch.request_uri = '^sips?:(\\d+)@'\ntargets = [\"sips:$1@example.com\"]\n",
    )
    .unwrap();
    let RouteDecision::Targets { plan, .. } = cfg.plan.route(&invite("sip:100@h", &[]), &udp())
    else {
        panic!()
    };
    assert_eq!(plan.groups[0][0].uri, "sips:100@example.com");
    assert_eq!(plan.groups[0][0].transport, Transport::Tls);
}

/// The warnings for a plan made of rules (each a `[[route]]` body).
fn warnings(rules: &[&str]) -> Vec<String> {
    let text: String = rules
        .iter()
        .map(|r| format!("[[route]]\n{r}\ntargets = [\"sip:t@192.0.2.1\"]\n\n"))
        .collect();
    Config::parse("plan.toml", &text)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_rule_after_a_catch_all_is_reported() {
    let cfg = Config::parse(
        "plan.toml",
        "[[route]]\nname = \"ext\"\nmatch.request_uri = '^sip:1'\ntargets = [\"sip:a@h\"]\n\n[[route]]\nname = \"catch-all\"\ntargets = [\"sip:b@h\"]\n\n[[route]]\nname = \"x\"\nmatch.request_uri = '^sip:sales@'\nreject = 480\n",
    )
    .unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    assert_eq!(
        (w.file.as_str(), w.line, w.key.as_str()),
        ("plan.toml", 10, "route[3]")
    );
    assert_eq!(
        w.message,
        "route[3] \"x\" can never match: route[2] \"catch-all\" above it matches every INVITE"
    );
    assert!(cfg.plan.to_string().contains("x"), "still compiled");

    // Catch-alls by request_uri.
    assert_eq!(
        warnings(&["match.request_uri = '.*'", ""]),
        ["plan.toml:5:1: route[2] can never match: route[1] above it matches every INVITE"]
    );
    assert_eq!(
        warnings(&["match.request_uri = '^sip:'", "match.request_uri = '^sip:(\\d+)@'"]),
        ["plan.toml:5:1: route[2] can never match: route[1] above it matches every INVITE it could match"]
    );
    assert_eq!(
        warnings(&[
            "match.request_uri = '^sips?:'",
            "match.request_uri = '^sips:(\\d+)@'"
        ])
        .len(),
        1
    );
    // A method catch-all, and narrower methods.
    assert_eq!(
        warnings(&["match.method = '.*'", "match.method = '^(MESSAGE|INVITE)$'"]).len(),
        1
    );
    assert_eq!(
        warnings(&[
            "match.method = '^(INVITE|MESSAGE)$'",
            "match.method = '^INVITE$'\nmatch.to = 'x'"
        ]),
        ["plan.toml:5:1: route[2] can never match: route[1] above it matches every INVITE"]
    );
    assert_eq!(warnings(&["", "match.method = '^INVITE$'"]).len(), 1);
    // Narrower sources, headers and transports.
    assert_eq!(
        warnings(&[
            "match.source = '10.0.0.0/8'",
            "match.source = '10.1.0.0/16'\nmatch.from = 'x'"
        ])
        .len(),
        1
    );
    assert_eq!(
        warnings(&["match.header.X-A = '^y'", "match.header.x-a = '^yes$'"]).len(),
        1
    );
    assert_eq!(
        warnings(&["match.transport = 'tcp|tls'", "match.transport = '^tls$'"]).len(),
        1
    );
    // Only the first rule that shadows is named, once per dead rule.
    assert_eq!(warnings(&["", "", ""]).len(), 2);
}

#[test]
fn rules_that_can_still_match_are_not_reported() {
    for plan in [
        // tel: and SIP: URIs reach the second rule.
        ["match.request_uri = '^sip:'", ""],
        [
            "match.request_uri = '^sip:1'",
            "match.request_uri = '^sip:(\\d+)@'",
        ],
        [
            "match.request_uri = '^sip:\\d+$'",
            "match.request_uri = '^sip:1'",
        ],
        [
            "match.request_uri = '(?i)^sip:'",
            "match.request_uri = 'sip:1'",
        ],
        // Other methods reach it.
        ["", "match.method = '^(INVITE|MESSAGE)$'"],
        ["", "match.method = 'INVITE'"],
        ["match.method = '^MESSAGE$'", ""],
        ["match.method = '^(INVITE|MESSAGE)$'", "match.method = '.'"],
        // Other sources, transports, headers.
        ["match.source = '10.0.0.0/8'", ""],
        [
            "match.source = '10.1.0.0/16'",
            "match.source = '10.0.0.0/8'",
        ],
        [
            "match.source = '0.0.0.0/0'",
            "match.source = '2001:db8::/32'",
        ],
        ["match.transport = 'tcp'", ""],
        ["match.header.X-A = '.*'", ""],
        ["match.header.X-A = '^y'", "match.header.X-B = '^yes$'"],
        ["match.from = 'alice'", "match.to = 'alice'"],
    ] {
        assert_eq!(warnings(&plan), Vec::<String>::new(), "{plan:?}");
    }
    assert!(Config::parse("t", PLAN).unwrap().warnings.is_empty());
}

fn targets_of(cfg: &Config, uri: &str) -> Result<Vec<String>, u16> {
    match cfg.plan.route(&invite(uri, &[]), &udp()) {
        RouteDecision::Targets { plan, .. } => Ok(plan
            .groups
            .iter()
            .flatten()
            .map(|t| t.uri.clone())
            .collect()),
        RouteDecision::Reject { status, .. } => Err(status.as_u16()),
        RouteDecision::Later | RouteDecision::Drop { .. } => {
            unreachable!("a dial plan answers at once")
        }
    }
}

#[test]
fn a_ruri_target_reaches_only_a_pinned_host_or_one_in_reach() {
    // The seed's example 1 as the README used to write it: the user part only.
    let open = Config::parse(
        "old.toml",
        "[[route]]\nname = \"example-1\"\nmatch.request_uri = '^sip:100@'\ntargets = [\"${ruri}\", \"sip:101@192.168.0.101\"]\n",
    )
    .unwrap();
    // An attacker's host is skipped; the plan's own next target is still tried.
    assert_eq!(
        targets_of(&open, "sip:100@203.0.113.66").unwrap(),
        ["sip:101@192.168.0.101"]
    );
    // A host the plan names is fine (the default reach).
    assert_eq!(
        targets_of(&open, "sip:100@192.168.0.101:5070")
            .unwrap()
            .len(),
        2
    );
    assert!(open
        .warnings
        .iter()
        .any(|w| w.message.contains("takes its host from the request")));
    // Pinned by match.request_uri: the original destination is called, others do not match.
    let pinned = Config::parse(
        "new.toml",
        "[[route]]\nname = \"example-1\"\nmatch.request_uri = '^sip:100@192\\.168\\.0\\.100(:5060)?$'\ntargets = [\"${ruri}\", \"sip:101@192.168.0.101\"]\n",
    )
    .unwrap();
    assert_eq!(
        targets_of(&pinned, "sip:100@192.168.0.100").unwrap(),
        ["sip:100@192.168.0.100", "sip:101@192.168.0.101"]
    );
    assert_eq!(targets_of(&pinned, "sip:100@203.0.113.66"), Err(404));
    assert!(pinned.warnings.is_empty(), "{:?}", pinned.warnings);
    // A reach list fences it too, per rule or for every rule; maddr is where it goes.
    let reach = Config::parse(
        "reach.toml",
        "[failover]\nreach = [\"192.168.0.0/24\", \"carrier.example.net\"]\n[[route]]\nmatch.request_uri = '^sip:(\\d+)@(.*)$'\ntargets = [\"sip:$1@$2\"]\n",
    )
    .unwrap();
    assert!(reach.warnings.is_empty(), "{:?}", reach.warnings);
    assert_eq!(targets_of(&reach, "sip:100@192.168.0.77").unwrap().len(), 1);
    assert_eq!(
        targets_of(&reach, "sip:100@carrier.example.net")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(targets_of(&reach, "sip:100@203.0.113.66"), Err(404));
    assert_eq!(
        targets_of(&reach, "sip:100@192.168.0.77;maddr=203.0.113.66"),
        Err(404)
    );
    let e = Config::parse("bad.toml", "[failover]\nreach = [\"not a host!\"]\n").unwrap_err();
    assert_eq!(e.key, "failover.reach");
}

#[test]
fn an_empty_server_section_gives_each_layers_own_defaults() {
    let cfg = Config::parse("t.toml", "").unwrap();
    let s = &cfg.server;
    // The one default the proxy sets over its layer's: Kamailio's 5 s linger.
    assert_eq!(
        s.txn_config(),
        rollover_txn::Config {
            linger: Some(crate::DEFAULT_LINGER),
            ..rollover_txn::Config::default()
        }
    );
    let (net, d) = (s.net_config(), rollover_net::NetConfig::default());
    assert_eq!(net.max_message_size, d.max_message_size);
    assert_eq!(net.connection_idle_timeout, d.connection_idle_timeout);
    assert_eq!(net.max_incoming_connections, d.max_incoming_connections);
    assert_eq!(net.max_outgoing_connections, d.max_outgoing_connections);
    assert_eq!(net.max_connections_per_ip, d.max_connections_per_ip);
    assert_eq!(net.header_timeout, d.header_timeout);
    assert_eq!(net.unused_connection_timeout, d.unused_connection_timeout);
    assert_eq!(s.limits(), rollover_sip::Limits::default());
    let p = cfg.proxy_config(Vec::new(), rollover_proxy::Secret::new(b"k"), 1);
    let d = rollover_proxy::ProxyConfig::default();
    assert_eq!(p.record_route, d.record_route);
    assert_eq!(p.timer_c, d.timer_c);
    assert_eq!(p.late_answer, d.late_answer);
    assert_eq!((p.udp_mtu, p.udp_mtu_try), (d.udp_mtu, d.udp_mtu_try));
}

#[test]
fn server_settings_reach_the_layers() {
    let cfg = Config::parse(
        "t.toml",
        "[server]\nt1 = \"250ms\"\ntimer_c = \"90s\"\nmax_message_size = 8192\nmax_connections_per_ip = 4\n",
    )
    .unwrap();
    assert_eq!(cfg.server.txn_config().t1, Duration::from_millis(250));
    assert_eq!(cfg.server.net_config().max_connections_per_ip, 4);
    assert_eq!(cfg.server.limits().max_message_size, 8192);
    let p = cfg.proxy_config(Vec::new(), rollover_proxy::Secret::new(b"k"), 1);
    assert_eq!(p.timer_c, Duration::from_secs(90));
}

#[test]
fn workers_and_linger() {
    let cfg = Config::parse("t", "[server]\nworkers = 3\nlinger = \"5s\"\n").unwrap();
    assert_eq!(cfg.server.workers, Some(3));
    assert_eq!(cfg.server.worker_count(), 3);
    assert_eq!(cfg.server.net_config().workers, 3);
    assert_eq!(cfg.server.txn_config().linger, Some(Duration::from_secs(5)));
    let cfg = Config::parse("t", "").unwrap();
    assert_eq!(cfg.server.workers, None, "one per core");
    assert!(cfg.server.worker_count() >= 1);
    assert_eq!(
        cfg.server.txn_config().linger,
        Some(Duration::from_secs(5)),
        "Kamailio's wait_timer"
    );
    let cfg = Config::parse("t", "[server]\nlinger = \"32s\"\n").unwrap();
    let txn = cfg.server.txn_config();
    assert_eq!(
        txn.lingering(txn.t1x64()),
        Duration::from_secs(32),
        "the RFC's"
    );
    let e = Config::parse("plan.toml", "[server]\nworkers = 0\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "server.workers"));
    let e = Config::parse("plan.toml", "[server]\n\nlinger = \"0.1s\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (3, "server.linger"));
    assert!(e.message.contains("wait_timer"), "{e}");
}

#[test]
fn the_script_section_names_a_file_relative_to_the_config() {
    let cfg = Config::parse("t.toml", "[script]\nfile = \"routes.lua\"\n").unwrap();
    let s = cfg.script.unwrap();
    assert_eq!(s.file, std::path::PathBuf::from("routes.lua"));
    assert!(Config::parse("t.toml", "").unwrap().script.is_none());
    let e = parse_err("[script]\nfile = \"routes.lua\"\nwatch = true\n");
    assert_eq!((e.line, e.key.as_str()), (3, "script.watch"), "{e}");
    let e = parse_err("[script]\nfile = \" \"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "script.file"), "{e}");
    let dir = std::env::temp_dir().join(format!("rollover-script-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rollover.toml");
    std::fs::write(&path, "[script]\nfile = \"routes.lua\"\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.script.unwrap().file, dir.join("routes.lua"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A target without a capture is parsed once at load; one with a capture, and the
/// `location:` placeholder, are made per call; each routes to what it routed to before.
#[test]
fn targets_without_captures_are_parsed_once_at_load() {
    let fixed = Template::new("sip:100@192.0.2.10:5070;transport=tcp".to_owned());
    assert_eq!(
        fixed.fixed,
        Some(Target::parse("sip:100@192.0.2.10:5070;transport=tcp").unwrap())
    );
    assert!(Template::new("sip:${1}@192.0.2.10".to_owned())
        .fixed
        .is_none());
    assert!(Template::new(LOCATION_TARGET.to_owned()).fixed.is_none());
    let plan = Config::parse(
        "t.toml",
        r#"
[[route]]
name = "r"
match.request_uri = '^sip:(\d+)@'
targets = ["sip:100@192.0.2.10", "sip:$1@192.0.2.11/TCP"]
"#,
    )
    .unwrap()
    .plan;
    let RouteDecision::Targets { plan, .. } = plan
        .explain(&invite("sip:42@example.com", &[]), &udp())
        .decision
    else {
        panic!("not routed");
    };
    let got: Vec<Target> = plan.groups.into_iter().flatten().collect();
    assert_eq!(
        got,
        [
            Target::parse("sip:100@192.0.2.10").unwrap(),
            Target::parse("sip:42@192.0.2.11/TCP").unwrap()
        ]
    );
}
