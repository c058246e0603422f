//! Building messages: responses to a request (RFC 3261 §8.2.6), CANCEL (§9.1), ACK for a
//! non-2xx final response (§17.1.1.3), and fresh requests for a UA.
//!
//! Headers copied from another message are copied as raw lines, so they stay byte-equal
//! (§8.2.6.2 requires From, Call-ID, CSeq and Via to equal the request's).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ParseError;
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderName;
use crate::scan;

/// A builder that needed a field it was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A mandatory header was not set.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The message built from is not usable (e.g. a response where a request is needed).
    #[error("source message: {0}")]
    Source(#[from] ParseError),
    /// The source is a response where a request was needed, or the reverse.
    #[error("wrong kind of source message")]
    WrongKind,
}

/// Replaces CR, LF and other controls with spaces so text can go on a header line.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|c| c >= b' ' && c != 0x7f) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(sanitize(value).as_bytes());
    out.put_slice(b"\r\n");
}

fn put_lines(out: &mut BytesMut, msg: &Message, name: HeaderName) {
    for h in msg.headers_named(name) {
        out.put_slice(h.line.of(&msg.buf));
    }
}

fn finish(mut out: BytesMut, extra: &[(String, String)], body: Option<&(String, Bytes)>) -> Bytes {
    for (n, v) in extra {
        put_header(&mut out, n, v);
    }
    match body {
        Some((ct, b)) => {
            put_header(&mut out, "Content-Type", ct);
            put_header(&mut out, "Content-Length", &b.len().to_string());
            out.put_slice(b"\r\n");
            out.put_slice(b);
        }
        None => out.put_slice(b"Content-Length: 0\r\n\r\n"),
    }
    out.freeze()
}

/// Builds a response to a request. Create with [`Message::response`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'m> {
    req: &'m Message,
    code: u16,
    reason: String,
    to_tag: Option<String>,
    record_route: bool,
    extra: Vec<(String, String)>,
    body: Option<(String, Bytes)>,
}

impl Message {
    /// Starts a response to this request (§8.2.6: Via, From, Call-ID, CSeq copied; To copied
    /// with a tag added when the request's To has none and the status is above 100).
    pub fn response(&self, code: u16, reason: &str) -> ResponseBuilder<'_> {
        ResponseBuilder {
            req: self,
            code,
            reason: reason.to_owned(),
            to_tag: None,
            record_route: false,
            extra: Vec::new(),
            body: None,
        }
    }

    /// Starts a response with the code's canonical reason phrase.
    pub fn reply(&self, code: crate::StatusCode) -> ResponseBuilder<'_> {
        self.response(code.as_u16(), code.reason())
    }
}

impl ResponseBuilder<'_> {
    /// The To tag to add when the request has none.
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_owned());
        self
    }

    /// Copies Record-Route (a UAS does so in dialog-creating responses, §12.1.1).
    pub fn copy_record_route(mut self) -> Self {
        self.record_route = true;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body and its type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// Serialises the response.
    pub fn build(&self) -> Bytes {
        let req = self.req;
        let mut out = BytesMut::with_capacity(req.headers_end() + 128);
        out.put_slice(format!("SIP/2.0 {} {}\r\n", self.code, sanitize(&self.reason)).as_bytes());
        put_lines(&mut out, req, HeaderName::Via);
        if self.record_route {
            put_lines(&mut out, req, HeaderName::RecordRoute);
        }
        put_lines(&mut out, req, HeaderName::From);
        if let Some(h) = req.header(HeaderName::To) {
            let value = String::from_utf8_lossy(req.value_bytes(h));
            let has_tag = req.to_tag().is_some();
            match (&self.to_tag, has_tag, self.code > 100) {
                (Some(tag), false, true) => {
                    put_header(&mut out, "To", &format!("{value};tag={tag}"));
                }
                _ => out.put_slice(h.line.of(&req.buf)),
            }
        }
        put_lines(&mut out, req, HeaderName::CallId);
        put_lines(&mut out, req, HeaderName::CSeq);
        finish(out, &self.extra, self.body.as_ref())
    }
}

/// Request line plus the headers a CANCEL and an ACK share with their INVITE.
fn same_transaction_request(
    invite: &Message,
    method: &str,
    to_from: &Message,
) -> Result<BytesMut, BuildError> {
    let uri = invite.request_uri_str().ok_or(BuildError::WrongKind)?;
    let via = invite.top_via_text()?;
    let cseq = invite.cseq()?;
    let mut out = BytesMut::with_capacity(invite.headers_end());
    for part in [method, " ", uri, " SIP/2.0\r\n"] {
        out.put_slice(part.as_bytes());
    }
    // Only the top Via, as written: the CANCEL/ACK belongs to the same client transaction
    // (§9.1).
    put_header(&mut out, "Via", via);
    put_lines(&mut out, invite, HeaderName::Route);
    out.put_slice(b"Max-Forwards: 70\r\n");
    put_lines(&mut out, invite, HeaderName::From);
    put_lines(&mut out, to_from, HeaderName::To);
    put_lines(&mut out, invite, HeaderName::CallId);
    let mut value = String::with_capacity(32);
    crate::scan::push_u64(&mut value, u64::from(cseq.seq));
    value.push(' ');
    value.push_str(method);
    put_header(&mut out, "CSeq", &value);
    Ok(out)
}

impl Message {
    /// A CANCEL for this INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
    /// number, top Via and Route; optionally with a Reason (RFC 3326), e.g.
    /// `SIP;cause=200;text="Call completed elsewhere"`.
    pub fn cancel(&self, reason: Option<&str>) -> Result<Bytes, BuildError> {
        let out = same_transaction_request(self, "CANCEL", self)?;
        let extra: Vec<(String, String)> = reason
            .map(|r| vec![("Reason".to_owned(), r.to_owned())])
            .unwrap_or_default();
        Ok(finish(out, &extra, None))
    }

    /// The ACK for a non-2xx final `response` to this INVITE (RFC 3261 §17.1.1.3): To is
    /// taken from the response, so it carries the response's tag.
    pub fn ack_for(&self, response: &Message) -> Result<Bytes, BuildError> {
        if response.is_request() {
            return Err(BuildError::WrongKind);
        }
        let out = same_transaction_request(self, "ACK", response)?;
        Ok(finish(out, &[], None))
    }
}

/// Builds a new request (the UA side). The caller provides identifiers; this type does not
/// invent tags, branches or Call-IDs (those come from the caller's seeded RNG).
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    via: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    max_forwards: u8,
    extra: Vec<(String, String)>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// A request with this method and Request-URI.
    pub fn new(method: Method, uri: &str) -> RequestBuilder {
        RequestBuilder {
            method,
            uri: uri.to_owned(),
            via: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            max_forwards: 70,
            extra: Vec::new(),
            body: None,
        }
    }

    /// Adds a Via value (the first added is the topmost).
    pub fn via(mut self, value: &str) -> Self {
        self.via.push(value.to_owned());
        self
    }

    /// Sets From (a name-addr with its tag).
    pub fn from(mut self, value: &str) -> Self {
        self.from = Some(value.to_owned());
        self
    }

    /// Sets To.
    pub fn to(mut self, value: &str) -> Self {
        self.to = Some(value.to_owned());
        self
    }

    /// Sets Call-ID.
    pub fn call_id(mut self, value: &str) -> Self {
        self.call_id = Some(value.to_owned());
        self
    }

    /// Sets the CSeq number (the method is the request's).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = Some(seq);
        self
    }

    /// Sets Max-Forwards (default 70).
    pub fn max_forwards(mut self, v: u8) -> Self {
        self.max_forwards = v;
        self
    }

    /// Adds any header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body and its type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// Serialises the request.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        if self.via.is_empty() {
            return Err(BuildError::Missing("Via"));
        }
        if self.uri.bytes().any(scan::is_lws) {
            return Err(BuildError::Missing("Request-URI"));
        }
        let from = self.from.as_deref().ok_or(BuildError::Missing("From"))?;
        let to = self.to.as_deref().ok_or(BuildError::Missing("To"))?;
        let call_id = self
            .call_id
            .as_deref()
            .ok_or(BuildError::Missing("Call-ID"))?;
        let cseq = self.cseq.ok_or(BuildError::Missing("CSeq"))?;
        let mut out = BytesMut::with_capacity(512);
        out.put_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        for v in &self.via {
            put_header(&mut out, "Via", v);
        }
        put_header(&mut out, "Max-Forwards", &self.max_forwards.to_string());
        put_header(&mut out, "From", from);
        put_header(&mut out, "To", to);
        put_header(&mut out, "Call-ID", call_id);
        put_header(&mut out, "CSeq", &format!("{cseq} {}", self.method));
        Ok(finish(out, &self.extra, self.body.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        let b = RequestBuilder::new(Method::Invite, "sip:bob@biloxi.com")
            .via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds")
            .from("Alice <sip:alice@atlanta.com>;tag=1928301774")
            .to("Bob <sip:bob@biloxi.com>")
            .call_id("a84b4c76e66710@pc33.atlanta.com")
            .cseq(314159)
            .header("Route", "<sip:p1.example.com;lr>")
            .header("Contact", "<sip:alice@pc33.atlanta.com>")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build()
            .unwrap();
        Message::parse(b).unwrap()
    }

    #[test]
    fn fresh_request_is_valid() {
        let m = invite();
        m.validate().unwrap();
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.body(), b"v=0\r\n");
        assert_eq!(
            RequestBuilder::new(Method::Bye, "sip:a@b")
                .build()
                .unwrap_err(),
            BuildError::Missing("Via")
        );
    }

    #[test]
    fn response_copies_and_tags() {
        let req = invite();
        let r = Message::parse(req.response(180, "Ringing").to_tag("a6c85cf").build()).unwrap();
        r.validate().unwrap();
        assert_eq!(r.status(), Some(180));
        assert_eq!(r.to_tag(), Some("a6c85cf"));
        assert_eq!(r.call_id().unwrap(), req.call_id().unwrap());
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        let trying = Message::parse(req.response(100, "Trying").to_tag("x").build()).unwrap();
        assert_eq!(trying.to_tag(), None);
        let bad = Message::parse(req.response(400, "Bad\r\nInjected: yes").build()).unwrap();
        assert!(bad.headers_by_name("Injected").next().is_none());
    }

    #[test]
    fn cancel_and_ack() {
        let req = invite();
        let c = Message::parse(
            req.cancel(Some("SIP;cause=200;text=\"Call completed elsewhere\""))
                .unwrap(),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.method(), Some(&Method::Cancel));
        assert_eq!(c.cseq().unwrap().seq, 314159);
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(c.routes().count(), 1);
        assert_eq!(c.reasons().next().unwrap().unwrap().cause, Some(200));
        let resp = Message::parse(req.response(486, "Busy Here").to_tag("t486").build()).unwrap();
        let ack = Message::parse(req.ack_for(&resp).unwrap()).unwrap();
        ack.validate().unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.to_tag(), Some("t486"));
        assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    }

    /// The CANCEL and the ACK repeat the INVITE's top Via value as written: the first of a
    /// list, a folded one on one line, never the ones below.
    #[test]
    fn cancel_and_ack_repeat_the_top_via_only() {
        let top = "SIP/2.0/UDP proxy.example.com:5070;branch=z9hG4bKtop;received=192.0.2.9";
        for via in [
            format!("Via: {top}, SIP/2.0/TCP pc33.example.com;branch=z9hG4bKlow\r\n"),
            format!("Via: {top}\r\nVia: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKlow\r\n"),
            "Via: SIP/2.0/UDP proxy.example.com:5070\r\n ;branch=z9hG4bKtop;received=192.0.2.9\r\n"
                .to_owned(),
        ] {
            let text = format!(
                "INVITE sip:bob@example.com SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
                 To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1928\r\n\
                 Call-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let req = Message::parse(text.into_bytes()).unwrap();
            req.validate().unwrap();
            let resp = Message::parse(req.response(486, "Busy Here").to_tag("t").build()).unwrap();
            for out in [req.cancel(None).unwrap(), req.ack_for(&resp).unwrap()] {
                let m = Message::parse(out).unwrap();
                m.validate().unwrap();
                let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
                assert_eq!(vias.len(), 1, "{via}");
                assert_eq!(vias[0].branch(), Some("z9hG4bKtop"), "{via}");
                assert_eq!(vias[0].sent_by, "proxy.example.com:5070", "{via}");
                assert_eq!(vias[0].received(), Some("192.0.2.9"), "{via}");
            }
        }
    }
}
