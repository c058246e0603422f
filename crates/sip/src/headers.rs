//! Typed header values, decoded on demand from the message buffer.

use std::borrow::Cow;

use crate::addr::NameAddr;
use crate::auth::Auth;
use crate::error::{ErrorKind, ParseError};
use crate::message::{header_label, Header, IdSpans, Message, Span, ViaSpans};
use crate::method::Method;
use crate::name::HeaderName;
use crate::params::Params;
use crate::scan;
use crate::via::{first_via_value, top_via_of};
pub use crate::via::{has_magic_cookie, Via, MAGIC_COOKIE};

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number, below 2^31 (§8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Option<CSeq> {
        CSeq::parse_bytes(s.as_bytes())
    }

    /// [`CSeq::parse`] on the raw value: everything it accepts is ASCII, so the value
    /// needs no UTF-8 check first.
    pub(crate) fn parse_bytes(b: &[u8]) -> Option<CSeq> {
        let b = scan::trim_lws_bytes(b);
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let seq = scan::parse_decimal_bytes(b.get(..digits)?, (1 << 31) - 1)?;
        let rest = b.get(digits..)?;
        if !rest.first().is_some_and(|&c| scan::is_lws(c)) {
            return None;
        }
        let method = scan::trim_lws_bytes(rest);
        if !scan::is_token(method) {
            return None;
        }
        Some(CSeq {
            seq: u32::try_from(seq).ok()?,
            method: Method::from_token_bytes(method),
        })
    }
}

/// Reason (RFC 3326): why a request was sent, e.g. a CANCEL after a 200 elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason<'a> {
    /// `SIP`, `Q.850` or another protocol token.
    pub protocol: &'a str,
    /// The `cause` parameter.
    pub cause: Option<u16>,
    /// The `text` parameter, unquoted.
    pub text: Option<Cow<'a, str>>,
}

impl<'a> Reason<'a> {
    /// Parses one Reason value.
    pub fn parse(s: &'a str) -> Option<Reason<'a>> {
        let s = scan::trim_lws(s);
        let (protocol, params) = match s.find(';') {
            Some(i) => (scan::trim_lws(s.get(..i)?), Params::new(s.get(i + 1..)?)),
            None => (s, Params::new("")),
        };
        if !scan::is_token(protocol.as_bytes()) || params.validate().is_err() {
            return None;
        }
        let cause = match params.get("cause") {
            Some(Some(c)) => Some(c.parse().ok()?),
            Some(None) => return None,
            None => None,
        };
        Some(Reason {
            protocol,
            cause,
            text: params.get_unquoted("text"),
        })
    }
}

/// Retry-After (RFC 3261 §20.33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter<'a> {
    /// Seconds to wait.
    pub seconds: u32,
    /// The comment in parentheses, if any.
    pub comment: Option<&'a str>,
    /// The `duration` parameter.
    pub duration: Option<u32>,
}

impl<'a> RetryAfter<'a> {
    /// Parses `delta-seconds [ comment ] *( SEMI retry-param )`.
    pub fn parse(s: &'a str) -> Option<RetryAfter<'a>> {
        let s = scan::trim_lws(s);
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let seconds =
            u32::try_from(scan::parse_decimal(s.get(..digits)?, u64::from(u32::MAX))?).ok()?;
        let mut rest = scan::trim_lws(s.get(digits..)?);
        let mut comment = None;
        if let Some(c) = rest.strip_prefix('(') {
            let close = c.find(')')?;
            comment = Some(c.get(..close)?);
            rest = scan::trim_lws(c.get(close + 1..)?);
        }
        let params = match rest.strip_prefix(';') {
            Some(p) => Params::new(p),
            None if rest.is_empty() => Params::new(""),
            None => return None,
        };
        params.validate().ok()?;
        let duration = match params.get("duration") {
            Some(Some(d)) => Some(d.parse().ok()?),
            Some(None) => return None,
            None => None,
        };
        Some(RetryAfter {
            seconds,
            comment,
            duration,
        })
    }
}

/// Where the header parameters of a name-addr or addr-spec value begin (just past their
/// `;`), without decoding the URI: after `>` when the URI is bracketed, else after the first
/// `;` (RFC 3261 §20).
fn params_start(v: &[u8]) -> Option<usize> {
    let mut from = v.iter().take_while(|c| scan::is_lws(**c)).count();
    if v.get(from) == Some(&b'"') {
        // A quoted display name may hold '<', '>' or ';'.
        from += scan::closing_quote(v.get(from..)?)? + 1;
    }
    let after_uri = match scan::find_byte_from(v, from, b'<') {
        Some(lt) => scan::find_byte_from(v, lt, b'>')? + 1,
        None => from,
    };
    Some(scan::find_byte_from(v, after_uri, b';')? + 1)
}

/// One name-addr value's header parameters, once it is decoded whole or (`decode` false)
/// checked for shape only ([`NameAddr::check_shape`]).
fn checked_addr(v: &str, decode: bool) -> Option<Params<'_>> {
    if decode {
        NameAddr::parse(v).ok().map(|a| a.params)
    } else {
        NameAddr::check_shape(v).ok()
    }
}

fn bad(h: &Header) -> ParseError {
    ErrorKind::BadHeader(header_label(h.name)).at(h.offset())
}

impl Message {
    fn single(&self, name: HeaderName) -> Result<(&Header, &str), ParseError> {
        let h = self
            .header(name)
            .ok_or(ErrorKind::MissingHeader(header_label(name)).at(self.headers_end()))?;
        Ok((h, self.value_str(h)?))
    }

    /// Call-ID (mandatory).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        match self.ids().call_id().map(|s| self.text(s).ok_or(())) {
            Some(Ok(v)) => Ok(v),
            _ => self.read_call_id(),
        }
    }

    /// The Call-ID and the tags, found once per message.
    fn ids(&self) -> IdSpans {
        if let Some(ids) = self.ids.get() {
            return ids;
        }
        let ids = IdSpans::new(
            self.read_call_id().ok().map(|v| self.span_of(v)),
            self.read_tag(HeaderName::From).map(|v| self.span_of(v)),
            self.read_tag(HeaderName::To).map(|v| self.span_of(v)),
        );
        self.ids.set(ids);
        ids
    }

    /// Notes the Call-ID and tags `validate` found (slices of this message), unless they
    /// were noted already.
    pub(crate) fn note_ids(&self, call_id: &str, from_tag: Option<&str>, to_tag: Option<&str>) {
        if self.ids.get().is_some() {
            return;
        }
        self.ids.set(IdSpans::new(
            Some(self.span_of(call_id)),
            from_tag.map(|t| self.span_of(t)),
            to_tag.map(|t| self.span_of(t)),
        ));
    }

    /// Where `part`, a slice of this message's buffer, lies in it.
    fn span_of(&self, part: &str) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        debug_assert!(
            start + part.len() <= self.buf.len(),
            "not a part of the message"
        );
        Span::new(start, start + part.len())
    }

    fn read_tag(&self, name: HeaderName) -> Option<&str> {
        let h = self.header(name)?;
        let from = u32::try_from(params_start(self.value_bytes(h))?).ok()?;
        let params = Span {
            start: h.value.start.checked_add(from)?,
            end: h.value.end,
        };
        Params::new(self.text(params)?).get("tag").flatten()
    }

    pub(crate) fn read_call_id(&self) -> Result<&str, ParseError> {
        let (h, v) = self.single(HeaderName::CallId)?;
        // LWS bytes are all at or below SP: one compare per byte in the common case.
        if v.is_empty() || v.bytes().any(|c| c <= b' ' && scan::is_lws(c)) {
            return Err(bad(h));
        }
        Ok(v)
    }

    /// CSeq (mandatory).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        if let Some((seq, code)) = self.cseq.get() {
            if let Some(method) = Method::from_code(code) {
                return Ok(CSeq { seq, method });
            }
        }
        let h = self
            .header(HeaderName::CSeq)
            .ok_or(ErrorKind::MissingHeader("CSeq").at(self.headers_end()))?;
        let cseq = CSeq::parse_bytes(self.value_bytes(h)).ok_or_else(|| bad(h))?;
        // An extension method is read again each time (it would need a copy to be kept).
        if let Some(code) = cseq.method.code() {
            self.cseq.set((cseq.seq, code));
        }
        Ok(cseq)
    }

    /// From (mandatory).
    pub fn from_header(&self) -> Result<NameAddr<'_>, ParseError> {
        let (h, v) = self.single(HeaderName::From)?;
        NameAddr::parse(v).map_err(|_| bad(h))
    }

    /// The header parameter `param` of the single `name` header (From, To), found while
    /// the value's shape is checked ([`NameAddr::check_shape`]: display name, brackets,
    /// parameters; the URI left as written).
    pub(crate) fn addr_param(
        &self,
        name: HeaderName,
        param: &str,
    ) -> Result<Option<Option<&str>>, ParseError> {
        let (h, v) = self.single(name)?;
        match NameAddr::check_shape_get(v, param) {
            Ok((_, found)) => Ok(found),
            Err(_) => Err(bad(h)),
        }
    }

    /// Checks every value of Contact, Route and Record-Route for shape as
    /// [`Message::addr_param`] does, Route's URIs decoded when `decode_route`; Contact not at all when one of its
    /// values is `*` (REGISTER, §10.2.2). One pass over the headers; the error reported is
    /// the first Contact one, else the first Route one, else the first Record-Route one.
    pub(crate) fn check_address_headers(&self, decode_route: bool) -> Result<(), ParseError> {
        // Contact, Route, Record-Route.
        let mut first_error: [Option<ParseError>; 3] = [None, None, None];
        let mut star = false;
        for h in &self.headers {
            let (slot, decode) = match h.name {
                HeaderName::Contact => (0, false),
                HeaderName::Route => (1, decode_route),
                HeaderName::RecordRoute => (2, false),
                _ => continue,
            };
            let v = match self.value_str(h) {
                Ok(v) => v,
                Err(e) => {
                    if let Some(e0 @ None) = first_error.get_mut(slot) {
                        *e0 = Some(e);
                    }
                    continue;
                }
            };
            for v in scan::split_top_level(v, b',').map(scan::trim_lws) {
                if slot == 0 && v == "*" {
                    star = true;
                } else if checked_addr(v, decode).is_none() {
                    if let Some(e0 @ None) = first_error.get_mut(slot) {
                        *e0 = Some(bad(h));
                    }
                }
            }
        }
        let [contact, route, record_route] = first_error;
        match (contact.filter(|_| !star), route, record_route) {
            (Some(e), _, _) | (None, Some(e), _) | (None, None, Some(e)) => Err(e),
            (None, None, None) => Ok(()),
        }
    }

    /// To (mandatory).
    pub fn to_header(&self) -> Result<NameAddr<'_>, ParseError> {
        let (h, v) = self.single(HeaderName::To)?;
        NameAddr::parse(v).map_err(|_| bad(h))
    }

    /// The To tag, if the To header has one.
    ///
    /// Reads only the header parameters (neither the display name nor the URI is decoded):
    /// transaction matching asks for tags on every message, and `validate()` checks the
    /// whole header.
    pub fn to_tag(&self) -> Option<&str> {
        let s = self.ids().tag_of_to()?;
        self.text(s)
    }

    /// The From tag, if the From header has one (see [`Message::to_tag`]).
    pub fn from_tag(&self) -> Option<&str> {
        let s = self.ids().tag_of_from()?;
        self.text(s)
    }

    /// Max-Forwards, when present (0–255).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.header(HeaderName::MaxForwards) {
            None => Ok(None),
            Some(h) => {
                let v = self.value_str(h)?;
                scan::parse_decimal(v, 255)
                    .and_then(|v| u8::try_from(v).ok())
                    .map(Some)
                    .ok_or_else(|| bad(h))
            }
        }
    }

    /// Expires, when present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.header(HeaderName::Expires) {
            None => Ok(None),
            Some(h) => {
                let v = self.value_str(h)?;
                scan::parse_decimal(v, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .map(Some)
                    .ok_or_else(|| bad(h))
            }
        }
    }

    /// The topmost Via value. Parsed once per message; later calls rebuild it from the
    /// positions noted the first time.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        if let Some(spans) = self.top_via.0.get() {
            if let Some(via) = spans.rebuild(self) {
                return Ok(via);
            }
        }
        let (h, v) = self.single(HeaderName::Via)?;
        let via = top_via_of(v).ok_or_else(|| bad(h))?;
        let index = self.headers.iter().position(|x| std::ptr::eq(x, h));
        if let Some(spans) = index.and_then(|i| ViaSpans::of(&via, v, i)) {
            let _ = self.top_via.0.set(spans);
        }
        Ok(via)
    }

    /// The top Via's branch (when it has one) and sent-by: what a transaction key needs, read
    /// off the note [`Message::top_via`] keeps, without rebuilding the rest of the Via.
    pub fn top_via_branch_and_sent_by(&self) -> Result<(Option<&str>, &str), ParseError> {
        if let Some(parts) = self
            .top_via
            .0
            .get()
            .and_then(|s| s.branch_and_sent_by(self))
        {
            return Ok(parts);
        }
        let via = self.top_via()?;
        Ok((via.branch(), via.sent_by))
    }

    /// The top Via value as written, for a CANCEL or ACK that repeats it (§9.1, §17.1.1.3).
    /// Parsed only when not yet parsed and the text is unusual (folded): a request this
    /// element builds such a request for is one it sent, whose top Via it wrote.
    pub(crate) fn top_via_text(&self) -> Result<&str, ParseError> {
        let (h, v) = self.single(HeaderName::Via)?;
        if h.folded && self.top_via.0.get().is_none() {
            self.top_via()?;
        }
        match first_via_value(v) {
            "" => Err(bad(h)),
            first => Ok(first),
        }
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.parsed_values(HeaderName::Via, Via::parse)
    }

    /// Every Contact value. A `*` Contact (REGISTER, §10.2.2) yields an error here; test
    /// for it with [`Message::contact_is_star`].
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.parsed_values(HeaderName::Contact, |v| NameAddr::parse(v).ok())
    }

    /// Whether the message has `Contact: *`.
    pub fn contact_is_star(&self) -> bool {
        self.values(HeaderName::Contact)
            .any(|v| v.is_ok_and(|(_, v)| v == "*"))
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.parsed_values(HeaderName::Route, |v| NameAddr::parse(v).ok())
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.parsed_values(HeaderName::RecordRoute, |v| NameAddr::parse(v).ok())
    }

    /// Every Reason value.
    pub fn reasons(&self) -> impl Iterator<Item = Result<Reason<'_>, ParseError>> + '_ {
        self.parsed_values(HeaderName::Reason, Reason::parse)
    }

    /// Retry-After, when present.
    pub fn retry_after(&self) -> Option<Result<RetryAfter<'_>, ParseError>> {
        let h = self.header(HeaderName::RetryAfter)?;
        Some(
            self.value_str(h)
                .and_then(|v| RetryAfter::parse(v).ok_or_else(|| bad(h))),
        )
    }

    /// Every challenge or credential of an authentication header (one per header field).
    pub fn auths(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<Auth<'_>, ParseError>> + '_ {
        self.headers_named(name).map(move |h| {
            self.value_str(h)
                .and_then(|v| Auth::parse(v).ok_or_else(|| bad(h)))
        })
    }

    /// Option tags of Supported, Require, Proxy-Require, Unsupported, or the methods of Allow.
    pub fn tokens(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.values(name)
            .filter_map(Result::ok)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    fn parsed_values<'s, T: 's>(
        &'s self,
        name: HeaderName,
        parse: impl Fn(&'s str) -> Option<T> + 's,
    ) -> impl Iterator<Item = Result<T, ParseError>> + 's {
        self.values(name).map(move |r| {
            let (h, v) = r?;
            parse(v).ok_or_else(|| bad(h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    #[test]
    fn a_noted_top_via_reads_back_as_parsed() {
        for via in [
            "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK-6;rport",
            "SIP/2.0/UDP [2001:db8::9];branch=z9hG4bK-7",
            "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-8;received=192.0.2.2",
            "SIP / 2.0 / UDP  pc33.example.com ; branch = z9hG4bK-9 , SIP/2.0/UDP h2",
            "SIP/2.0/UDP host.example.com",
        ] {
            let text = format!(
                "OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP other\r\nCall-ID: c\r\n\r\n"
            );
            let m = Message::parse(bytes::Bytes::from(text)).unwrap();
            let first = m.top_via().unwrap();
            assert!(m.top_via.0.get().is_some(), "noted: {via}");
            assert_eq!(m.top_via().unwrap(), first, "{via}");
        }
    }

    #[test]
    fn tags_read_from_the_header_parameters() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bob <sip:bob@b>;tag=a6c85cf", Some("a6c85cf")),
            ("<sip:bob@b;tag=uri-param>", None),
            ("sip:bob@b;tag=addr-spec", Some("addr-spec")),
            ("\"B<o>b;x\" <sip:bob@b;lr>;foo;TAG=t1", Some("t1")),
            ("\"unterminated <sip:bob@b>;tag=x", None),
            ("Bob <sip:bob@b;tag=x", None),
            ("Bob <sip:bob@b>;tag", None),
            ("Bob <sip:bob@b>", None),
        ];
        for (to, tag) in cases {
            let raw = format!(
                "OPTIONS sip:b SIP/2.0\r\nTo: {to}\r\nFrom: {to}\r\nContent-Length: 0\r\n\r\n"
            );
            let m = Message::parse(raw.into_bytes()).unwrap();
            assert_eq!(m.to_tag(), *tag, "{to}");
            assert_eq!(m.from_tag(), *tag, "{to}");
        }
        // Only the parameters are decoded: a display name that is not UTF-8 does not hide
        // the tag (validate() is what refuses such a header).
        let m = Message::parse(&b"OPTIONS sip:b SIP/2.0\r\nTo: \xff <sip:b>;tag=t\r\n\r\n"[..])
            .unwrap();
        assert_eq!(m.to_tag(), Some("t"));
        assert!(m.validate().is_err());
    }

    /// The Call-ID and tags are found once and then read from where they were noted: the
    /// same answers, every time, as reading the headers again.
    #[test]
    fn noted_call_id_and_tags_read_back_as_found() {
        let cases = [
            "Call-ID: a84b4c76e66710@pc33\r\nFrom: <sip:a@b>;tag=1928\r\nTo: <sip:c@d>",
            "i: short-form\r\nf: <sip:a@b>;tag=x\r\nt: Bob <sip:c@d>;tag=y",
            "Call-ID: two words\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>;tag",
            "From: <sip:a@b>;tag=only-from",
            "Call-ID: \r\nTo: <sip:c@d>;TAG=upper",
        ];
        for headers in cases {
            let text = format!("OPTIONS sip:b SIP/2.0\r\n{headers}\r\nContent-Length: 0\r\n\r\n");
            let m = Message::parse(text.into_bytes()).unwrap();
            let call_id = m.read_call_id().map_err(|e| e.to_string());
            let (from, to) = (m.read_tag(HeaderName::From), m.read_tag(HeaderName::To));
            for _ in 0..2 {
                assert_eq!(m.call_id().map_err(|e| e.to_string()), call_id, "{headers}");
                assert_eq!(m.from_tag(), from, "{headers}");
                assert_eq!(m.to_tag(), to, "{headers}");
            }
            assert!(m.ids.get().is_some(), "noted: {headers}");
            // A clone keeps the note and the answers.
            let c = m.clone();
            assert_eq!(c.to_tag(), to);
        }
    }

    /// A CSeq read once is noted; later reads (and a clone's) give what parsing gives. An
    /// extension method is parsed each time; a missing or bad CSeq stays an error.
    #[test]
    fn noted_cseq_reads_back_as_parsed() {
        let methods: Vec<String> = (0..=u8::MAX)
            .map_while(Method::from_code)
            .map(|m| m.to_string())
            .chain(["FOO".to_owned()])
            .collect();
        for (n, method) in methods.iter().enumerate() {
            let text = format!(
                "{method} sip:b SIP/2.0\r\nCSeq: {}  {method}\r\nContent-Length: 0\r\n\r\n",
                2_147_483_647 - n
            );
            let m = Message::parse(text.into_bytes()).unwrap();
            let value = m.header_str(HeaderName::CSeq).unwrap().unwrap();
            let parsed = CSeq::parse(value).unwrap();
            for _ in 0..2 {
                assert_eq!(m.cseq().unwrap(), parsed, "{method}");
            }
            assert_eq!(m.cseq.get().is_some(), *method != "FOO", "{method}");
            assert_eq!(m.clone().cseq().unwrap(), parsed, "{method}");
        }
        for bad in ["CSeq: x INVITE\r\n", "CSeq: 1INVITE\r\n", ""] {
            let text = format!("INVITE sip:b SIP/2.0\r\n{bad}Content-Length: 0\r\n\r\n");
            let m = Message::parse(text.into_bytes()).unwrap();
            assert!(m.cseq().is_err() && m.cseq().is_err(), "{bad}");
            assert!(m.cseq.get().is_none(), "{bad}");
        }
    }

    #[test]
    fn common_vias_take_the_one_pass_parser() {
        for v in [
            "SIP/2.0/UDP edge1.atlanta.com:5060;branch=z9hG4bK74bf9.2a1",
            "SIP/2.0/TCP 192.0.2.55;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.1",
            "sip/2.0/tls h",
        ] {
            assert!(Via::parse_plain(v).is_some(), "{v}");
            assert_eq!(Via::parse_plain(v), Via::parse_general(v));
        }
    }

    proptest::proptest! {
        /// Whenever the one-pass Via parser accepts a value, the general parser finds the
        /// same fields; when it declines, `Via::parse` is the general parser's answer.
        #[test]
        fn plain_matches_general(
            prefix in proptest::sample::select(vec!["SIP/2.0/", "sip/2.0/", "SiP/2.0/", "SIP / 2.0 /", "SIP/2.1/", "SIP/2.0"]),
            transport in proptest::sample::select(vec!["UDP", "tls", "", "U@P", "TCP "]),
            sep in proptest::sample::select(vec![" ", "  ", "\t", "", "\r\n "]),
            host in proptest::sample::select(vec!["a.b", "1.2.3.4", "1.2.3", "[::1]", "-x", ".a", "a_b", "999.1.1.1", "", "h@st", "A.Example.COM."]),
            port in proptest::sample::select(vec![":5060", ":", ":70000", ":+5", "", ":65535", ":5060x"]),
            params in proptest::collection::vec(proptest::sample::select(vec![
                ";branch=z9hG4bK1", ";rport", ";rport=+5", ";rport=x", ";BRANCH=a;branch=b",
                "; branch=x", ";a=\"q\"", ";", ";;", ";a=b=c", ";received=1.2.3.4", ";x=<y>",
                ";rport=99999", ";branch", ";ttl=5", " ;x", ";a,b", ";a=", ";=b", ";branch=",
            ]), 0..4),
        ) {
            let v = format!("{prefix}{transport}{sep}{host}{port}{}", params.concat());
            let general = Via::parse_general(&v);
            if let Some(plain) = Via::parse_plain(&v) {
                proptest::prop_assert_eq!(Some(plain), general);
            }
        }
    }

    #[test]
    fn via_with_lws_and_params() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_magic_cookie());
        let v = Via::parse(
            "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;rport=5071;received=10.0.0.1;ttl=3",
        )
        .unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(Some(5071)));
        assert_eq!(v.received(), Some("10.0.0.1"));
        assert_eq!(v.ttl(), Some(3));
        assert!(v.has_magic_cookie());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(Via::parse("SIP/2.0/UDP").is_none());
        assert!(Via::parse("SIP/2.0/UDP h;rport=99999").is_none());
    }

    #[test]
    fn tags_without_decoding_the_uri() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nTo: \"x>;tag=no\" <sip:b@h;tag=uri>;tag=yes\r\nFrom: sip:a@h;tag=f1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        let m = Message::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(m.to_tag(), Some("yes"));
        assert_eq!(m.from_tag(), Some("f1"));
        assert_eq!(m.to_header().unwrap().tag(), Some("yes"));
    }

    #[test]
    fn received_and_rport_are_the_first_of_their_parameters() {
        for v in [
            "SIP/2.0/UDP h;branch=z9hG4bK1",
            "SIP/2.0/UDP h;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP h;branch=z9hG4bK1;rport=5070;received=192.0.2.9",
            "SIP/2.0/UDP h;received=192.0.2.9;RPORT=1;received=192.0.2.10;rport=2",
            "SIP/2.0/UDP h;Received;rport",
            "SIP/2.0/UDP h ; rport = 7 ; received = 192.0.2.1 ; branch=z9hG4bK2",
            "SIP/2.0/UDP h;branch=z9hG4bK1;received=\"x\";rport",
        ] {
            // Read off the parameter list, as a reader without the notes would.
            fn by_list<'a>(via: &Via<'a>) -> (Option<&'a str>, Option<Option<u16>>) {
                (
                    via.params.get("received").flatten(),
                    via.params
                        .get("rport")
                        .map(|p| p.and_then(|p| p.parse().ok())),
                )
            }
            let via = Via::parse(v).unwrap();
            assert_eq!(via.received_and_rport(), by_list(&via), "{v}");
            assert_eq!((via.received(), via.rport()), by_list(&via), "{v}");
            let general = Via::parse_general(v).unwrap();
            assert_eq!(general.received_and_rport(), by_list(&general), "{v}");
            // The top Via of a message, parsed once and then rebuilt from its note.
            let text = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {v}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
            let m = Message::parse(text.into_bytes()).unwrap();
            for _ in 0..2 {
                let top = m.top_via().unwrap();
                assert_eq!(top.received_and_rport(), by_list(&top), "{v}");
            }
        }
    }

    #[test]
    fn a_top_via_too_far_into_its_value_to_note_is_read_each_time() {
        // White space around the slashes may push the version past what the note holds.
        let v = format!(
            "SIP/{}2.0/UDP h:5070;branch=z9hG4bK1;received=192.0.2.1;rport",
            " ".repeat(300)
        );
        let text = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {v}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let m = Message::parse(text.into_bytes()).unwrap();
        let direct = Via::parse(&v).unwrap();
        for _ in 0..2 {
            assert_eq!(m.top_via().unwrap(), direct);
        }
        assert_eq!(direct.protocol, ("SIP", "2.0"));
        assert_eq!(direct.received_and_rport(), (Some("192.0.2.1"), Some(None)));
    }

    #[test]
    fn branch_and_sent_by_read_off_the_note_are_the_top_vias() {
        let far = format!("SIP/{}2.0/UDP h;branch=z9hG4bKf", " ".repeat(300));
        for v in [
            "SIP/2.0/UDP h:5070;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP H.example.COM;received=192.0.2.1",
            "SIP/2.0/TCP [2001:db8::1]:5061 ; branch = z9hG4bK2, SIP/2.0/UDP x",
            "SIP/2.0/UDP 192.0.2.9;branch=1234",
            far.as_str(),
        ] {
            let text = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {v}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
            // Asked first (nothing noted yet), then once the top Via is noted.
            let m = Message::parse(text.into_bytes()).unwrap();
            let before = m.top_via_branch_and_sent_by().unwrap();
            let via = m.top_via().unwrap();
            assert_eq!(before, (via.branch(), via.sent_by), "{v}");
            assert_eq!(m.top_via_branch_and_sent_by().unwrap(), before, "{v}");
        }
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009\r\n  INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse("2147483648 INVITE").is_none());
        assert!(CSeq::parse("1INVITE").is_none());
    }

    #[test]
    fn reason_and_retry_after() {
        let r = Reason::parse(r#"SIP ;cause=200 ;text="Call completed elsewhere""#).unwrap();
        assert_eq!(r.cause, Some(200));
        assert_eq!(r.text.as_deref(), Some("Call completed elsewhere"));
        let ra = RetryAfter::parse("18000;duration=3600").unwrap();
        assert_eq!((ra.seconds, ra.duration), (18000, Some(3600)));
        let ra = RetryAfter::parse("120 (I'm in a meeting)").unwrap();
        assert_eq!(ra.comment, Some("I'm in a meeting"));
        assert!(RetryAfter::parse("949302838503028349304023988").is_none());
    }
}
