//! Shared drivers for the fuzz targets: touch every public entry point of `rollover-sip`
//! on one input and check the invariants that must hold whatever the input is.
//!
//! A panic anywhere (an `assert!` here included) is a finding.

use bytes::Bytes;
use rollover_sip::{
    scan, Auth, CSeq, ErrorKind, Frame, HeaderName, Host, Limits, Located, Message, Method,
    NameAddr, Params, Reason, RetryAfter, StreamFramer, Uri, Via,
};

/// Header names whose typed or list accessors are exercised.
const NAMES: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Expires,
    HeaderName::Allow,
    HeaderName::Supported,
    HeaderName::Require,
    HeaderName::ProxyRequire,
    HeaderName::Unsupported,
    HeaderName::Reason,
    HeaderName::RetryAfter,
    HeaderName::WwwAuthenticate,
    HeaderName::ProxyAuthenticate,
    HeaderName::Authorization,
    HeaderName::ProxyAuthorization,
    HeaderName::Other,
];

/// Parses `data` as a datagram and, when it parses, drives everything on the message.
pub fn parse_input(data: &[u8]) {
    // The one-pass paths must find what the general ones find, errors included.
    assert!(rollover_sip::oracles::header_section_agrees(data));
    assert!(rollover_sip::oracles::header_name_agrees(data));
    match Message::parse(Bytes::copy_from_slice(data)) {
        Ok(msg) => exercise(&msg),
        Err(e) => {
            let _ = e.status();
            let _ = e.reason_phrase();
            let _ = Located(&e, data).to_string();
        }
    }
}

/// Calls every accessor, edit and builder on a parsed message and checks the invariants
/// that hold for every message the parser accepts.
pub fn exercise(msg: &Message) {
    let valid = msg.validate().is_ok();
    read_everything(msg);

    // An editor with no edits gives back the original bytes.
    assert_eq!(msg.edit().finish(), *msg.as_bytes());

    // Any mix of edits serialises without panicking; the result is just another input.
    let mut ed = msg.edit();
    ed.set_request_uri("sip:fuzz@192.0.2.1:5070")
        .push_via("SIP/2.0/UDP proxy.invalid;branch=z9hG4bK-fuzz")
        .pop_via()
        .pop_route()
        .push_route("<sip:r.invalid;lr>")
        .push_record_route("<sip:rr.invalid;lr>")
        .add_header("X-Fuzz", "1");
    let _ = ed.decrement_max_forwards();
    if let Some(h) = msg.headers().first().copied() {
        ed.replace_value(&h, "v").remove_header(&h);
    }
    if let Some(h) = msg.headers().last().copied() {
        ed.remove_header(&h);
    }
    ed.remove_all(HeaderName::Contact)
        .set_body(Some("text/plain"), Bytes::from_static(b"body"));
    let out = ed.finish();
    if let Ok(m) = Message::parse(out) {
        read_everything(&m);
    }

    let _ = msg.cancel(Some("SIP;cause=200;text=\"x\""));
    let resp = msg
        .response(486, "Busy\r\nX: y")
        .to_tag("fz")
        .copy_record_route()
        .header("Warning", "399 h \"w\"")
        .body("text/plain", Bytes::from_static(b"b"))
        .build();
    if let Ok(r) = Message::parse(resp.clone()) {
        read_everything(&r);
        let _ = msg.ack_for(&r);
    }

    // Room for what the checks below add, so limits cannot be what fails them.
    let roomy = msg.as_bytes().len() + 512 < Limits::default().max_message_size
        && msg.headers().len() + 4 < Limits::default().max_headers
        && msg.vias().count() + 1 < Limits::default().max_via
        && msg.routes().count() + msg.record_routes().count() + 1 < Limits::default().max_route;
    // Parsing the parsed bytes again gives the same message (trailing octets and leading
    // CRLFs were already dropped).
    let again = Message::parse(msg.as_bytes().clone());
    assert_eq!(
        again.as_ref(),
        Ok(msg),
        "re-parsing the message's own bytes differs"
    );

    if valid && roomy {
        check_respelled(msg);
    }
    if valid && msg.is_request() && roomy {
        check_forwarding(msg);
        check_response(msg, &resp);
        if msg.method() == Some(&Method::Invite) {
            check_cancel_and_ack(msg);
        }
    }
}

/// The same message spelled canonically (long header names, folding undone, CRLF line
/// ends) is still valid and reads back the same.
fn check_respelled(msg: &Message) {
    let mut out = msg.start_line_bytes().to_vec();
    out.extend_from_slice(b"\r\n");
    for h in msg.headers() {
        let name = h.name.canonical().unwrap_or_else(|| msg.name_str(h));
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(msg.value_unfolded(h).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
    let r = match Message::parse(out.clone()) {
        Ok(r) => r,
        Err(e) => panic!(
            "respelled message does not parse: {e}: {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    if let Err(e) = r.validate() {
        panic!(
            "respelled message does not validate: {e}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(r.method(), msg.method());
    assert_eq!(r.status(), msg.status());
    assert_eq!(r.request_uri_str(), msg.request_uri_str());
    assert_eq!(r.call_id().ok(), msg.call_id().ok());
    assert_eq!(r.cseq().ok(), msg.cseq().ok());
    assert_eq!(r.from_tag(), msg.from_tag());
    assert_eq!(r.to_tag(), msg.to_tag());
    assert_eq!(r.max_forwards().ok(), msg.max_forwards().ok());
    let branches = |m: &Message| -> Vec<Option<String>> {
        m.vias()
            .map(|v| v.ok().and_then(|v| v.branch().map(str::to_owned)))
            .collect()
    };
    assert_eq!(branches(&r), branches(msg));
    let uris = |m: &Message| -> Vec<String> {
        m.contacts()
            .chain(m.routes())
            .chain(m.record_routes())
            .map(|a| a.map(|a| a.uri.to_string()).unwrap_or_default())
            .collect()
    };
    assert_eq!(uris(&r), uris(msg));
    assert_eq!(r.body(), msg.body());
}

/// A valid request forwarded with the §16.6 edits is still valid, with the edits applied.
fn check_forwarding(msg: &Message) {
    let mf = msg.max_forwards().ok().flatten();
    let mut ed = msg.edit();
    ed.set_request_uri("sip:fuzz@192.0.2.1:5070")
        .push_via("SIP/2.0/UDP proxy.invalid;branch=z9hG4bK-fuzz")
        .push_record_route("<sip:rr.invalid;lr>")
        .pop_route();
    let ok = ed.decrement_max_forwards().is_ok();
    assert!(
        ok,
        "max_forwards() passed validate but the editor refused it"
    );
    let out = ed.finish();
    let f = match Message::parse(out.clone()) {
        Ok(f) => f,
        Err(e) => panic!(
            "forwarded request does not parse: {e}: {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    if let Err(e) = f.validate() {
        panic!(
            "forwarded request does not validate: {e}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(f.request_uri_str(), Some("sip:fuzz@192.0.2.1:5070"));
    assert_eq!(
        f.top_via().ok().and_then(|v| v.branch()),
        Some("z9hG4bK-fuzz")
    );
    assert_eq!(f.vias().count(), msg.vias().count() + 1);
    assert_eq!(
        f.max_forwards().ok().flatten(),
        Some(mf.map_or(70, |v| v.saturating_sub(1)))
    );
    assert_eq!(f.routes().count(), msg.routes().count().saturating_sub(1));
    assert_eq!(f.record_routes().count(), msg.record_routes().count() + 1);
    assert_eq!(f.call_id().ok(), msg.call_id().ok());
    assert_eq!(f.body(), msg.body());
}

/// A response built from a valid request parses, validates, and echoes the request's
/// Via, From, Call-ID and CSeq (RFC 3261 §8.2.6.2).
fn check_response(req: &Message, resp: &Bytes) {
    let r = match Message::parse(resp.clone()) {
        Ok(r) => r,
        Err(e) => panic!(
            "response does not parse: {e}: {:?}",
            String::from_utf8_lossy(resp)
        ),
    };
    if let Err(e) = r.validate() {
        panic!(
            "response does not validate: {e}: {:?}",
            String::from_utf8_lossy(resp)
        );
    }
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.call_id().ok(), req.call_id().ok());
    assert_eq!(r.cseq().ok(), req.cseq().ok());
    assert_eq!(r.vias().count(), req.vias().count());
    assert_eq!(r.from_tag(), req.from_tag());
    assert_eq!(r.body(), b"b");
    assert!(
        r.headers_by_name("X").next().is_none(),
        "reason phrase injected a header"
    );
}

/// CANCEL and ACK built from a valid INVITE are valid and match its transaction.
fn check_cancel_and_ack(invite: &Message) {
    let branch = invite
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned));
    let cancel = match invite.cancel(None) {
        Ok(c) => c,
        Err(e) => panic!("CANCEL of a valid INVITE failed: {e}"),
    };
    let c = match Message::parse(cancel.clone()) {
        Ok(c) => c,
        Err(e) => panic!(
            "CANCEL does not parse: {e}: {:?}",
            String::from_utf8_lossy(&cancel)
        ),
    };
    if let Err(e) = c.validate() {
        panic!(
            "CANCEL does not validate: {e}: {:?}",
            String::from_utf8_lossy(&cancel)
        );
    }
    assert_eq!(c.method(), Some(&Method::Cancel));
    assert_eq!(
        c.top_via().ok().and_then(|v| v.branch().map(str::to_owned)),
        branch
    );
    assert_eq!(
        c.cseq().ok().map(|s| s.seq),
        invite.cseq().ok().map(|s| s.seq)
    );
    assert_eq!(c.request_uri_str(), invite.request_uri_str());

    let resp = invite.response(486, "Busy Here").to_tag("fz").build();
    let Ok(r) = Message::parse(resp) else {
        panic!("response to a valid INVITE does not parse");
    };
    let ack = match invite.ack_for(&r) {
        Ok(a) => a,
        Err(e) => panic!("ACK for a valid INVITE failed: {e}"),
    };
    let a = match Message::parse(ack.clone()) {
        Ok(a) => a,
        Err(e) => panic!(
            "ACK does not parse: {e}: {:?}",
            String::from_utf8_lossy(&ack)
        ),
    };
    if let Err(e) = a.validate() {
        panic!(
            "ACK does not validate: {e}: {:?}",
            String::from_utf8_lossy(&ack)
        );
    }
    assert_eq!(a.method(), Some(&Method::Ack));
    assert_eq!(a.to_tag(), r.to_tag());
}

/// Every read-only accessor, results discarded.
pub fn read_everything(msg: &Message) {
    let _ = msg.is_request();
    let _ = msg.method().map(Method::as_str);
    let _ = msg.request_uri_str();
    if let Some(Ok(u)) = msg.request_uri() {
        uri_details(&u);
    }
    let _ = msg.status();
    let _ = msg.reason_phrase();
    let _ = msg.start_line_bytes();
    let _ = format!("{msg:?}");
    for h in msg.headers() {
        let _ = h.offset();
        let _ = msg.name_str(h);
        let _ = msg.value_bytes(h);
        let _ = msg.value_str(h);
        let _ = msg.value_unfolded(h);
        let _ = h.name.canonical();
        let _ = h.name.compact();
        let _ = h.name.to_string();
    }
    for &name in NAMES {
        let _ = msg.header(name);
        let _ = msg.header_str(name);
        let _ = msg.headers_named(name).count();
        let _ = msg.values(name).count();
        let _ = msg.tokens(name).count();
        for a in msg.auths(name).flatten() {
            let _ = a.params().count();
            let _ = a.param("realm");
        }
    }
    let _ = msg.headers_by_name("x-custom").count();
    let _ = msg.headers_by_name("v").count();
    let _ = msg.body();
    let _ = msg.body_bytes();
    let _ = msg.content_length();
    let _ = msg.headers_end();
    let _ = msg.call_id();
    let _ = msg.cseq();
    if let Ok(a) = msg.from_header() {
        name_addr_details(&a);
    }
    if let Ok(a) = msg.to_header() {
        name_addr_details(&a);
    }
    let _ = msg.to_tag();
    let _ = msg.from_tag();
    let _ = msg.max_forwards();
    let _ = msg.expires();
    let _ = msg.top_via();
    for v in msg.vias().flatten() {
        via_details(&v);
    }
    for a in msg
        .contacts()
        .chain(msg.routes())
        .chain(msg.record_routes())
        .flatten()
    {
        name_addr_details(&a);
    }
    let _ = msg.contact_is_star();
    for r in msg.reasons().flatten() {
        let _ = (r.protocol, r.cause, r.text);
    }
    let _ = msg.retry_after();
}

fn via_details(v: &Via<'_>) {
    let _ = v.branch();
    let _ = v.has_magic_cookie();
    let _ = v.received();
    let _ = v.rport();
    let _ = v.maddr();
    let _ = v.ttl();
    let _ = v.host.to_string();
    params_details(&v.params);
}

fn name_addr_details(a: &NameAddr<'_>) {
    let _ = a.display.map(|d| d.text());
    let _ = a.tag();
    let _ = a.q();
    let _ = a.expires();
    params_details(&a.params);
    uri_details(&a.uri);
}

fn params_details(p: &Params<'_>) {
    let _ = p.iter().count();
    let _ = p.get("tag");
    let _ = p.get_unquoted("text");
    let _ = p.validate();
}

/// Decodes a URI's parts and checks that its text form parses back to the same URI.
pub fn uri_details(u: &Uri<'_>) {
    let _ = u.scheme();
    let text = u.to_string();
    match Uri::parse(&text) {
        Ok(back) => assert_eq!(&back, u, "URI changed through Display: {text:?}"),
        Err(e) => panic!("URI Display output does not parse: {text:?}: {e}"),
    }
    if let Some(s) = u.as_sip() {
        let _ = s.user_decoded();
        let _ = s.transport();
        let _ = s.lr();
        let _ = s.maddr();
        assert!(
            s.equivalent(s),
            "a URI is not equivalent to itself: {text:?}"
        );
        params_details(&s.params);
    }
}

/// Every parser that takes text, on `s`.
pub fn text_input(s: &str) {
    assert!(rollover_sip::oracles::via_agrees(s));
    assert!(rollover_sip::oracles::header_name_agrees(s.as_bytes()));
    if let Ok(u) = Uri::parse(s) {
        uri_details(&u);
    }
    if let Ok(a) = NameAddr::parse(s) {
        name_addr_details(&a);
    }
    if let Some(v) = Via::parse(s) {
        via_details(&v);
    }
    if let Ok(h) = Host::parse(s) {
        let _ = h.to_string();
    }
    let p = Params::new(s);
    params_details(&p);
    let _ = CSeq::parse(s);
    if let Some(r) = Reason::parse(s) {
        let _ = (r.protocol, r.cause, r.text);
    }
    let _ = RetryAfter::parse(s);
    if let Some(a) = Auth::parse(s) {
        let _ = a.params().count();
        let _ = a.param("nonce");
    }
    let _ = rollover_sip::parse_qvalue(s);
    let _ = rollover_sip::unquote(s);
    let _ = scan::split_top_level(s, b',').count();
    let _ = scan::split_top_level(s, b';').count();
    if let Some((inner, _)) = scan::quoted_string(s) {
        let _ = scan::unescape_quoted(inner);
    }
    let _ = scan::percent_decode(s);
    let _ = scan::escapes_valid(s);
    let _ = scan::parse_decimal(s, u64::MAX);
    let _ = scan::trim_lws(s);
    let _ = HeaderName::classify(s.as_bytes());
    let _ = Method::from_token(s).as_str();
}

/// What a framer produced, comparable across ways of feeding it.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    /// A message's wire bytes.
    Message(Bytes),
    /// A keep-alive.
    Ping,
    /// The error that ended the stream.
    Error(ErrorKind),
}

/// Feeds `chunks` one after the other, draining frames after each; stops at the first
/// error. Returns the frames and the bytes left buffered.
pub fn frame_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Out>, usize) {
    let mut f = StreamFramer::new(Limits::default());
    let mut out = Vec::new();
    for chunk in chunks {
        f.push(chunk);
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    // A framed message is exactly what the datagram parser makes of its bytes.
                    let again = Message::parse(m.as_bytes().clone());
                    assert_eq!(
                        again.as_ref(),
                        Ok(&m),
                        "framer and datagram parser disagree"
                    );
                    out.push(Out::Message(m.as_bytes().clone()));
                }
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

/// Splits `data` into chunks whose sizes cycle through `sizes` (each at least 1).
pub fn split_by<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(1, |&s| usize::from(s) % 64 + 1);
        let (a, b) = rest.split_at(size.min(rest.len()));
        chunks.push(a);
        rest = b;
        i += 1;
    }
    chunks
}
