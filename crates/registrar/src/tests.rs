//! The binding rules of RFC 3261 §10.3, step by step, and the SQLite store.

use bytes::Bytes;
use rollover_sip::Message;
use rollover_txn::{Peer, Transport};

use crate::rules::{aor_of_register, ok_response, register, Refusal, Rules};
use crate::{q_groups, Binding, Location, SqliteStore, Store};

const NOW: u64 = 1_000_000;

fn rules() -> Rules {
    Rules {
        domains: vec!["example.com".into()],
        max_contacts: 3,
        ..Rules::default()
    }
}

fn source() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5070".parse().unwrap(),
    }
}

/// A REGISTER for alice with these extra header lines.
fn reg(call_id: &str, cseq: u32, extra: &[&str]) -> Message {
    let mut s = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).unwrap()
}

fn apply(current: &[Binding], req: &Message) -> Result<Vec<Binding>, Refusal> {
    register(
        &rules(),
        NOW,
        "sip:alice@example.com",
        req,
        &source(),
        current,
    )
}

fn contacts(b: &[Binding]) -> Vec<&str> {
    b.iter().map(|b| b.contact.as_str()).collect()
}

#[test]
fn step5_the_aor_is_the_to_uri_in_our_domain() {
    assert_eq!(
        aor_of_register(&rules(), &reg("c", 1, &[])).unwrap(),
        "sip:alice@example.com"
    );
    let mut other = rules();
    other.domains = vec!["example.org".into()];
    assert_eq!(
        aor_of_register(&other, &reg("c", 1, &[])),
        Err(Refusal::UnknownAor)
    );
}

#[test]
fn step2_require_other_than_path_is_420() {
    let r = apply(&[], &reg("c", 1, &["Require: path, foo"]));
    assert_eq!(r, Err(Refusal::Unsupported("foo".into())));
    let bytes = r.unwrap_err().response(&reg("c", 1, &[]));
    let resp = Message::parse(bytes).unwrap();
    assert_eq!(resp.status(), Some(420));
}

#[test]
fn add_refresh_and_query() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:alice@127.0.0.1:5070>", "Expires: 600"],
        ),
    )
    .unwrap();
    assert_eq!(contacts(&b), ["sip:alice@127.0.0.1:5070"]);
    assert_eq!(b[0].expires_at, NOW + 600);
    assert_eq!(b[0].q, 1000);
    assert_eq!(b[0].received, Some(source()));
    // Refresh, same Call-ID, higher CSeq: the expiry moves, still one binding.
    let b2 = apply(
        &b,
        &reg("c", 2, &["Contact: <sip:alice@127.0.0.1:5070>;expires=900"]),
    )
    .unwrap();
    assert_eq!(b2.len(), 1);
    assert_eq!(b2[0].expires_at, NOW + 900);
    // A query (no Contact) changes nothing and lists the binding.
    let q = reg("c", 3, &[]);
    let b3 = apply(&b2, &q).unwrap();
    assert_eq!(b3, b2);
    let resp = Message::parse(ok_response(&q, &b3, NOW + 100)).unwrap();
    assert_eq!(resp.status(), Some(200));
    let listed: Vec<String> = resp
        .contacts()
        .map(|c| c.unwrap().params.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["expires=800"]);
}

#[test]
fn expires_parameter_wins_over_header_and_is_capped() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &[
                "Contact: <sip:a@127.0.0.1:1>;expires=120, <sip:b@127.0.0.1:2>, <sip:c@127.0.0.1:3>;expires=99999",
                "Expires: 300",
            ],
        ),
    )
    .unwrap();
    let left: Vec<u64> = b.iter().map(|b| b.remaining(NOW)).collect();
    assert_eq!(left, [120, 300, 3600]);
    // No expiry anywhere: the default.
    let d = apply(&[], &reg("d", 1, &["Contact: <sip:a@127.0.0.1:1>"])).unwrap();
    assert_eq!(d[0].remaining(NOW), 3600);
}

#[test]
fn too_brief_is_423_with_min_expires_and_changes_nothing() {
    let r = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>, <sip:b@127.0.0.1:2>;expires=10"],
        ),
    );
    assert_eq!(r, Err(Refusal::TooBrief(60)));
    let resp = Message::parse(r.unwrap_err().response(&reg("c", 1, &[]))).unwrap();
    assert_eq!(resp.status(), Some(423));
    let h = resp.headers_by_name("Min-Expires").next().unwrap();
    assert_eq!(resp.value_str(h).unwrap(), "60");
}

#[test]
fn expires_zero_removes_one_contact() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>, <sip:b@127.0.0.1:2>"],
        ),
    )
    .unwrap();
    let b = apply(
        &b,
        &reg("c", 2, &["Contact: <sip:a@127.0.0.1:1>;expires=0"]),
    )
    .unwrap();
    assert_eq!(contacts(&b), ["sip:b@127.0.0.1:2"]);
}

/// The front door checks a Contact for shape only: one whose URI does not decode reaches
/// the registrar, which refuses the whole REGISTER and changes nothing.
#[test]
fn a_contact_that_does_not_decode_refuses_the_register() {
    let b = apply(&[], &reg("c", 1, &["Contact: <sip:a@127.0.0.1:1>"])).unwrap();
    let bad = reg("c", 2, &["Contact: <sip:b@127.0.0.1:2>, <sip:x@h@y>"]);
    assert!(bad.validate().is_ok());
    assert!(matches!(apply(&b, &bad), Err(Refusal::Malformed(_))));
}

#[test]
fn star_removes_all_only_with_expires_zero() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>, <sip:b@127.0.0.1:2>"],
        ),
    )
    .unwrap();
    assert!(matches!(
        apply(&b, &reg("c", 2, &["Contact: *"])),
        Err(Refusal::Malformed(_))
    ));
    assert!(matches!(
        apply(
            &b,
            &reg("c", 2, &["Contact: *, <sip:a@127.0.0.1:1>", "Expires: 0"])
        ),
        Err(Refusal::Malformed(_))
    ));
    // Same Call-ID, CSeq not higher: refused.
    assert_eq!(
        apply(&b, &reg("c", 1, &["Contact: *", "Expires: 0"])),
        Err(Refusal::OutOfOrder)
    );
    assert_eq!(
        apply(&b, &reg("other", 1, &["Contact: *", "Expires: 0"])).unwrap(),
        []
    );
}

#[test]
fn step7_call_id_and_cseq_ordering() {
    let b = apply(&[], &reg("c", 5, &["Contact: <sip:a@127.0.0.1:1>"])).unwrap();
    // Same Call-ID, lower CSeq: a reordered request, refused.
    assert_eq!(
        apply(
            &b,
            &reg("c", 4, &["Contact: <sip:a@127.0.0.1:1>;expires=0"])
        ),
        Err(Refusal::OutOfOrder)
    );
    // Same Call-ID and CSeq: a retransmission, the binding stays as it is.
    let again = apply(
        &b,
        &reg("c", 5, &["Contact: <sip:a@127.0.0.1:1>;expires=0"]),
    )
    .unwrap();
    assert_eq!(again, b);
    // Another Call-ID (the phone rebooted): updated whatever the CSeq.
    let other = apply(
        &b,
        &reg("new", 1, &["Contact: <sip:a@127.0.0.1:1>;expires=120"]),
    )
    .unwrap();
    assert_eq!(other[0].call_id, "new");
    assert_eq!(other[0].remaining(NOW), 120);
}

#[test]
fn contacts_compare_by_uri_rules() {
    let b = apply(&[], &reg("c", 1, &["Contact: <sip:a@EXAMPLE.net:1>"])).unwrap();
    let b = apply(&b, &reg("c", 2, &["Contact: <sip:a@example.net:1>;q=0.5"])).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].q, 500);
}

#[test]
fn max_contacts_refused_clearly() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>, <sip:b@127.0.0.1:2>, <sip:c@127.0.0.1:3>"],
        ),
    )
    .unwrap();
    let r = apply(&b, &reg("c", 2, &["Contact: <sip:d@127.0.0.1:4>"]));
    assert_eq!(r, Err(Refusal::TooManyContacts(3)));
    let resp = Message::parse(r.unwrap_err().response(&reg("c", 2, &[]))).unwrap();
    assert_eq!(resp.status(), Some(403));
    assert!(resp.headers_by_name("Warning").next().is_some());
}

#[test]
fn expired_bindings_are_dropped_and_never_targets() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>;expires=60, <sip:b@127.0.0.1:2>"],
        ),
    )
    .unwrap();
    assert_eq!(q_groups(&b, NOW + 61).len(), 1);
    let later = register(
        &rules(),
        NOW + 61,
        "sip:alice@example.com",
        &reg("c", 2, &[]),
        &source(),
        &b,
    )
    .unwrap();
    assert_eq!(contacts(&later), ["sip:b@127.0.0.1:2"]);
}

#[test]
fn path_is_stored_and_echoed_when_supported() {
    let req = reg(
        "c",
        1,
        &[
            "Contact: <sip:a@127.0.0.1:1>",
            "Path: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>",
            "Supported: path",
        ],
    );
    let b = apply(&[], &req).unwrap();
    assert_eq!(
        b[0].path,
        ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    let resp = Message::parse(ok_response(&req, &b, NOW)).unwrap();
    assert!(resp.headers_by_name("Path").next().is_some());
}

#[test]
fn q_groups_descend_and_keep_registration_order() {
    let b = apply(
        &[],
        &reg(
            "c",
            1,
            &["Contact: <sip:a@127.0.0.1:1>, <sip:c@127.0.0.1:3>;q=0.5, <sip:b@127.0.0.1:2>;q=1.0"],
        ),
    )
    .unwrap();
    let g: Vec<Vec<String>> = q_groups(&b, NOW)
        .into_iter()
        .map(|g| g.into_iter().map(|t| t.uri).collect())
        .collect();
    assert_eq!(
        g,
        [
            vec![
                "sip:a@127.0.0.1:1".to_owned(),
                "sip:b@127.0.0.1:2".to_owned()
            ],
            vec!["sip:c@127.0.0.1:3".to_owned()]
        ]
    );
}

#[test]
fn sqlite_store_keeps_bindings_across_opens() {
    let dir = std::env::temp_dir().join(format!("rollover-reg-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let req = reg(
        "c",
        1,
        &[
            "Contact: <sip:a@127.0.0.1:1>;q=0.5, <sip:b@127.0.0.1:2>;expires=60",
            "Path: <sip:edge.example.com;lr>",
        ],
    );
    {
        let mut loc = Location::new(rules(), SqliteStore::open(&dir).unwrap());
        let resp = Message::parse(loc.handle_register(NOW, &req, &source())).unwrap();
        assert_eq!(resp.status(), Some(200));
        assert_eq!(resp.contacts().count(), 2);
    }
    let mut store = SqliteStore::open(&dir).unwrap();
    let b = store.load("sip:alice@example.com").unwrap();
    assert_eq!(contacts(&b), ["sip:a@127.0.0.1:1", "sip:b@127.0.0.1:2"]);
    assert_eq!(b[0].q, 500);
    assert_eq!(b[0].path, ["<sip:edge.example.com;lr>"]);
    assert_eq!(b[0].received, Some(source()));
    assert_eq!(store.purge(NOW + 61).unwrap(), 1);
    assert_eq!(store.load("sip:alice@example.com").unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn location_answers_from_its_cache_after_a_change() {
    let mut loc = Location::new(rules(), SqliteStore::in_memory().unwrap());
    assert!(loc
        .targets("sip:alice@example.com", NOW)
        .unwrap()
        .is_empty());
    let req = reg("c", 1, &["Contact: <sip:a@127.0.0.1:1>"]);
    loc.handle_register(NOW, &req, &source());
    assert_eq!(loc.targets("sip:alice@example.com", NOW).unwrap().len(), 1);
    let bye = reg("c", 2, &["Contact: *", "Expires: 0"]);
    let resp = Message::parse(loc.handle_register(NOW, &bye, &source())).unwrap();
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.contacts().count(), 0);
    assert!(loc
        .targets("sip:alice@example.com", NOW)
        .unwrap()
        .is_empty());
}

#[test]
fn sqlite_store_keeps_users_and_no_passwords() {
    use crate::auth::User;
    let mut store = SqliteStore::in_memory().unwrap();
    assert!(store.users().unwrap().is_empty());
    let alice = User::new("alice", "example.com", "secret");
    store.put_user(&alice).unwrap();
    store
        .put_user(&User::new("bob", "example.com", "other"))
        .unwrap();
    assert_eq!(store.user("alice", "example.com").unwrap(), Some(alice));
    assert_eq!(store.user("alice", "example.org").unwrap(), None);
    let names: Vec<String> = store
        .users()
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store.remove_user("alice", "example.com").unwrap());
    assert!(!store.remove_user("alice", "example.com").unwrap());
    assert_eq!(store.users().unwrap().len(), 1);
}

#[test]
fn expired_bindings_do_not_make_room_beyond_the_limit() {
    // Five bindings, all expired by NOW + 100: four new ones are still one too many.
    let old: Vec<Binding> = (0..5)
        .map(|i| Binding {
            aor: "sip:alice@example.com".into(),
            contact: format!("sip:old{i}@127.0.0.1:1"),
            q: 1000,
            expires_at: NOW + 50,
            call_id: "old".into(),
            cseq: 1,
            path: vec![],
            received: None,
        })
        .collect();
    let req = reg(
        "c",
        1,
        &["Contact: <sip:a@127.0.0.1:1>, <sip:b@127.0.0.1:2>, <sip:c@127.0.0.1:3>, <sip:d@127.0.0.1:4>"],
    );
    let r = register(
        &rules(),
        NOW + 100,
        "sip:alice@example.com",
        &req,
        &source(),
        &old,
    );
    assert_eq!(r, Err(Refusal::TooManyContacts(3)));
}

#[test]
fn the_200_carries_the_date() {
    assert_eq!(crate::rules::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    // RFC 3261 §20.17's example.
    assert_eq!(
        crate::rules::http_date(1_289_690_940),
        "Sat, 13 Nov 2010 23:29:00 GMT"
    );
    assert_eq!(
        crate::rules::http_date(951_782_400),
        "Tue, 29 Feb 2000 00:00:00 GMT"
    );
    let req = reg("c", 1, &[]);
    let resp = Message::parse(ok_response(&req, &[], NOW)).unwrap();
    assert!(resp.headers_by_name("Date").next().is_some());
}
