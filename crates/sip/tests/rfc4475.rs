//! RFC 4475 torture tests: every vector in `tests/rfc4475/MANIFEST.tsv` gets its verdict.
//!
//! - accept: parses and validates, and survives a normalise → parse round trip;
//! - reject: refused by the parser or the validator (with the status a server answers);
//! - lenient: either, without panicking;
//! - app: parses, and exposes what the element's own check needs (asserted per vector).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::PathBuf;

use rollover_sip::{ErrorKind, HeaderName, Host, Message, ParseError, Uri};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475")
}

fn load(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Parse, then validate: the verdict an element reaches.
fn verdict(bytes: &[u8]) -> Result<Message, ParseError> {
    let m = Message::parse(bytes.to_vec())?;
    m.validate()?;
    Ok(m)
}

/// Re-serialises with canonical names and unfolded values, so the round trip exercises
/// the parser on a different spelling of the same message.
fn normalise(m: &Message) -> Vec<u8> {
    let mut out = m.start_line_bytes().to_vec();
    out.extend_from_slice(b"\r\n");
    for h in m.headers() {
        let name = h
            .name
            .canonical()
            .map_or_else(|| m.name_str(h).to_owned(), str::to_owned);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(m.value_unfolded(h).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.body());
    out
}

fn assert_same_fields(a: &Message, b: &Message) {
    assert_eq!(a.method(), b.method());
    assert_eq!(a.request_uri_str(), b.request_uri_str());
    assert_eq!(a.status(), b.status());
    assert_eq!(a.call_id().unwrap(), b.call_id().unwrap());
    assert_eq!(a.cseq().unwrap(), b.cseq().unwrap());
    assert_eq!(a.from_tag(), b.from_tag());
    assert_eq!(a.to_tag(), b.to_tag());
    let via = |m: &Message| {
        m.vias()
            .map(|v| {
                let v = v.unwrap();
                (
                    v.transport.to_owned(),
                    v.host.to_string(),
                    v.port,
                    v.branch().map(str::to_owned),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(via(a), via(b));
    let contacts = |m: &Message| {
        m.contacts()
            .map(|c| c.unwrap().uri.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(contacts(a), contacts(b));
    assert_eq!(a.headers().len(), b.headers().len());
    assert_eq!(a.body(), b.body());
}

/// Checks for the `app` vectors: what the element above the parser needs.
fn app_check(file: &str, bytes: &[u8]) {
    let m = Message::parse(bytes.to_vec()).unwrap_or_else(|e| panic!("{file} must parse: {e}"));
    let v = m.validate();
    match file {
        "TC_BADBRANCH_V.dat" => {
            v.unwrap();
            assert!(
                !m.top_via().unwrap().has_magic_cookie(),
                "RFC 2543 matching needed"
            );
        }
        "TC_INSUF_I.dat" => {
            let e = v.unwrap_err();
            assert!(matches!(e.kind, ErrorKind::MissingHeader(_)));
            assert_eq!(e.status(), 400);
        }
        "TC_UNKSCM_V.dat" | "TC_NOVELSC_V.dat" => {
            assert_eq!(v.unwrap_err().status(), 416);
        }
        "TC_UNKSM2_V.dat" => {
            v.unwrap();
            assert!(matches!(
                m.to_header().unwrap().uri,
                Uri::Other { scheme: "isbn", .. }
            ));
            assert!(matches!(
                m.contacts().next().unwrap().unwrap().uri,
                Uri::Other { scheme: "name", .. }
            ));
        }
        "TC_BEXT01_V.dat" => {
            v.unwrap();
            let tags: Vec<_> = m.tokens(HeaderName::ProxyRequire).collect();
            assert_eq!(tags, ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
        }
        "TC_INVUT_V.dat" => {
            v.unwrap();
            assert!(m
                .header_str(HeaderName::ContentType)
                .unwrap()
                .unwrap()
                .starts_with("application/unknownformat"));
        }
        "TC_REGAUT01_V.dat" => {
            v.unwrap();
            let a = m.auths(HeaderName::Authorization).next().unwrap().unwrap();
            assert_eq!(a.scheme, "NoOneKnowsThisScheme");
        }
        "TC_MULTI01_I.dat" => {
            let e = v.unwrap_err();
            assert!(matches!(e.kind, ErrorKind::DuplicateHeader(_)), "{e}");
            assert_eq!(e.status(), 400);
        }
        "TC_MCL01_I.dat" => {
            assert_eq!(v.unwrap_err().kind, ErrorKind::ConflictingContentLength);
            assert_eq!(m.content_length(), None);
        }
        "TC_BCAST_V.dat" => {
            v.unwrap();
            let second = m.vias().nth(1).unwrap().unwrap();
            assert_eq!(second.host, Host::V4(std::net::Ipv4Addr::BROADCAST));
        }
        "TC_ZEROMF_V.dat" => {
            v.unwrap();
            assert_eq!(m.max_forwards().unwrap(), Some(0));
        }
        "TC_CPARAM01_V.dat" | "TC_CPARAM02_V.dat" | "TC_REGESCRT_V.dat" => {
            v.unwrap();
            let c = m.contacts().next().unwrap().unwrap();
            let sip = c.uri.as_sip().unwrap().clone();
            match file {
                // addr-spec form: the parameter belongs to the header, not the URI.
                "TC_CPARAM01_V.dat" => {
                    assert_eq!(c.params.get("unknownparam"), Some(None));
                    assert_eq!(sip.params.get("unknownparam"), None);
                }
                "TC_CPARAM02_V.dat" => assert_eq!(sip.params.get("unknownparam"), Some(None)),
                _ => assert_eq!(sip.headers, Some("Route=%3Csip:sip.example.com%3E")),
            }
        }
        "TC_SDP01_V.dat" => {
            v.unwrap();
            assert!(m.headers_by_name("Accept").next().is_some());
        }
        "TC_INV2543_I.dat" => {
            v.unwrap();
            assert_eq!(m.top_via().unwrap().branch(), None);
            assert_eq!(m.max_forwards().unwrap(), None);
        }
        other => panic!("app vector {other} has no check: add one"),
    }
}

#[test]
fn every_manifest_vector_gets_its_verdict() {
    let manifest = std::fs::read_to_string(dir().join("MANIFEST.tsv")).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, verdict_name) = (cols[0], cols[2]);
        let bytes = load(file);
        *counts.entry(verdict_name).or_insert(0) += 1;
        let outcome = std::panic::catch_unwind(|| match verdict_name {
            "accept" => {
                let m = verdict(&bytes).unwrap_or_else(|e| panic!("{file} must be accepted: {e}"));
                let again =
                    verdict(&normalise(&m)).unwrap_or_else(|e| panic!("{file} round trip: {e}"));
                assert_same_fields(&m, &again);
            }
            "reject" => {
                if let Ok(m) = verdict(&bytes) {
                    panic!("{file} must be rejected, got {m:?}");
                }
            }
            "lenient" => {
                let _ = verdict(&bytes);
            }
            "app" => app_check(file, &bytes),
            other => panic!("unknown verdict {other}"),
        });
        if outcome.is_err() {
            failures.push(file.to_owned());
        }
    }
    assert!(
        failures.is_empty(),
        "vectors with the wrong verdict: {failures:?}"
    );
    assert!(
        counts.values().sum::<i32>() >= 50,
        "manifest lost vectors: {counts:?}"
    );
}

#[test]
fn rejections_carry_the_right_status() {
    let status = |f: &str| verdict(&load(f)).unwrap_err().status();
    assert_eq!(status("TC_BADVERS_V.dat"), 505);
    for f in [
        "TC_CLERR_I.dat",
        "TC_NCL_I.dat",
        "TC_SCALAR02_V.dat",
        "TC_QUOTBAL_I.dat",
        "TC_LTGTRURI_I.dat",
        "TC_LWSRURI_I.dat",
        "TC_ESCRURI_V.dat",
        "TC_BADDN_I.dat",
        "TC_MISMATCH01_V.dat",
        "TC_MISMATCH02_V.dat",
        "TC_BADINV01_I.dat",
        "TC_TEST_I.dat",
    ] {
        assert_eq!(status(f), 400, "{f}");
    }
    // The stored TC_BADDN_I lacks its final empty line; restored, it is refused for the
    // display name itself.
    let mut baddn = load("TC_BADDN_I.dat");
    baddn.extend_from_slice(b"\r\n");
    let e = verdict(&baddn).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadHeader("From"), "{e}");
}

#[test]
fn torture_details() {
    // §3.1.1.1: folding, odd case, escaped quotes, compact forms, LWS inside Via.
    let m = verdict(&load("TC_WSINV.dat")).unwrap();
    assert_eq!(m.to_tag(), Some("1918181833n"));
    assert_eq!(
        m.from_header().unwrap().display.unwrap().text(),
        r#"J Rosenberg \""#
    );
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    let vias: Vec<_> = m
        .vias()
        .map(|v| v.unwrap().branch().map(str::to_owned))
        .collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].as_deref(), Some("z9hG4bK9ikj8"));
    let contact = m.contacts().next().unwrap().unwrap();
    assert_eq!(contact.q(), Some(330));
    assert_eq!(contact.display.unwrap().text(), r#"Quoted string """#);
    assert_eq!(
        m.value_unfolded(m.headers_by_name("NewFangledHeader").next().unwrap()),
        "newfangled value continued newfangled value"
    );
    // §3.1.1.8: the trailing second request is ignored.
    let m = verdict(&load("TC_DBLREQ.dat")).unwrap();
    assert_eq!(m.body().len(), 0);
    // §3.1.1.11: binary body with NUL and bare CR survives.
    let m = verdict(&load("TC_MPART01.dat")).unwrap();
    assert!(m.body().contains(&0));
    // §3.1.1.4: escaped NUL decodes.
    let m = verdict(&load("TC_ESCNULL_V.dat")).unwrap();
    let to = m.to_header().unwrap();
    assert_eq!(
        to.uri.as_sip().unwrap().user_decoded().unwrap().as_ref(),
        b"null-\0-null"
    );
    // §3.1.1.13: empty reason phrase.
    assert_eq!(
        verdict(&load("TC_NOREASON_V.dat"))
            .unwrap()
            .reason_phrase()
            .unwrap(),
        ""
    );
}
