//! `[registrar]`, `[store]` and the `location:` target.

use super::*;
use rollover_sip::{Method, RequestBuilder};

const PLAN: &str = r#"
[registrar]
domains = ["Example.COM"]
min_expires = 30
max_contacts = 3

[[route]]
name = "users"
match.request_uri = '@example\.com'
targets = ["location:", "sip:vm@127.0.0.1:5090"]
"#;

#[test]
fn registrar_and_store_sections() {
    let cfg = Config::parse("t.toml", PLAN).unwrap();
    let r = cfg.registrar.unwrap();
    assert_eq!(r.domains, ["example.com"]);
    assert_eq!(
        (r.min_expires, r.max_expires, r.max_contacts),
        (30, 3600, 3)
    );
    assert_eq!(cfg.store.path, PathBuf::from("rollover-data"));
    assert_eq!(cfg.store.url, None);
    let none = Config::parse("t.toml", "").unwrap();
    assert!(none.registrar.is_none());
}

#[test]
fn store_url_must_be_redis() {
    let e = Config::parse("t.toml", "[store]\nurl = \"http://x\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "store.url"));
    let ok = Config::parse("t.toml", "[store]\nurl = \"redis://127.0.0.1:6379/0\"\n").unwrap();
    assert_eq!(ok.store.url.as_deref(), Some("redis://127.0.0.1:6379/0"));
}

#[test]
fn bad_domain_is_located() {
    let e = Config::parse("t.toml", "[registrar]\ndomains = [\"a@b\"]\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "registrar.domains"));
}

#[test]
fn location_target_routes_as_its_placeholder() {
    let cfg = Config::parse("t.toml", PLAN).unwrap();
    let req = Message::parse(
        RequestBuilder::new(Method::Invite, "sip:alice@example.com")
            .via("SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-1")
            .from("<sip:bob@example.com>;tag=1")
            .to("<sip:alice@example.com>")
            .call_id("c")
            .cseq(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let src = Peer {
        transport: Transport::Udp,
        addr: "10.1.2.3:5060".parse().unwrap(),
    };
    let RouteDecision::Targets { plan, .. } = cfg.plan.route(&req, &src) else {
        panic!("not routed");
    };
    assert_eq!(plan.groups.len(), 2);
    assert!(is_location_target(&plan.groups[0][0]));
    assert_eq!(plan.groups[1][0].uri, "sip:vm@127.0.0.1:5090");
}

#[test]
fn auth_section() {
    let d = Config::parse("t.toml", "").unwrap().auth;
    assert_eq!(d.require, None);
    assert_eq!(d.algorithms, ["SHA-256", "MD5"]);
    let cfg = Config::parse(
        "t.toml",
        "[auth]\nrequire = true\nnonce_ttl = \"1m\"\nmax_failures = 3\nblock_time = \"10s\"\nalgorithms = [\"md5\"]\n",
    )
    .unwrap()
    .auth;
    assert_eq!(cfg.require, Some(true));
    assert_eq!(cfg.nonce_ttl, std::time::Duration::from_secs(60));
    assert_eq!((cfg.max_failures, cfg.block_time.as_secs()), (3, 10));
    assert_eq!(cfg.algorithms, ["MD5"]);
    let e = Config::parse("t.toml", "[auth]\nalgorithms = [\"SHA-512\"]\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "auth.algorithms"));
}

#[test]
fn location_without_a_registrar_is_refused() {
    let e = Config::parse(
        "t.toml",
        "[[route]]\nname = \"x\"\ntargets = [\"sip:a@192.0.2.1\", \"location:\"]\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (3, "route[1].targets[2]"));
}
