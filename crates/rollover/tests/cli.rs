//! `rollover check`, `route`, `simulate` and `parse` through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
// The shared harness (`support`) reads the wall clock: these tests run the real binary.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::Dir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn simulate(config: &str, world: &str) -> (i32, String) {
    let (code, out, err) = run(&[
        "simulate",
        "-c",
        config,
        "-r",
        "sip:100@192.168.0.100",
        "-w",
        world,
    ]);
    assert!(err.is_empty(), "{err}");
    (code, out)
}

/// The line index of the first line containing `needle`.
fn at(out: &str, needle: &str) -> usize {
    out.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{out}"))
}

#[test]
fn simulate_seed_1_error_rolls_over_to_101() {
    let (code, out) = simulate("examples/seed-1-basic.toml", "100=486@1s 101=180@1s,200@3s");
    assert_eq!(code, 0, "{out}");
    assert!(
        at(&out, "→ INVITE sip:100@192.168.0.100") < at(&out, "→ INVITE sip:101@192.168.0.101")
    );
    assert!(
        out.contains("1.000s    left sip:100@192.168.0.100: 486 matched pattern"),
        "{out}"
    );
    assert!(out.contains("final: 200"));
}

#[test]
fn simulate_seed_2_uses_tcp() {
    let (code, out) = simulate("examples/seed-2-transport.toml", "100=unreachable 101=200");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("transport error"), "{out}");
    assert!(
        out.contains("sip:101@192.168.0.101 (TCP) answered 200"),
        "{out}"
    );
}

#[test]
fn simulate_seed_3_waits_30_seconds() {
    let (code, out) = simulate("examples/seed-3-timer.toml", "100=silence 101=200");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("30.000s    left sip:100@192.168.0.100: no response within 30s"),
        "{out}"
    );
    assert!(
        out.contains("30.000s  → INVITE sip:101@192.168.0.101"),
        "{out}"
    );
}

#[test]
fn simulate_seed_4_pattern() {
    let (code, out) = simulate("examples/seed-4-pattern.toml", "100=404 101=200");
    assert_eq!(code, 0, "{out}");
    let (code, out) = simulate("examples/seed-4-pattern.toml", "100=503@2s 101=200");
    assert_eq!(code, 0, "503 always rolls over: {out}");
    let (code, out) = simulate("examples/seed-4-pattern.toml", "100=500 101=200");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("final: 500"));
}

#[test]
fn simulate_seed_5_redirect() {
    let world = "100=302(sip:200@192.168.0.50;q=0.5,sip:300@192.168.0.60;q=1) 300=486 200=200@1s";
    let (code, out) = simulate("examples/seed-5-redirect.toml", world);
    assert_eq!(code, 1, "486 from 300 does not match 30.: {out}");
    assert!(
        out.contains("redirected to [sip:300@192.168.0.60, sip:200@192.168.0.50]"),
        "{out}"
    );
    let world = "100=302(sip:200@192.168.0.50;q=0.5,sip:300@192.168.0.60;q=1) 300=302(sip:200@192.168.0.50) 200=200@1s";
    let (code, out) = simulate("examples/seed-5-redirect.toml", world);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(1 contact(s) dropped)"),
        "the tried/queued target is dropped: {out}"
    );
}

#[test]
fn simulate_late_2xx_after_the_no_response_timer() {
    let (code, out) = simulate("examples/seed-1-basic.toml", "100=200@12s 101=180@1s");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("10.000s  → INVITE sip:101@192.168.0.101"),
        "{out}"
    );
    assert!(out.contains("12.000s  caller ← SIP/2.0 200"), "{out}");
    assert!(
        out.contains("12.000s  → CANCEL sip:101@192.168.0.101 (Reason: SIP;cause=200"),
        "{out}"
    );
}

#[test]
fn simulate_rejects_a_bad_world() {
    let (code, _, err) = run(&[
        "simulate",
        "-c",
        "examples/seed-1-basic.toml",
        "-r",
        "sip:100@h",
        "-w",
        "100=soon",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--world"), "{err}");
}

#[test]
fn check_prints_the_plan_and_names_errors() {
    let (code, out, _) = run(&["check", "-c", "examples/seed-4-pattern.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("on_response=\"4..\""), "{out}");
    let temp = Dir::new("check");
    let dir = temp.root();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[route]]\ntargets = [\"sip:a@h\"]\nmode = \"random\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml:3:") && err.contains("route[1].mode"),
        "{err}"
    );
}

#[test]
fn check_warns_about_a_rule_after_a_catch_all_and_names_a_missing_capture() {
    let temp = Dir::new("dead");
    let dir = temp.root();
    let dead = dir.join("dead.toml");
    std::fs::write(
        &dead,
        "[[route]]\nname = \"catch-all\"\ntargets = [\"sip:a@192.0.2.1\"]\n\n[[route]]\nname = \"sales\"\nmatch.request_uri = '^sip:sales@'\nreject = 480\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "-c", dead.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning is not an error: {err}");
    assert!(
        out.contains(&format!(
            "warning: {}:5:1: route[2] \"sales\" can never match: route[1] \"catch-all\" above it matches every INVITE",
            dead.display()
        )),
        "{out}"
    );
    let missing = dir.join("missing.toml");
    std::fs::write(
        &missing,
        "[[route]]\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$2@192.0.2.1\"]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "-c", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("missing.toml:3:17: route[1].targets[1]: capture $2 does not exist")
            && err.contains("$0, $1, ${ruri}"),
        "{err}"
    );
    for example in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = example.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = run(&["check", "-c", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {err}", path.display());
            assert!(!out.contains("warning:"), "{}: {out}", path.display());
        }
    }
}

#[test]
fn route_is_a_dry_run() {
    let (code, out, _) = run(&[
        "route",
        "-c",
        "examples/seed-2-transport.toml",
        "-r",
        "sip:100@192.168.0.100",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("rule: example-2"));
    assert!(
        out.contains("2. sip:101@192.168.0.101 (TCP) [TCP]"),
        "{out}"
    );
    let (_, out, _) = run(&[
        "route",
        "-c",
        "examples/seed-2-transport.toml",
        "-r",
        "sip:999@192.168.0.100",
    ]);
    assert!(out.contains("reject: 404"), "{out}");
}

/// A request file in `dir`; lines joined with CRLF.
fn request_file(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\r\n\r\n", lines.join("\r\n"))).unwrap();
    p
}

#[test]
fn route_takes_the_live_path_for_in_dialog_and_route_bearing_requests() {
    let secret = "cli-test-secret-0123456789";
    let temp = Dir::new("route");
    let dir = temp.root();
    let cfg = dir.join("plan.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp:127.0.0.1:5060\"]\n[security]\nsecret = \"{secret}\"\ntrusted = [\"10.0.0.0/8\"]\n[[route]]\nname = \"digits\"\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@192.0.2.10\"]\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let head = |m: &str, ruri: &str, to: &str, extra: &str| {
        vec![
            format!("{m} {ruri} SIP/2.0"),
            "Via: SIP/2.0/UDP 198.51.100.66:5060;branch=z9hG4bK-cli".into(),
            "Max-Forwards: 70".into(),
            "From: <sip:a@example.com>;tag=ft".into(),
            format!("To: <sip:b@example.com>{to}"),
            "Call-ID: cli-call".into(),
            format!("CSeq: 2 {m}"),
            extra.into(),
            "Content-Length: 0".into(),
        ]
    };
    let file = |name: &str, lines: Vec<String>| {
        let refs: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| !l.is_empty())
            .collect();
        request_file(dir, name, &refs).to_str().unwrap().to_owned()
    };
    // An in-dialog BYE to an outside host, with no Route of ours: refused as the proxy would.
    let bye = file("bye", head("BYE", "sip:x@203.0.113.66", ";tag=tt", ""));
    let (code, out, _) = run(&[
        "route",
        "-c",
        cfg,
        "-r",
        &bye,
        "--source",
        "198.51.100.66:5060",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("refused: 404 (in-dialog BYE"), "{out}");
    assert!(!out.contains("→ BYE"), "{out}");
    // The same from a trusted source is relayed on its word.
    let (_, out, _) = run(&["route", "-c", cfg, "-r", &bye, "--source", "10.1.2.3:5060"]);
    assert!(
        out.contains("relayed on the trusted source's route to sip:x@203.0.113.66"),
        "{out}"
    );
    assert!(out.contains("→ BYE sip:x@203.0.113.66"), "{out}");
    // With the Route this proxy recorded (its token), the BYE follows the route set.
    let token = rollover_proxy::Secret::new(secret.as_bytes()).route_token("cli-call", "ft");
    let route = format!("Route: <sip:127.0.0.1:5060;lr;tk={token}>");
    let ok = file("bye-ok", head("BYE", "sip:b@192.0.2.20", ";tag=tt", &route));
    let (_, out, _) = run(&[
        "route",
        "-c",
        cfg,
        "-r",
        &ok,
        "--source",
        "198.51.100.66:5060",
    ]);
    assert!(
        out.contains("relayed along the route set to sip:b@192.0.2.20"),
        "{out}"
    );
    // A stranger's preloaded Route is removed and the plan decides.
    let inv = file(
        "inv",
        head(
            "INVITE",
            "sip:100@127.0.0.1",
            "",
            "Route: <sip:203.0.113.66;lr>",
        ),
    );
    let (_, out, _) = run(&[
        "route",
        "-c",
        cfg,
        "-r",
        &inv,
        "--source",
        "198.51.100.66:5060",
    ]);
    assert!(out.contains("removed 1 preloaded Route entry"), "{out}");
    assert!(out.contains("→ INVITE sip:100@192.0.2.10"), "{out}");
    assert!(out.contains("rule: digits"), "{out}");
}

#[test]
fn check_warns_about_an_unfenced_ruri_target() {
    // The seed's example 1 as the README used to write it: only the user part matched.
    let temp = Dir::new("unfenced");
    let dir = temp.root();
    let old = dir.join("old-seed-1.toml");
    let text = std::fs::read_to_string(root().join("examples/seed-1-basic.toml"))
        .unwrap()
        .replace(r"'^sip:100@192\.168\.0\.100(:5060)?$'", "'^sip:100@'");
    assert!(text.contains("'^sip:100@'"));
    std::fs::write(&old, text).unwrap();
    let (code, out, _) = run(&["check", "-c", old.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning:") && out.contains("takes its host from the request"),
        "{out}"
    );
    // The example as shipped pins the host: no warning.
    let (code, out, _) = run(&["check", "-c", "examples/seed-1-basic.toml"]);
    assert_eq!(code, 0);
    assert!(!out.contains("warning:"), "{out}");
    // And an attacker's host does not reach it.
    let (_, out, _) = run(&[
        "route",
        "-c",
        "examples/seed-1-basic.toml",
        "-r",
        "sip:100@203.0.113.66",
    ]);
    assert!(out.contains("reject: 404"), "{out}");
    assert!(!out.contains("→ INVITE sip:100@203.0.113.66"), "{out}");
}

#[test]
fn parse_accepts_and_rejects_torture_vectors() {
    let (code, out, _) = run(&["parse", "crates/sip/tests/rfc4475/TC_WSINV.dat"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Call-ID: wsinv.ndaksdj@192.0.2.1") && out.ends_with("accepted\n"),
        "{out}"
    );
    let (code, out, _) = run(&["parse", "crates/sip/tests/rfc4475/TC_BADVERS_V.dat"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("unsupported SIP version at byte 33") && out.contains("505"),
        "{out}"
    );
}

#[test]
fn simulate_runs_a_routing_script() {
    let (code, out, err) = run(&[
        "simulate",
        "-c",
        "examples/lua/voicemail.toml",
        "-r",
        "sip:100@192.168.0.100",
        "-w",
        "100=180@1s,486@3s vm=200@1s",
    ]);
    assert!(err.is_empty(), "{err}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("voicemail.lua:request_route"), "{out}");
    assert!(
        at(&out, "← SIP/2.0 486 Busy Here") < at(&out, "→ INVITE sip:vm@voicemail.example.com"),
        "{out}"
    );
    assert!(!out.contains("caller ← SIP/2.0 486"), "{out}");
    assert!(out.contains("final: 200"), "{out}");
}

#[test]
fn check_loads_the_script_and_reports_its_errors_with_file_and_line() {
    let (code, out, err) = run(&["check", "-c", "examples/lua/lcr.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("script: ") && out.contains("lcr.lua: ok"),
        "{out}"
    );

    let dir = std::env::temp_dir().join(format!("rollover-cli-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("routes.lua"),
        "function request_route(req)\n  req:relay(\nend\n",
    )
    .unwrap();
    let cfg = dir.join("rollover.toml");
    std::fs::write(&cfg, "[script]\nfile = \"routes.lua\"\n").unwrap();
    let (code, out, err) = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let want = format!(
        "{}:3: unexpected symbol near 'end'",
        dir.join("routes.lua").display()
    );
    assert!(err.contains(&want), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fenced block of `lang` that follows `heading` in the README.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split_once(heading).unwrap().1;
    let fence = format!("```{lang}\n");
    let block = section.split_once(&fence).unwrap().1;
    block.split_once("```").unwrap().0.to_owned()
}

#[test]
fn the_readme_routing_script_runs_as_written() {
    let dir = std::env::temp_dir().join(format!("rollover-cli-readme-lua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("voicemail.lua"),
        readme_block("## Routing scripts", "lua"),
    )
    .unwrap();
    let cfg = dir.join("voicemail.toml");
    std::fs::write(&cfg, readme_block("## Routing scripts", "toml")).unwrap();
    let (code, out, err) = run(&[
        "simulate",
        "-c",
        cfg.to_str().unwrap(),
        "-r",
        "sip:100@192.168.0.100",
        "-w",
        "100=180@1s,486@3s vm=200@1s",
    ]);
    assert!(err.is_empty(), "{err}");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("→ INVITE sip:vm@voicemail.example.com"),
        "{out}"
    );
    assert!(out.contains("final: 200"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn route_shows_where_a_script_sends_the_request() {
    let (code, out, err) = run(&[
        "route",
        "-c",
        "examples/lua/lcr.toml",
        "-r",
        "sip:004930123@192.168.0.100",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("→ INVITE sip:10104930123@cheap.example.net [UDP]"),
        "{out}"
    );
    assert!(out.contains("script: examples/lua/lcr.lua"), "{out}");
}
