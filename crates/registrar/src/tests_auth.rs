//! Digest authentication: the exchange with the user agent's client side, replayed and
//! stale nonces, and the block after repeated wrong passwords.

use std::net::IpAddr;

use bytes::Bytes;
use rollover_sip::{Auth, HeaderName, Message};
use rollover_ua::{authorization, Credentials};

use crate::auth::{Algorithm, AuthSettings, Digest, Kind, User, Verdict};

const NOW: u64 = 2_000_000;
const REALM: &str = "example.com";

fn ip() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn alice() -> User {
    User::new("alice", REALM, "secret")
}

fn digest() -> Digest {
    Digest::new(
        b"0123456789abcdef0123456789abcdef",
        AuthSettings {
            max_failures: 3,
            ..AuthSettings::default()
        },
        7,
    )
}

fn request(method: &str, auth: Option<(&str, &str)>) -> Message {
    let mut s = format!(
        "{method} sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: c1\r\n\
         CSeq: 1 {method}\r\n"
    );
    if let Some((name, v)) = auth {
        s.push_str(&format!("{name}: {v}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).unwrap()
}

/// The challenge of `alg` in a 401/407.
fn challenge_of(resp: &Message, name: HeaderName, alg: &str) -> String {
    resp.auths(name)
        .map(|a| a.unwrap())
        .find(|a| a.param("algorithm").as_deref() == Some(alg))
        .map(|_| {
            let h = resp
                .headers_named(name)
                .find(|h| resp.value_str(h).unwrap().contains(alg));
            resp.value_str(h.unwrap()).unwrap().to_owned()
        })
        .unwrap_or_else(|| panic!("no {alg} challenge"))
}

/// Answers the challenge `d` makes at `at` for a REGISTER with `password`.
fn answer(d: &mut Digest, at: u64, alg: &str, password: &str, cnonce: &str) -> String {
    let req = request("REGISTER", None);
    let resp = Message::parse(d.challenge(at, &req, Kind::Registrar, REALM, false)).unwrap();
    assert_eq!(resp.status(), Some(401));
    let ch = challenge_of(&resp, HeaderName::WwwAuthenticate, alg);
    let creds = Credentials {
        username: "alice".into(),
        password: password.into(),
    };
    authorization(
        &Auth::parse(&ch).unwrap(),
        &creds,
        "REGISTER",
        "sip:example.com",
        cnonce,
    )
    .unwrap()
}

fn check(d: &mut Digest, at: u64, value: &str) -> Verdict {
    let req = request("REGISTER", Some(("Authorization", value)));
    d.check(at, &req, Kind::Registrar, REALM, ip(), |u, r| {
        (u == "alice" && r == REALM).then(alice)
    })
}

#[test]
fn md5_and_sha256_answers_are_accepted() {
    let mut d = digest();
    // Each from its own challenge, in the same second: two nonces, each with count 1.
    for (at, alg) in [(NOW, "MD5"), (NOW, "SHA-256")] {
        let v = answer(&mut d, at, alg, "secret", alg);
        assert_eq!(check(&mut d, at + 1, &v), Verdict::Ok(alice()), "{alg}");
    }
}

#[test]
fn challenges_offer_sha256_first_then_md5() {
    let mut d = digest();
    let resp =
        Message::parse(d.challenge(NOW, &request("INVITE", None), Kind::Proxy, REALM, false))
            .unwrap();
    assert_eq!(resp.status(), Some(407));
    let algs: Vec<String> = resp
        .auths(HeaderName::ProxyAuthenticate)
        .map(|a| a.unwrap().param("algorithm").unwrap().into_owned())
        .collect();
    assert_eq!(algs, ["SHA-256", "MD5"]);
}

#[test]
fn proxy_kind_reads_proxy_authorization() {
    let mut d = digest();
    let v = answer(&mut d, NOW, "MD5", "secret", "x");
    let req = request("REGISTER", Some(("Proxy-Authorization", &v)));
    let got = d.check(NOW, &req, Kind::Proxy, REALM, ip(), |_, _| Some(alice()));
    assert_eq!(got, Verdict::Ok(alice()));
    // The same credentials in the other header are not looked at.
    let req = request("REGISTER", Some(("Authorization", &v)));
    let got = d.check(NOW, &req, Kind::Proxy, REALM, ip(), |_, _| Some(alice()));
    assert_eq!(got, Verdict::Challenge { stale: false });
}

#[test]
fn a_replayed_answer_is_challenged() {
    let mut d = digest();
    let v = answer(&mut d, NOW, "MD5", "secret", "c");
    assert_eq!(check(&mut d, NOW, &v), Verdict::Ok(alice()));
    // The very same request again (a UDP retransmission) is no replay.
    assert_eq!(check(&mut d, NOW, &v), Verdict::Ok(alice()));
    // The same nonce count on another request (another CSeq): a replay.
    let text = String::from_utf8(
        request("REGISTER", Some(("Authorization", &v)))
            .as_bytes()
            .to_vec(),
    )
    .unwrap()
    .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER");
    let other = Message::parse(Bytes::from(text)).unwrap();
    let got = d.check(NOW + 1, &other, Kind::Registrar, REALM, ip(), |_, _| {
        Some(alice())
    });
    assert_eq!(got, Verdict::Challenge { stale: false });
    // A replay with the count raised does not match its response: a wrong answer.
    let v2 = v.replace("nc=00000001", "nc=00000002");
    assert_eq!(
        check(&mut d, NOW + 1, &v2),
        Verdict::Challenge { stale: false }
    );
}

/// Two nodes with one secret, their nonce counts shared as a Redis store shares them: a
/// request accepted by one is a replay on the other; a retransmission to the first is
/// not claimed again.
#[test]
fn a_request_replayed_to_another_node_is_challenged_when_counts_are_shared() {
    use std::cell::RefCell;
    use std::collections::HashMap;
    let shared: RefCell<HashMap<String, u32>> = RefCell::default();
    let claims = RefCell::new(0);
    let claim = |nonce: &str, nc: u32, ttl: u64| {
        assert!(ttl > 0 && ttl <= AuthSettings::default().nonce_ttl);
        *claims.borrow_mut() += 1;
        let mut m = shared.borrow_mut();
        let last = m.entry(nonce.to_owned()).or_insert(0);
        let won = nc > *last;
        if won {
            *last = nc;
        }
        won
    };
    let (mut a, mut b) = (digest(), digest());
    let v = answer(&mut a, NOW, "MD5", "secret", "c");
    let req = request("REGISTER", Some(("Authorization", &v)));
    let users = |u: &str, r: &str| (u == "alice" && r == REALM).then(alice);
    let on = |d: &mut Digest| d.check_shared(NOW, &req, Kind::Registrar, REALM, ip(), users, claim);
    assert_eq!(on(&mut a), Verdict::Ok(alice()));
    assert_eq!(on(&mut a), Verdict::Ok(alice()), "a retransmission");
    assert_eq!(*claims.borrow(), 1, "a retransmission is not claimed again");
    assert_eq!(on(&mut b), Verdict::Challenge { stale: false });
    // Each node's own counts alone let the other accept it.
    assert_eq!(check(&mut digest(), NOW, &v), Verdict::Ok(alice()));
}

#[test]
fn an_expired_nonce_is_stale_when_the_password_is_right() {
    let mut d = digest();
    let v = answer(&mut d, NOW, "SHA-256", "secret", "c");
    let late = NOW + AuthSettings::default().nonce_ttl + 1;
    assert_eq!(check(&mut d, late, &v), Verdict::Challenge { stale: true });
    let req = request("REGISTER", None);
    let resp = Message::parse(d.challenge(late, &req, Kind::Registrar, REALM, true)).unwrap();
    assert!(challenge_of(&resp, HeaderName::WwwAuthenticate, "MD5").contains("stale=true"));
    // A wrong password with an old nonce is not stale: it is wrong.
    let bad = answer(&mut d, NOW, "SHA-256", "guess", "c");
    assert_eq!(
        check(&mut d, late, &bad),
        Verdict::Challenge { stale: false }
    );
}

#[test]
fn a_forged_nonce_is_challenged() {
    let mut d = digest();
    let v = answer(&mut d, NOW, "MD5", "secret", "c");
    let other = Digest::new(
        b"another secret, another proxy!!",
        AuthSettings::default(),
        7,
    );
    let req = request("REGISTER", Some(("Authorization", &v)));
    let mut other = other;
    assert_eq!(
        other.check(
            NOW,
            &req,
            Kind::Registrar,
            REALM,
            ip(),
            |_, _| Some(alice())
        ),
        Verdict::Challenge { stale: false }
    );
    assert_eq!(check(&mut d, NOW, &v), Verdict::Ok(alice()));
}

#[test]
fn repeated_wrong_passwords_block_the_source() {
    let mut d = digest();
    for _ in 0..2 {
        let bad = answer(&mut d, NOW, "MD5", "guess", "c");
        assert_eq!(
            check(&mut d, NOW, &bad),
            Verdict::Challenge { stale: false }
        );
    }
    let bad = answer(&mut d, NOW, "MD5", "guess", "c");
    assert_eq!(check(&mut d, NOW, &bad), Verdict::Forbidden);
    // Blocked: even the right password gets 403 until the block ends.
    let good = answer(&mut d, NOW, "MD5", "secret", "c");
    assert_eq!(check(&mut d, NOW + 1, &good), Verdict::Forbidden);
    let after = NOW + AuthSettings::default().block_for + 1;
    let good = answer(&mut d, after, "MD5", "secret", "c");
    assert_eq!(check(&mut d, after, &good), Verdict::Ok(alice()));
}

#[test]
fn unknown_users_count_as_wrong_answers() {
    let mut d = digest();
    let v = answer(&mut d, NOW, "MD5", "secret", "c")
        .replace("username=\"alice\"", "username=\"mallory\"");
    let req = request("REGISTER", Some(("Authorization", &v)));
    let got = d.check(NOW, &req, Kind::Registrar, REALM, ip(), |_, _| None);
    assert_eq!(got, Verdict::Challenge { stale: false });
}

#[test]
fn ha1_hashes_are_the_rfc_ones() {
    // RFC 7616 §3.9.1: HA1 of Mufasa in http-auth@example.org with "Circle of Life".
    let u = User::new("Mufasa", "http-auth@example.org", "Circle of Life");
    assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(u.ha1_md5.len(), 32);
    assert_eq!(u.ha1_sha256.len(), 64);
    assert!(!u.ha1_md5.contains("Circle"));
}

#[test]
fn two_challenges_in_one_second_have_different_nonces() {
    let mut d = digest();
    assert_ne!(d.nonce(NOW, REALM), d.nonce(NOW, REALM));
}

#[test]
fn a_full_nonce_table_forgets_the_oldest_and_never_accepts_its_replay() {
    let mut d = digest().with_limit(3);
    // Four phones, each its own nonce, one a second: the table holds three.
    let answers: Vec<String> = (0..4)
        .map(|i| {
            let v = answer(&mut d, NOW + i, "MD5", "secret", &format!("c{i}"));
            assert_eq!(check(&mut d, NOW + i, &v), Verdict::Ok(alice()));
            v
        })
        .collect();
    // The first nonce's count was forgotten: its replay is not accepted, it gets a fresh
    // nonce (stale), as an expired one would.
    assert_eq!(
        check(&mut d, NOW + 5, &answers[0]),
        Verdict::Challenge { stale: true }
    );
    // One still remembered is known with its transaction: this same request again is a
    // retransmission, accepted as before.
    assert_eq!(check(&mut d, NOW + 5, &answers[3]), Verdict::Ok(alice()));
    // A new nonce is accepted as usual.
    let v = answer(&mut d, NOW + 6, "MD5", "secret", "c9");
    assert_eq!(check(&mut d, NOW + 6, &v), Verdict::Ok(alice()));
}
