//! Forwarding edits applied as splices: untouched bytes are copied as they are, never
//! re-serialised (what a proxy does to every request and response it relays).
//!
//! ```text
//! original: [start line][Via][To][From]...[Max-Forwards: 70]...[CRLF][body]
//! edits:     ^uri        ^insert Via      ^replace "69"
//! output:   copy, splice, copy, splice, copy ...
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ParseError;
use crate::message::{Buf, Header, Message, Span, StartLine};
use crate::name::HeaderName;
use crate::scan;

/// One splice: replace `span` of the original with `with` (an insertion has an empty span).
#[derive(Debug, Clone)]
pub(crate) struct Splice {
    pub(crate) span: Span,
    pub(crate) with: Bytes,
    /// Order among splices at the same position (insertions keep call order).
    pub(crate) seq: u32,
}

/// A set of edits over a message, serialised by [`Editor::finish`].
///
/// Edits refer to the original message; each header is edited at most once (a later edit of
/// the same header replaces the earlier one).
#[derive(Debug)]
pub struct Editor<'m> {
    pub(crate) msg: &'m Message,
    pub(crate) splices: Vec<Splice>,
    extra_len: isize,
}

impl Message {
    /// Starts editing this message for forwarding.
    pub fn edit(&self) -> Editor<'_> {
        Editor {
            msg: self,
            splices: Vec::with_capacity(6),
            extra_len: 0,
        }
    }
}

/// 0 to 255 in decimal, three bytes each (a forwarded request's Max-Forwards is written
/// from here, not formatted and allocated). Indexed at compile time: an index out of
/// range would fail the build, not a call.
#[allow(clippy::indexing_slicing)]
static DECIMALS: [[u8; 3]; 256] = {
    let mut t = [[0u8; 3]; 256];
    let mut n = 0;
    while n < 256 {
        t[n] = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        n += 1;
    }
    t
};

/// `n` in decimal, without leading zeros.
fn decimal(n: u8) -> &'static [u8] {
    let digits = DECIMALS.get(usize::from(n)).map_or(&[][..], |d| &d[..]);
    let skip = match n {
        0..=9 => 2,
        10..=99 => 1,
        _ => 0,
    };
    digits.get(skip..).unwrap_or_default()
}

fn header_line(name: &str, value: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(name.len() + value.len() + 4);
    b.put_slice(name.as_bytes());
    b.put_slice(b": ");
    b.put_slice(value.as_bytes());
    b.put_slice(b"\r\n");
    b.freeze()
}

impl<'m> Editor<'m> {
    fn splice(&mut self, span: Span, with: Bytes) {
        // A new edit of exactly the same non-empty span replaces the old one.
        if span.start != span.end {
            if let Some(old) = self.splices.iter_mut().find(|s| s.span == span) {
                self.extra_len += with.len() as isize - old.with.len() as isize;
                old.with = with;
                return;
            }
        }
        self.extra_len += with.len() as isize - (span.end - span.start) as isize;
        let seq = self.splices.len() as u32;
        self.splices.push(Splice { span, with, seq });
    }

    fn insert_at(&mut self, at: u32, line: Bytes) {
        self.splice(Span { start: at, end: at }, line);
    }

    /// Where a new header of this name goes: before the first one of that name, so it
    /// becomes the topmost value (Via, Record-Route); else at the top of the headers.
    fn top_position(&self, name: HeaderName) -> u32 {
        self.msg
            .header(name)
            .map_or(self.msg.headers_start, |h| h.line.start)
    }

    /// Replaces the Request-URI (RFC 3261 §16.6 step 2). No effect on a response.
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        if let StartLine::Request { uri: span, .. } = &self.msg.start_line {
            self.splice(*span, Bytes::copy_from_slice(uri.as_bytes()));
        }
        self
    }

    /// Replaces the status line of a response (e.g. 503 → 500 when a proxy forwards it,
    /// RFC 3261 §16.7 step 6). No effect on a request.
    pub fn set_status(&mut self, code: u16, reason: &str) -> &mut Self {
        if let StartLine::Response { reason: r, .. } = &self.msg.start_line {
            let line = format!("SIP/2.0 {code} {}", reason.replace(['\r', '\n'], " "));
            let span = Span {
                start: 0,
                end: r.end,
            };
            self.splice(span, Bytes::from(line));
        }
        self
    }

    /// Adds a Via value on top (RFC 3261 §16.6 step 8).
    pub fn push_via(&mut self, value: &str) -> &mut Self {
        let at = self.top_position(HeaderName::Via);
        self.insert_at(at, header_line("Via", value));
        self
    }

    /// Removes the topmost Via value (RFC 3261 §16.7 step 3, on responses).
    pub fn pop_via(&mut self) -> &mut Self {
        self.pop_first_value(HeaderName::Via)
    }

    /// Removes the topmost Route value (loose routing, RFC 3261 §16.4 / §16.12).
    pub fn pop_route(&mut self) -> &mut Self {
        self.pop_first_value(HeaderName::Route)
    }

    fn pop_first_value(&mut self, name: HeaderName) -> &mut Self {
        let Some(h) = self.msg.header(name).copied() else {
            return self;
        };
        let value = self.msg.value_bytes(&h);
        match scan::find_top_level(value, b',') {
            None => self.splice(h.line, Bytes::new()),
            Some(comma) => {
                // Keep the remaining values on the same line.
                let rest = value.get(comma + 1..).unwrap_or_default();
                let skip = rest.iter().take_while(|&&c| scan::is_lws(c)).count();
                let span = Span {
                    start: h.value.start,
                    end: h.value.start + (comma + 1 + skip) as u32,
                };
                self.splice(span, Bytes::new());
            }
        }
        self
    }

    /// Adds a Record-Route value on top (RFC 3261 §16.6 step 4).
    pub fn push_record_route(&mut self, value: &str) -> &mut Self {
        let at = self.top_position(HeaderName::RecordRoute);
        self.insert_at(at, header_line("Record-Route", value));
        self
    }

    /// Adds a Route value on top (RFC 3261 §16.6 step 7, a pre-loaded route).
    pub fn push_route(&mut self, value: &str) -> &mut Self {
        let at = self.top_position(HeaderName::Route);
        self.insert_at(at, header_line("Route", value));
        self
    }

    /// Decrements Max-Forwards, or adds `Max-Forwards: 70` when absent (§16.6 step 3).
    ///
    /// Fails when the present value is malformed; the caller checks for zero first (483).
    pub fn decrement_max_forwards(&mut self) -> Result<&mut Self, ParseError> {
        match (
            self.msg.header(HeaderName::MaxForwards).copied(),
            self.msg.max_forwards()?,
        ) {
            (Some(h), Some(v)) => {
                let n = v.saturating_sub(1);
                self.splice(h.value, Bytes::from_static(decimal(n)));
            }
            _ => {
                let at = self.msg.headers_end;
                self.insert_at(at, header_line("Max-Forwards", "70"));
            }
        }
        Ok(self)
    }

    /// Appends a header at the end of the header section.
    pub fn add_header(&mut self, name: &str, value: &str) -> &mut Self {
        let at = self.msg.headers_end;
        self.insert_at(at, header_line(name, value));
        self
    }

    /// Removes one header field (a whole line).
    pub fn remove_header(&mut self, h: &Header) -> &mut Self {
        self.splice(h.line, Bytes::new());
        self
    }

    /// Removes every header field with this name.
    pub fn remove_all(&mut self, name: HeaderName) -> &mut Self {
        let lines: Vec<Span> = self.msg.headers_named(name).map(|h| h.line).collect();
        for l in lines {
            self.splice(l, Bytes::new());
        }
        self
    }

    /// Replaces the value of one header field, keeping its name as written.
    pub fn replace_value(&mut self, h: &Header, value: &str) -> &mut Self {
        self.splice(h.value, Bytes::copy_from_slice(value.as_bytes()));
        self
    }

    /// Replaces the body, setting Content-Length and (when given) Content-Type.
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) -> &mut Self {
        let len = body.len().to_string();
        match self.msg.header(HeaderName::ContentLength).copied() {
            Some(h) => {
                self.splice(h.value, Bytes::copy_from_slice(len.as_bytes()));
            }
            None => {
                self.add_header("Content-Length", &len);
            }
        }
        if let Some(ct) = content_type {
            match self.msg.header(HeaderName::ContentType).copied() {
                Some(h) => {
                    self.replace_value(&h, ct);
                }
                None => {
                    self.add_header("Content-Type", ct);
                }
            }
        }
        self.splice(self.msg.body, body);
        self
    }

    /// Serialises the edited message.
    pub fn finish(&mut self) -> Bytes {
        let orig = self.msg.buf.bytes();
        if self.splices.is_empty() {
            return orig.clone();
        }
        let cap = (orig.len() as isize + self.extra_len).max(0) as usize;
        let mut out = BytesMut::with_capacity(cap);
        self.each_piece(|piece| match piece {
            Piece::Kept(range) => out.put_slice(orig.get(range).unwrap_or_default()),
            Piece::New(with) => out.put_slice(with),
        });
        out.freeze()
    }

    /// [`Editor::finish`]'s bytes as checked text, when the message is text and every edit
    /// is: the kept parts were checked when the message was made, so only the edits are
    /// (a few short lines, where checking the whole message again was about a tenth of
    /// what a forwarded request costs to rebuild). `None` otherwise.
    pub(crate) fn finish_text(&mut self) -> Option<bytestring::ByteString> {
        let Buf::Text(text) = &self.msg.buf else {
            return None;
        };
        if self.splices.is_empty() {
            return Some(text.clone());
        }
        let cap = (text.len() as isize + self.extra_len).max(0) as usize;
        let mut out = String::with_capacity(cap);
        let mut whole = true;
        self.each_piece(|piece| {
            // `get` refuses a range that is not on character boundaries.
            let part = match piece {
                Piece::Kept(range) => text.get(range),
                Piece::New(with) => std::str::from_utf8(with).ok(),
            };
            match part {
                Some(part) if whole => out.push_str(part),
                _ => whole = false,
            }
        });
        whole.then(|| bytestring::ByteString::from(out))
    }

    /// The edited message piece by piece, in order: the original's parts between the
    /// edits, and each edit's bytes (of edits overlapping a removed region, the earlier).
    fn each_piece(&mut self, mut put: impl FnMut(Piece<'_>)) {
        self.splices
            .sort_by_key(|s| (s.span.start, s.span.end != s.span.start, s.seq));
        let len = self.msg.buf.bytes().len();
        let mut pos = 0usize;
        for s in &self.splices {
            let start = s.span.start as usize;
            if start < pos {
                continue; // overlapping edit of a removed region: the earlier one wins
            }
            put(Piece::Kept(pos..start.min(len)));
            put(Piece::New(&s.with));
            pos = s.span.end as usize;
        }
        put(Piece::Kept(pos.min(len)..len));
    }
}

/// One piece of an edited message ([`Editor::each_piece`]).
enum Piece<'a> {
    /// A range of the original.
    Kept(std::ops::Range<usize>),
    /// An edit's bytes.
    New(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 2\r\n\
\r\n\
hi";

    #[test]
    fn max_forwards_digits_are_the_decimal_number() {
        for n in 0..=u8::MAX {
            assert_eq!(decimal(n), n.to_string().as_bytes());
        }
    }

    #[test]
    fn forwarding_edits_round_trip() {
        let m = Message::parse(REQ).unwrap();
        let out = m
            .edit()
            .set_request_uri("sip:bob@192.0.2.4:5070")
            .push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p-1")
            .push_record_route("<sip:proxy.example.com;lr>")
            .pop_route()
            .decrement_max_forwards()
            .unwrap()
            .finish();
        let f = Message::parse(out.clone()).unwrap();
        f.validate().unwrap();
        assert_eq!(f.request_uri_str(), Some("sip:bob@192.0.2.4:5070"));
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().sent_by.to_owned()).collect();
        assert_eq!(vias, ["proxy.example.com", "pc33.atlanta.com"]);
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        let routes: Vec<_> = f.routes().map(|r| r.unwrap().uri_str.to_owned()).collect();
        assert_eq!(routes, ["sip:p2.example.com;lr"]);
        assert_eq!(f.record_routes().count(), 1);
        assert_eq!(f.body(), b"hi");
        // Untouched lines are byte-identical.
        let untouched = b"To: Bob <sip:bob@biloxi.com>\r\nFrom: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n";
        assert!(out.windows(untouched.len()).any(|w| w == untouched));
    }

    #[test]
    fn pop_via_on_response_and_body_replace() {
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1, SIP/2.0/UDP c;branch=z9hG4bK2\r\nTo: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(&resp[..]).unwrap();
        let out = m
            .edit()
            .pop_via()
            .set_body(Some("application/sdp"), Bytes::from_static(b"v=0\r\n"))
            .finish();
        let f = Message::parse(out).unwrap();
        assert_eq!(f.top_via().unwrap().sent_by, "c");
        assert_eq!(f.vias().count(), 1);
        assert_eq!(f.body(), b"v=0\r\n");
        assert_eq!(f.content_length(), Some(5));
        assert_eq!(
            f.header_str(HeaderName::ContentType).unwrap().unwrap(),
            "application/sdp"
        );
        // Popping a single-valued Via line removes the line.
        let out2 = Message::parse(out_clone(&f)).unwrap();
        let out3 = Message::parse(out2.edit().pop_via().finish()).unwrap();
        assert_eq!(out3.vias().count(), 0);
    }

    fn out_clone(m: &Message) -> Bytes {
        m.as_bytes().clone()
    }

    #[test]
    fn status_line_replaced() {
        let m = Message::parse(
            &b"SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"[..],
        )
        .unwrap();
        let f = Message::parse(m.edit().set_status(500, "Server Internal Error").finish()).unwrap();
        assert_eq!(f.status(), Some(500));
        assert_eq!(f.reason_phrase().unwrap(), "Server Internal Error");
        assert_eq!(f.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn max_forwards_added_when_absent() {
        let m = Message::parse(
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"[..],
        )
        .unwrap();
        let f = Message::parse(m.edit().decrement_max_forwards().unwrap().finish()).unwrap();
        assert_eq!(f.max_forwards().unwrap(), Some(70));
    }
}
