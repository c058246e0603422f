//! The seed's examples, each as shipped in `examples/`, with addresses and timers scaled.

use super::*;

/// A caller scenario whose INVITE goes to `sip:100@127.0.0.1:{port}` (through the proxy),
/// so the example's `${ruri}` target is that callee.
fn dialling(scenario: PathBuf, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(&scenario).unwrap().replace(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
        &format!("INVITE sip:[service]@127.0.0.1:{port} SIP/2.0"),
    );
    std::fs::write(&scenario, text).unwrap();
    scenario
}

/// The example's pinned Request-URI host (192.168.0.100) becomes the first callee's.
fn pinned_at(port: u16) -> (&'static str, String) {
    (r"192\.168\.0\.100(:5060)?", format!(r"127\.0\.0\.1:{port}"))
}

fn example(name: &str, subst: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let mut text = std::fs::read_to_string(path).unwrap();
    text = text
        .replace("udp:127.0.0.1:5060", "udp:{{PROXY}}")
        .replace("tcp:127.0.0.1:5060", "tcp:{{PROXY}}");
    for (from, to) in subst {
        assert!(text.contains(from), "{name} lacks {from}");
        text = text.replace(from, to);
    }
    text
}

#[test]
fn example_1_error_then_next_target() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("seed1");
    let (_a, p100) = callee(
        &dir,
        "100",
        &reject_scenario(&dir, "a.xml", "480", "Temporarily Unavailable", "0", ""),
        1,
        "u1",
    );
    let (_b, p101) = callee(
        &dir,
        "101",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let cfg = example(
        "seed-1-basic.toml",
        &[
            pinned_at(p100),
            ("192.168.0.101", format!("127.0.0.1:{p101}")),
            ("192.168.0.102", "127.0.0.1:9".into()),
        ],
    );
    let proxy = Proxy::start(&dir, &cfg);
    // The caller dials sip:100@<the first callee>: `${ruri}` sends it there first.
    let uac = dialling(
        dir.scenario("uac_answered.xml", "uac.xml", &[("HOLD_MS", "100")]),
        p100,
    );
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(proxy
        .log_text()
        .contains(&format!("sip:101@127.0.0.1:{p101} answered 200")));
}

#[test]
fn example_2_failover_target_over_tcp() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("seed2");
    let (_a, p100) = callee(
        &dir,
        "100",
        &reject_scenario(&dir, "a.xml", "503", "Service Unavailable", "0", ""),
        1,
        "u1",
    );
    let (_b, p101) = callee(
        &dir,
        "101",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "t1",
    );
    let cfg = example(
        "seed-2-transport.toml",
        &[
            pinned_at(p100),
            ("192.168.0.101", format!("127.0.0.1:{p101}")),
            ("192.168.0.102", "127.0.0.1:9".into()),
        ],
    );
    let proxy = Proxy::start(&dir, &cfg);
    let uac = dialling(
        dir.scenario("uac_answered.xml", "uac.xml", &[("HOLD_MS", "100")]),
        p100,
    );
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(
        proxy
            .log_text()
            .contains(&format!("sip:101@127.0.0.1:{p101} (TCP) answered 200")),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn example_3_inviting_timer() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("seed3");
    let silent = dir.scenario("uas_silent.xml", "a.xml", &[("HOLD_MS", "4000")]);
    let (_a, p100) = callee(&dir, "100", &silent, 1, "u1");
    let (_b, p101) = callee(
        &dir,
        "101",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let cfg = example(
        "seed-3-timer.toml",
        &[
            pinned_at(p100),
            ("192.168.0.101", format!("127.0.0.1:{p101}")),
            ("192.168.0.102", "127.0.0.1:9".into()),
            (
                "no_response_timeout = 30",
                "no_response_timeout = \"1.5s\"".into(),
            ),
        ],
    );
    let proxy = Proxy::start(&dir, &cfg);
    let uac = dialling(
        dir.scenario("uac_answered.xml", "uac.xml", &[("HOLD_MS", "100")]),
        p100,
    );
    let start = Instant::now();
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert!(
        proxy.log_text().contains("no response within 1.5s"),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn example_4_only_4xx_rolls_over() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("seed4");
    let (_a, p100) = callee(
        &dir,
        "100",
        &reject_scenario(&dir, "a.xml", "404", "Not Found", "0", ""),
        1,
        "u1",
    );
    let (_b, p101) = callee(
        &dir,
        "101",
        &answer_scenario(&dir, "b.xml", "0", "100"),
        1,
        "u1",
    );
    let cfg = example(
        "seed-4-pattern.toml",
        &[
            pinned_at(p100),
            ("192.168.0.101", format!("127.0.0.1:{p101}")),
        ],
    );
    let proxy = Proxy::start(&dir, &cfg);
    let uac = dialling(
        dir.scenario("uac_answered.xml", "uac.xml", &[("HOLD_MS", "100")]),
        p100,
    );
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(proxy.log_text().contains("404 matched pattern \"4..\""));

    // A 5xx does not match 4..: it goes back to the caller.
    let dir = Dir::new("seed4b");
    let (_a, p100) = callee(
        &dir,
        "100",
        &reject_scenario(&dir, "a.xml", "500", "Server Internal Error", "0", ""),
        1,
        "u1",
    );
    let cfg = example(
        "seed-4-pattern.toml",
        &[
            pinned_at(p100),
            ("192.168.0.101", "127.0.0.1:9".to_string()),
        ],
    );
    let proxy = Proxy::start(&dir, &cfg);
    let uac = dialling(rejected_caller(&dir, "500"), p100);
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(proxy.log_text().contains("does not match the pattern"));
}

#[test]
fn example_5_redirect_followed() {
    if !sipp_available() {
        return;
    }
    let dir = Dir::new("seed5");
    let (_t, pt) = callee(
        &dir,
        "target",
        &answer_scenario(&dir, "t.xml", "0", "100"),
        1,
        "u1",
    );
    let contacts = format!("Contact: <sip:200@127.0.0.1:{pt}>\n");
    let (_a, p100) = callee(
        &dir,
        "100",
        &reject_scenario(&dir, "a.xml", "302", "Moved Temporarily", "0", &contacts),
        1,
        "u1",
    );
    let cfg = example("seed-5-redirect.toml", &[pinned_at(p100)]);
    let proxy = Proxy::start(&dir, &cfg);
    let uac = dialling(
        dir.scenario("uac_answered.xml", "uac.xml", &[("HOLD_MS", "100")]),
        p100,
    );
    assert!(caller(&dir, &proxy, &uac, 1, 1));
    assert!(proxy
        .log_text()
        .contains(&format!("redirected to [sip:200@127.0.0.1:{pt}]")));
}
