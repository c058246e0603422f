//! Property tests for the parser, the framer and the forwarding editor.
//!
//! - **Round trip.** Requests are generated from a model (methods incl. extension tokens,
//!   SIP URIs, 1–4 Vias, From/To with quoted or token display names and tags, Contacts,
//!   Routes, extension headers, a body), written out with random spellings (compact forms,
//!   random name case, folded lines, bare LF, space before the colon, shuffled header
//!   order), parsed, and every field read back must equal the model. Forwarding edits are
//!   then applied and the result parsed again.
//! - **No panics.** Arbitrary bytes and SIP-flavoured byte soup go through `Message::parse`,
//!   `validate()`, every typed accessor, the editor and the builders.
//! - **Framing.** A stream split at arbitrary points frames exactly like the stream fed whole.
//! - **Mutation.** Valid messages with bytes flipped, inserted, deleted or duplicated.
//!
//! Case counts are kept modest for CI; raise them with `PROPTEST_CASES=10000`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use bytes::Bytes;
use proptest::prelude::*;
#[path = "proptest/model.rs"]
mod model;
#[path = "proptest/strategies.rs"]
mod strategies;

use strategies::*;

use rollover_sip::{Frame, HeaderName, Limits, Message, StreamFramer};

// ---------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------

/// Parses whatever `bytes` are and, when they parse, calls everything on the message.
fn parse_and_exercise(bytes: &[u8]) {
    match Message::parse(bytes.to_vec()) {
        Ok(m) => exercise(&m),
        Err(e) => {
            let _ = (e.status(), e.reason_phrase());
            let _ = rollover_sip::Located(&e, bytes).to_string();
        }
    }
}

fn exercise(m: &Message) {
    let _ = m.validate();
    let _ = (
        m.method(),
        m.request_uri_str(),
        m.status(),
        m.reason_phrase(),
    );
    let _ = (
        m.start_line_bytes(),
        m.body(),
        m.body_bytes(),
        m.content_length(),
    );
    let _ = format!("{m:?}");
    if let Some(Ok(u)) = m.request_uri() {
        let _ = (u.scheme(), u.to_string());
        if let Some(s) = u.as_sip() {
            let _ = (s.user_decoded(), s.transport(), s.lr(), s.maddr());
            assert!(s.equivalent(s));
        }
    }
    for h in m.headers() {
        let _ = (
            m.name_str(h),
            m.value_str(h),
            m.value_unfolded(h),
            h.offset(),
        );
    }
    for name in [
        HeaderName::Via,
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::Allow,
        HeaderName::Supported,
        HeaderName::WwwAuthenticate,
        HeaderName::Authorization,
        HeaderName::Other,
    ] {
        let _ = m.values(name).count();
        let _ = m.tokens(name).count();
        for a in m.auths(name).flatten() {
            let _ = a.params().count();
            let _ = a.param("realm");
        }
    }
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.expires());
    // The top Via is parsed once and rebuilt from noted positions afterwards: the same
    // answer every time, on a clone too.
    let top = m.top_via();
    assert_eq!(top, m.top_via());
    assert_eq!(top, m.clone().top_via());
    let _ = (
        m.from_tag(),
        m.to_tag(),
        m.contact_is_star(),
        m.retry_after(),
    );
    for a in [m.from_header(), m.to_header()].into_iter().flatten() {
        let _ = (a.display.map(|d| d.text()), a.tag(), a.q(), a.expires());
    }
    for v in m.vias().flatten() {
        let _ = (
            v.branch(),
            v.has_magic_cookie(),
            v.received(),
            v.rport(),
            v.ttl(),
        );
    }
    for a in m
        .contacts()
        .chain(m.routes())
        .chain(m.record_routes())
        .flatten()
    {
        let _ = (a.display.map(|d| d.text()), a.tag(), a.q(), a.expires());
    }
    let _ = m.reasons().count();

    assert_eq!(m.edit().finish(), *m.as_bytes());
    let mut ed = m.edit();
    ed.set_request_uri("sip:x@192.0.2.1")
        .push_via("SIP/2.0/UDP p.invalid;branch=z9hG4bKp")
        .pop_via()
        .pop_route()
        .push_record_route("<sip:p.invalid;lr>")
        .add_header("X-A", "b");
    let _ = ed.decrement_max_forwards();
    if let Some(h) = m.headers().first().copied() {
        ed.replace_value(&h, "v");
    }
    ed.remove_all(HeaderName::Contact)
        .set_body(Some("text/plain"), Bytes::from_static(b"x"));
    let _ = Message::parse(ed.finish()).map(|f| f.validate());

    let resp = m
        .response(480, "Later")
        .to_tag("t")
        .copy_record_route()
        .build();
    if let Ok(r) = Message::parse(resp) {
        let _ = r.validate();
        let _ = m.ack_for(&r);
    }
    let _ = m.cancel(Some("SIP;cause=487"));
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Message(Bytes),
    Ping,
    Error(rollover_sip::ErrorKind),
}

/// Feeds `chunks` to a framer, draining after each; stops at the first error.
fn frame<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Out>, usize) {
    let mut f = StreamFramer::new(Limits::default());
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => out.push(Out::Message(m.as_bytes().clone())),
                Ok(Some(Frame::Ping)) => out.push(Out::Ping),
                Ok(None) => break,
                Err(e) => {
                    out.push(Out::Error(e.kind));
                    return (out, f.buffered());
                }
            }
        }
    }
    (out, f.buffered())
}

/// Splits `data` at the given points (taken modulo its length, sorted).
fn split_at_points<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([data.len()]) {
        chunks.push(&data[prev..c]);
        prev = c;
    }
    chunks
}

fn assert_same_framing(data: &[u8], points: &[usize]) {
    let (whole, left_whole) = frame([data]);
    let (split, left_split) = frame(split_at_points(data, points));
    assert_eq!(whole, split);
    if !matches!(whole.last(), Some(Out::Error(_))) {
        assert_eq!(left_whole, left_split);
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// `default_cases` cases, or `PROPTEST_CASES` when set (for long runs outside CI).
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated requests parse back to exactly what was generated.
    #[test]
    fn generated_requests_round_trip(req in request()) {
        let (bytes, names) = req.render();
        let m = Message::parse(bytes.clone()).unwrap_or_else(|e| {
            panic!("{e}: {:?}", String::from_utf8_lossy(&bytes))
        });
        req.check(&m, &names);
        exercise(&m);
    }

    /// The edited message made without a second parse is the one the parser makes of the
    /// same bytes, whatever the proxy's edits (each subset, in the orders the proxy uses).
    #[test]
    fn edited_messages_need_no_second_parse(
        req in request(),
        new_via in via(),
        new_uri in uri(),
        edits in 0u8..64,
        noted in any::<bool>(),
    ) {
        let (bytes, _) = req.render();
        let m = Message::parse(bytes).unwrap();
        if noted {
            // What the original noted is carried to the rebuilt message, or read again.
            let _ = (m.validate(), m.call_id(), m.to_tag(), m.cseq());
        }
        let apply = |e: &mut rollover_sip::Editor<'_>| {
            if edits & 1 != 0 {
                e.set_request_uri(&new_uri.text());
            }
            if edits & 2 != 0 {
                let _ = e.decrement_max_forwards();
            }
            if edits & 4 != 0 {
                e.push_via(&new_via.wire());
            }
            if edits & 8 != 0 {
                e.push_record_route("<sip:192.0.2.7:5060;lr;tk=0123456789abcdef>");
            }
            if edits & 16 != 0 {
                e.pop_route();
            }
            if edits & 32 != 0 {
                e.pop_via();
            }
        };
        let mut a = m.edit();
        apply(&mut a);
        let parsed = Message::parse(a.finish());
        let mut b = m.edit();
        apply(&mut b);
        let built = b.finish_message();
        assert_eq!(built, parsed);
        if let (Ok(built), Ok(parsed)) = (&built, &parsed) {
            let err = |e: rollover_sip::ParseError| e.to_string();
            assert_eq!(built.call_id().map_err(err), parsed.call_id().map_err(err));
            assert_eq!(built.from_tag(), parsed.from_tag());
            assert_eq!(built.to_tag(), parsed.to_tag());
            assert_eq!(built.cseq().map_err(err), parsed.cseq().map_err(err));
        }
        if let Ok(built) = built {
            exercise(&built);
        }
    }

    /// Forwarding edits apply, and everything else reads back unchanged.
    #[test]
    fn forwarding_edits_round_trip(req in request(), new_via in via(), new_uri in uri()) {
        let (bytes, _) = req.render();
        let m = Message::parse(bytes).unwrap();
        let out = m
            .edit()
            .push_via(&new_via.wire())
            .set_request_uri(&new_uri.text())
            .decrement_max_forwards()
            .unwrap()
            .pop_via()
            .finish();
        let f = Message::parse(out.clone()).unwrap_or_else(|e| {
            panic!("{e}: {:?}", String::from_utf8_lossy(&out))
        });
        f.validate().unwrap();
        assert_eq!(f.request_uri_str(), Some(new_uri.text().as_str()));
        new_uri.check(&f.request_uri().unwrap().unwrap());
        let vias: Vec<_> = f.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), req.vias.len());
        new_via.check(&vias[0]);
        for (g, v) in req.vias.iter().skip(1).zip(vias.iter().skip(1)) {
            g.check(v);
        }
        assert_eq!(
            f.max_forwards().unwrap(),
            Some(req.max_forwards.map_or(70, |v| v.saturating_sub(1)))
        );
        req.from.check(&f.from_header().unwrap());
        req.to.check(&f.to_header().unwrap());
        assert_eq!(f.call_id().unwrap(), req.call_id);
        assert_eq!(f.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(f.contacts().count(), req.contacts.len());
        assert_eq!(f.routes().count(), req.routes.len());
        assert_eq!(f.body(), m.body());

        // A second hop: pop the Via the first hop pushed; the original tail remains.
        let g = Message::parse(f.edit().pop_via().finish()).unwrap();
        let tail: Vec<_> = g.vias().map(Result::unwrap).collect();
        assert_eq!(tail.len(), req.vias.len() - 1);
        for (gv, v) in req.vias.iter().skip(1).zip(&tail) {
            gv.check(v);
        }

        // The response to the forwarded request echoes it (RFC 3261 §8.2.6.2).
        let r = Message::parse(f.response(200, "OK").to_tag("answer").build()).unwrap();
        r.validate().unwrap();
        assert_eq!(r.vias().count(), vias.len());
        assert_eq!(r.call_id().unwrap(), req.call_id);
        assert_eq!(r.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(r.from_tag(), req.from.param("tag"));
        assert_eq!(r.to_tag(), Some(req.to.param("tag").unwrap_or("answer")));
    }

    /// Several generated messages and keep-alives in one stream, split anywhere, frame back
    /// to exactly those messages.
    #[test]
    fn stream_of_generated_messages_frames_back(
        reqs in prop::collection::vec((stream_request(), 0usize..3), 1..4),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (r, pings) in &reqs {
            for _ in 0..*pings {
                stream.extend_from_slice(b"\r\n\r\n");
                want.push(Out::Ping);
            }
            let (bytes, _) = r.render();
            stream.extend_from_slice(&bytes);
            // The framer hands out the message without the leading CRLFs; those read as
            // a ping and pongs first.
            let skip = r.style.leading_crlf * 2;
            if r.style.leading_crlf >= 2 {
                want.push(Out::Ping);
            }
            want.push(Out::Message(Bytes::copy_from_slice(&bytes[skip..])));
        }
        let (got, left) = frame(split_at_points(&stream, &points));
        assert_eq!(got, want);
        assert_eq!(left, 0);
        assert_same_framing(&stream, &points);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The top Via of a comma list, found at its first comma when that is safe, is the
    /// first value the general list split yields (quotes, `<`, commas inside quotes).
    #[test]
    fn top_via_of_a_list_is_its_first_value(
        values in prop::collection::vec(prop::sample::select(vec![
            "SIP/2.0/UDP a.example.com:5060;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2;rport",
            "SIP/2.0/TCP h;x=\"a,b\";branch=z9hG4bK3",
            "SIP/2.0/UDP h;x=<a,b>;branch=z9hG4bK4",
            "SIP / 2.0 / UDP h ; branch=z9hG4bK5",
            "SIP/2.0/UDP h;branch=z9hG4bK6 ",
            "SIP/2.0/UDP",
            "",
        ]), 1..4),
        sep in prop::sample::select(vec![",", ", ", " ,", ",\r\n "]),
    ) {
        let via = values.join(sep);
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        if let Ok(m) = Message::parse(text.into_bytes()) {
            let first = m.vias().next().and_then(Result::ok);
            prop_assert_eq!(m.top_via().ok(), first);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Uniform random bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_exercise(&bytes);
    }

    /// SIP-flavoured byte soup never panics.
    #[test]
    fn sip_soup_never_panics(bytes in sip_soup()) {
        parse_and_exercise(&bytes);
    }

    /// Arbitrary bytes split at arbitrary points frame like the same bytes fed whole.
    #[test]
    fn arbitrary_stream_splits_frame_alike(
        bytes in prop_oneof![sip_soup(), prop::collection::vec(any::<u8>(), 0..512)],
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        assert_same_framing(&bytes, &points);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(frame(bytewise).0, frame([&bytes[..]]).0);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid messages with random damage never panic, as datagrams or as streams.
    #[test]
    fn mutated_messages_never_panic(
        req in request(),
        ms in mutations(),
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (bytes, _) = req.render();
        let damaged = mutate(bytes, &ms);
        parse_and_exercise(&damaged);
        assert_same_framing(&damaged, &points);
    }
}

/// Small limits are enforced with typed errors, never panics, on generated messages.
#[test]
fn tight_limits_fail_cleanly() {
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&(request(), 1usize..6), |(req, n)| {
            let (bytes, _) = req.render();
            let limits = Limits {
                max_message_size: 40 * n,
                max_headers: n,
                max_header_line: 10 * n,
                max_via: n / 2,
                max_route: n / 2,
            };
            if let Err(e) = Message::parse_with(bytes, &limits) {
                assert!(matches!(e.status(), 400 | 513), "{e}");
            }
            Ok(())
        })
        .unwrap();
}
