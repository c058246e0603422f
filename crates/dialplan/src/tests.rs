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
    assert!(policy.on_response.rolls_over(404) && !policy.on_response.rolls_over(503));
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
            assert_eq!((status, reason.as_str()), (480, "Gone Fishing"))
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
    assert_eq!((e.line, e.key.as_str()), (2, "route[1].targets"));

    let bad = "[server]\nlisten = [\"udp:127.0.0.1\"]\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "server.listen"));

    let bad = "[failover]\nno_respons_timeout = 3\n";
    let e = Config::parse("plan.toml", bad).unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(e.key, "no_respons_timeout");

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
        RouteDecision::Reject { status, .. } => status,
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
