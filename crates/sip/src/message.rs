//! The parsed message: one `Bytes` buffer plus the positions of its parts.
//!
//! Nothing is copied or decoded at parse time beyond what framing needs (start line,
//! header boundaries, Content-Length). Typed headers are decoded when asked for, and
//! borrow from the buffer.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::{ErrorKind, ParseError};
use crate::method::Method;
use crate::name::HeaderName;
use crate::scan;

/// A byte range inside a message buffer. `u32` keeps a header entry small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Messages are bounded by `Limits::max_message_size`, far below u32::MAX.
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    pub(crate) fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.range()).unwrap_or_default()
    }
}

/// One header field as located by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The classified name (compact forms resolved).
    pub name: HeaderName,
    pub(crate) name_span: Span,
    pub(crate) value: Span,
    /// The whole line including its continuation lines and line terminator.
    pub(crate) line: Span,
    /// Whether the value spans continuation lines (RFC 3261 §7.3.1 folding).
    pub(crate) folded: bool,
}

impl Header {
    /// Byte offset of the header line in the message.
    pub fn offset(&self) -> usize {
        self.line.start as usize
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: Method, uri: Span },
    Response { code: u16, reason: Span },
}

/// A message's bytes, kept as checked text when they are UTF-8 (nearly always: SIP and SDP
/// are ASCII), so that reading a header value as text costs a slice rather than a UTF-8
/// check on every read (about eighty reads per call). A message with other bytes (a binary
/// body, a Latin-1 display name) is kept raw and checked on each read.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Buf {
    Text(ByteString),
    Raw(Bytes),
}

impl Buf {
    pub(crate) fn new(bytes: Bytes) -> Buf {
        // The clone shares the buffer (a count, not a copy), so the bytes are checked once.
        match ByteString::try_from(bytes.clone()) {
            Ok(text) => Buf::Text(text),
            Err(_) => Buf::Raw(bytes),
        }
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        match self {
            Buf::Text(t) => t.as_bytes(),
            Buf::Raw(b) => b,
        }
    }

    /// The bytes of `span` as text, when they are UTF-8.
    pub(crate) fn text(&self, span: Span) -> Option<&str> {
        match self {
            // A slice of checked text that is not on character boundaries is not UTF-8.
            Buf::Text(t) => t.get(span.range()),
            Buf::Raw(b) => std::str::from_utf8(span.of(b)).ok(),
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

/// A parsed SIP request or response.
///
/// Cloning is cheap: the buffer is reference-counted and the header table is small.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) buf: Buf,
    pub(crate) start_line: StartLine,
    pub(crate) headers: Vec<Header>,
    /// Offset just past the start line's terminator (where the first header begins).
    pub(crate) headers_start: u32,
    /// Offset of the empty line that ends the header section.
    pub(crate) headers_end: u32,
    pub(crate) body: Span,
    pub(crate) content_length: Option<u32>,
    pub(crate) content_length_count: u8,
    /// Where the top Via's parts are, once [`Message::top_via`] has parsed it: every layer
    /// asks for it (transaction key, response routing, branch checks), about three times
    /// per message.
    pub(crate) top_via: ViaCache,
    /// Where the Call-ID and the From and To tags are, once one of them is asked for: the
    /// transaction layer, the proxy core and the route tokens ask about ten times per message.
    pub(crate) ids: IdCache,
    /// The CSeq's number and method (by [`crate::Method`]'s code), once read: asked for
    /// about twice per message by the transaction layer and the proxy core.
    pub(crate) cseq: CSeqCache,
}

/// A byte range inside a header value (a value longer than 64 KiB is not noted: it is
/// parsed each time).
pub(crate) type At = (u16, u16);

/// The top Via of a message as positions in its header value, so that asking for it again
/// costs a few slices instead of a parse. Made and read in `via.rs`; only the data is
/// here, so the message does not depend on the header types.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaSpans {
    pub(crate) header: u16,
    /// The protocol's name and version, which start the value: a Via whose protocol lies
    /// past byte 255 of its value (folded white space) is not noted.
    pub(crate) protocol: [u8; 4],
    pub(crate) transport: At,
    pub(crate) host: HostAt,
    pub(crate) port: Option<u16>,
    pub(crate) sent_by: At,
    pub(crate) params: At,
    /// The branch and received values ([`NO_AT`]: none; a value is never empty). Kept
    /// small: every message carries this note, and moving a message copies it.
    pub(crate) branch: At,
    pub(crate) received: At,
    pub(crate) rport: Option<Option<u16>>,
}

/// No value, in a [`ViaSpans`] (an empty range: no value noted there is empty).
pub(crate) const NO_AT: At = (0, 0);

#[derive(Debug, Clone, Copy)]
pub(crate) enum HostAt {
    Domain(At),
    V4([u8; 4]),
    /// Read again when rebuilt (rare, and 16 bytes would double the note).
    V6(At),
}

/// A memo that never makes two messages unequal (it holds nothing the bytes do not say).
#[derive(Debug, Clone, Default)]
pub(crate) struct ViaCache(pub(crate) std::sync::OnceLock<ViaSpans>);

impl PartialEq for ViaCache {
    fn eq(&self, _: &ViaCache) -> bool {
        true
    }
}

impl Eq for ViaCache {}

/// The Call-ID (when well formed) and the tags (when present) as places in the buffer
/// (packed: every message carries this note).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdSpans([u32; 6]);

impl IdSpans {
    const NONE: u32 = u32::MAX;

    pub(crate) fn new(
        call_id: Option<Span>,
        from_tag: Option<Span>,
        to_tag: Option<Span>,
    ) -> IdSpans {
        let mut a = [IdSpans::NONE; 6];
        for (i, s) in [call_id, from_tag, to_tag].into_iter().enumerate() {
            if let (Some(s), Some(pair)) = (s, a.get_mut(2 * i..2 * i + 2)) {
                pair.copy_from_slice(&[s.start, s.end]);
            }
        }
        IdSpans(a)
    }

    fn get(&self, i: usize) -> Option<Span> {
        match self.0.get(2 * i..2 * i + 2) {
            Some(&[start, end]) if start != IdSpans::NONE => Some(Span { start, end }),
            _ => None,
        }
    }

    pub(crate) fn call_id(&self) -> Option<Span> {
        self.get(0)
    }

    pub(crate) fn tag_of_from(&self) -> Option<Span> {
        self.get(1)
    }

    pub(crate) fn tag_of_to(&self) -> Option<Span> {
        self.get(2)
    }
}

/// A memo like [`ViaCache`]: never makes two messages unequal.
///
/// Kept in plain atomic words rather than a `OnceLock`: noting costs a store, not the
/// once-only synchronisation (about 150 instructions a note, several notes per message).
/// Two threads noting at once note the same thing (it is read from the same bytes), so a
/// word seen half-noted is simply not yet noted.
#[derive(Debug)]
pub(crate) struct IdCache([AtomicU64; 3]);

/// No note (a `(u32::MAX, u32::MAX - 1)` pair: `u32::MAX` never starts a noted place).
const UNSET: u64 = u64::MAX - 1;

impl IdCache {
    pub(crate) fn get(&self) -> Option<IdSpans> {
        let mut a = [0u32; 6];
        for (pair, word) in a.chunks_exact_mut(2).zip(&self.0) {
            let w = word.load(Ordering::Relaxed);
            if w == UNSET {
                return None;
            }
            pair.copy_from_slice(&[(w >> 32) as u32, w as u32]);
        }
        Some(IdSpans(a))
    }

    pub(crate) fn set(&self, ids: IdSpans) {
        for (pair, word) in ids.0.chunks_exact(2).zip(&self.0) {
            if let &[start, end] = pair {
                word.store(u64::from(start) << 32 | u64::from(end), Ordering::Relaxed);
            }
        }
    }
}

impl Default for IdCache {
    fn default() -> IdCache {
        IdCache([const { AtomicU64::new(UNSET) }; 3])
    }
}

impl Clone for IdCache {
    fn clone(&self) -> IdCache {
        let copy = IdCache::default();
        if let Some(ids) = self.get() {
            copy.set(ids);
        }
        copy
    }
}

impl PartialEq for IdCache {
    fn eq(&self, _: &IdCache) -> bool {
        true
    }
}

impl Eq for IdCache {}

/// A memo like [`IdCache`]: the CSeq number above a method code, in one word.
#[derive(Debug)]
pub(crate) struct CSeqCache(AtomicU64);

impl CSeqCache {
    pub(crate) fn get(&self) -> Option<(u32, u8)> {
        match self.0.load(Ordering::Relaxed) {
            UNSET => None,
            w => Some(((w >> 8) as u32, w as u8)),
        }
    }

    pub(crate) fn set(&self, (seq, code): (u32, u8)) {
        self.0
            .store(u64::from(seq) << 8 | u64::from(code), Ordering::Relaxed);
    }
}

impl Default for CSeqCache {
    fn default() -> CSeqCache {
        CSeqCache(AtomicU64::new(UNSET))
    }
}

impl Clone for CSeqCache {
    fn clone(&self) -> CSeqCache {
        CSeqCache(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl PartialEq for CSeqCache {
    fn eq(&self, _: &CSeqCache) -> bool {
        true
    }
}

impl Eq for CSeqCache {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field(
                "start_line",
                &String::from_utf8_lossy(self.start_line_bytes()),
            )
            .field("headers", &self.headers.len())
            .field("body_len", &self.body().len())
            .finish()
    }
}

impl Message {
    /// The wire bytes of the whole message (trailing datagram octets excluded).
    pub fn as_bytes(&self) -> &Bytes {
        self.buf.bytes()
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The request method, for a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start_line {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The bytes of `span` as text, when they are UTF-8.
    pub(crate) fn text(&self, span: Span) -> Option<&str> {
        self.buf.text(span)
    }

    /// The Request-URI as written, for a request.
    pub fn request_uri_str(&self) -> Option<&str> {
        match &self.start_line {
            StartLine::Request { uri, .. } => self.text(*uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI decoded, for a request.
    pub fn request_uri(&self) -> Option<Result<crate::uri::Uri<'_>, ParseError>> {
        let offset = match &self.start_line {
            StartLine::Request { uri, .. } => uri.start as usize,
            StartLine::Response { .. } => return None,
        };
        let s = self.request_uri_str()?;
        Some(crate::uri::Uri::parse(s).map_err(|_| ErrorKind::RequestUri.at(offset)))
    }

    /// Gives back the header index's spare capacity: for a message kept long after it was
    /// parsed (a request whose call lingers).
    pub fn shrink_to_fit(&mut self) {
        self.headers.shrink_to_fit();
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The status code as a [`crate::StatusCode`], for a response (the parser accepts only
    /// 100–699).
    pub fn status_code(&self) -> Option<crate::StatusCode> {
        self.status().and_then(|c| crate::StatusCode::new(c).ok())
    }

    /// The reason phrase (may be empty or UTF-8), for a response.
    pub fn reason_phrase(&self) -> Option<Cow<'_, str>> {
        match self.start_line {
            StartLine::Response { reason, .. } => {
                Some(String::from_utf8_lossy(reason.of(&self.buf)))
            }
            StartLine::Request { .. } => None,
        }
    }

    /// The start line without its terminator.
    pub fn start_line_bytes(&self) -> &[u8] {
        let end = self.headers_start as usize;
        let line = self.buf.get(..end).unwrap_or_default();
        line.strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line)
    }

    /// All header fields in wire order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The header name as written on the wire.
    pub fn name_str(&self, h: &Header) -> &str {
        self.text(h.name_span).unwrap_or("")
    }

    /// The raw value bytes (folding kept, surrounding white space removed).
    pub fn value_bytes(&self, h: &Header) -> &[u8] {
        h.value.of(&self.buf)
    }

    /// The value as text, folding kept (typed parsers treat CR/LF as white space).
    pub fn value_str(&self, h: &Header) -> Result<&str, ParseError> {
        self.text(h.value)
            .ok_or_else(|| ErrorKind::BadHeader(header_label(h.name)).at(h.offset()))
    }

    /// The value with line folding replaced by single spaces, for display.
    pub fn value_unfolded(&self, h: &Header) -> Cow<'_, str> {
        let raw = String::from_utf8_lossy(self.value_bytes(h));
        if !h.folded {
            return raw;
        }
        let mut out = String::with_capacity(raw.len());
        let mut in_break = false;
        for c in raw.chars() {
            if c == '\r' || c == '\n' {
                in_break = true;
                continue;
            }
            if in_break && (c == ' ' || c == '\t') {
                continue;
            }
            if in_break {
                out.push(' ');
                in_break = false;
            }
            out.push(c);
        }
        Cow::Owned(out)
    }

    /// Header fields with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The first header field with this name.
    pub fn header(&self, name: HeaderName) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Header fields whose name matches `name` as an operator writes it (any case, compact
    /// forms resolved; extension headers compared case-insensitively).
    pub fn headers_by_name<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Header> + 's {
        let class = HeaderName::classify(name.as_bytes());
        self.headers.iter().filter(move |h| {
            h.name == class
                && (class != HeaderName::Other
                    || h.name_span
                        .of(&self.buf)
                        .eq_ignore_ascii_case(name.as_bytes()))
        })
    }

    /// The first value of a single-value header as text, trimmed.
    pub fn header_str(&self, name: HeaderName) -> Option<Result<&str, ParseError>> {
        self.header(name).map(|h| self.value_str(h))
    }

    /// Every value of a header, splitting comma-separated lists (RFC 3261 §7.3.1) for list
    /// headers; each value is trimmed. Values that are not UTF-8 yield an error.
    pub fn values(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<(&Header, &str), ParseError>> + '_ {
        Values {
            msg: self,
            name,
            headers: self.headers.iter(),
            list: None,
        }
    }

    /// The body bytes (empty when there is none).
    pub fn body(&self) -> &[u8] {
        self.body.of(&self.buf)
    }

    /// The message without its body: the header section copied into a buffer of its own
    /// (so the body's memory can go), Content-Length's digits written as zeros (`1234`
    /// becomes `0000`, still `1*DIGIT`, RFC 3261 §20.14). Every position stays where it
    /// was, so nothing is parsed again. For a message kept long after it was handled.
    pub fn without_body(&self) -> Message {
        let head_end = self.body.start as usize;
        let Some(head) = self.buf.get(..head_end) else {
            return self.clone();
        };
        let mut head = head.to_vec();
        for h in self.headers_named(HeaderName::ContentLength) {
            for b in head.get_mut(h.value.range()).into_iter().flatten() {
                if b.is_ascii_digit() {
                    *b = b'0';
                }
            }
        }
        Message {
            buf: Buf::new(Bytes::from(head)),
            start_line: self.start_line.clone(),
            headers: self.headers.clone(),
            headers_start: self.headers_start,
            headers_end: self.headers_end,
            body: Span::new(head_end, head_end),
            content_length: self.content_length.map(|_| 0),
            content_length_count: self.content_length_count,
            top_via: self.top_via.clone(),
            ids: self.ids.clone(),
            cseq: self.cseq.clone(),
        }
    }

    /// The body as a zero-copy `Bytes` slice.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.bytes().slice(self.body.range())
    }

    /// The Content-Length value, when the message had exactly one.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length.map(|v| v as usize)
    }

    /// Offset where the header section ends (the empty line).
    pub fn headers_end(&self) -> usize {
        self.headers_end as usize
    }
}

/// The label used in errors for a header name.
pub(crate) fn header_label(name: HeaderName) -> &'static str {
    name.canonical().unwrap_or("extension")
}

/// The iterator of [`Message::values`]: the fields of one name, a list field's values one
/// by one (a plain loop: most fields hold one value, and a chain of adapters around every
/// field cost more than the values).
struct Values<'m> {
    msg: &'m Message,
    name: HeaderName,
    headers: std::slice::Iter<'m, Header>,
    /// The rest of a list field being split.
    list: Option<(&'m Header, scan::SplitTopLevel<'m>)>,
}

impl<'m> Iterator for Values<'m> {
    type Item = Result<(&'m Header, &'m str), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((h, list)) = &mut self.list {
            if let Some(v) = list.next() {
                return Some(Ok((*h, scan::trim_lws(v))));
            }
            self.list = None;
        }
        let name = self.name;
        let h = self.headers.by_ref().find(|h| h.name == name)?;
        let v = match self.msg.value_str(h) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        if !name.is_list() {
            return Some(Ok((h, v)));
        }
        let mut list = scan::split_top_level(v, b',');
        let first = list.next().map(|v| Ok((h, scan::trim_lws(v))));
        self.list = Some((h, list));
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memos give back what was noted, nothing before that, and a clone keeps it; every
    /// place a message can hold, and "none", survives the packing.
    #[test]
    fn memos_read_back_what_was_noted() {
        let ids = IdCache::default();
        assert!(ids.get().is_none());
        let span = |start, end| Some(Span { start, end });
        for noted in [
            IdSpans::new(span(0, 0), None, None),
            IdSpans::new(span(40, 72), span(90, 98), None),
            IdSpans::new(None, None, span(u32::MAX - 1, u32::MAX)),
            IdSpans::new(span(7, u32::MAX - 1), span(0, 1), span(2, 3)),
        ] {
            ids.set(noted);
            for read in [ids.get().unwrap(), ids.clone().get().unwrap()] {
                assert_eq!(read.call_id(), noted.call_id());
                assert_eq!(read.tag_of_from(), noted.tag_of_from());
                assert_eq!(read.tag_of_to(), noted.tag_of_to());
            }
        }
        let cseq = CSeqCache::default();
        assert_eq!(cseq.get(), None);
        assert_eq!(cseq.clone().get(), None);
        for noted in [(0, 0), (1, 13), ((1 << 31) - 1, 255), (u32::MAX, 254)] {
            cseq.set(noted);
            assert_eq!(cseq.get(), Some(noted));
            assert_eq!(cseq.clone().get(), Some(noted));
        }
    }

    fn with(from_name: &[u8], body: &[u8]) -> Message {
        let mut m =
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: ".to_vec();
        m.extend_from_slice(from_name);
        m.extend_from_slice(
            b" <sip:a@h>;tag=f1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n",
        );
        m.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        m.extend_from_slice(body);
        Message::parse(m).unwrap()
    }

    #[test]
    fn values_read_as_text_whether_or_not_the_whole_message_is_utf8() {
        let text = with("\"Zoë\"".as_bytes(), b"v=0\r\n");
        assert!(matches!(text.buf, Buf::Text(_)));
        // A binary body, or a Latin-1 display name: kept raw, each value checked when read.
        let binary = with(b"\"Zoe\"", &[0xff, 0x00, 0x80]);
        let latin1 = with(b"\"Zo\xeb\"", b"");
        for m in [&binary, &latin1] {
            assert!(matches!(m.buf, Buf::Raw(_)));
        }
        for m in [&text, &binary, &latin1] {
            assert_eq!(m.call_id().unwrap(), "c");
            assert_eq!(m.from_tag(), Some("f1"));
            assert_eq!(m.request_uri_str(), Some("sip:b@h"));
        }
        let from = |m: &Message| m.header(HeaderName::From).map(|h| m.value_str(h).is_ok());
        assert_eq!(from(&text), Some(true));
        assert_eq!(from(&binary), Some(true));
        assert_eq!(from(&latin1), Some(false), "not UTF-8: refused as text");
        assert_eq!(binary.body(), &[0xff, 0x00, 0x80]);
        // A span that cuts a character in two is not text either.
        let zoe = text
            .as_bytes()
            .windows(2)
            .position(|w| w == "ë".as_bytes())
            .unwrap();
        let half = Span::new(zoe, zoe + 1);
        assert_eq!(text.text(half), None);
        assert_eq!(text.text(Span::new(zoe, zoe + 2)), Some("ë"));
    }

    /// Dropping the body keeps every header readable where it was and reads as the same
    /// message with an empty body, without a parse.
    #[test]
    fn without_body_is_the_same_message_with_no_body() {
        let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        let m = with(b"\"Al\"", sdp);
        m.top_via().unwrap();
        let bare = m.without_body();
        assert_eq!(bare.body(), b"");
        assert_eq!(bare.content_length(), Some(0));
        let want = String::from_utf8_lossy(m.as_bytes()).replace(
            &format!(
                "Content-Length: {}\r\n\r\n{}",
                sdp.len(),
                String::from_utf8_lossy(sdp)
            ),
            "Content-Length: 00\r\n\r\n",
        );
        assert_eq!(String::from_utf8_lossy(bare.as_bytes()), want);
        // The bytes parse back to an equal message, and every note still reads true.
        let again = Message::parse(bare.as_bytes().to_vec()).unwrap();
        assert_eq!(again, bare);
        assert!(again.validate().is_ok());
        assert_eq!(bare.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(bare.call_id().unwrap(), "c");
        assert_eq!(bare.from_tag(), Some("f1"));
        assert_eq!(bare.request_uri_str(), Some("sip:b@h"));
        // The copy does not hold on to the body's buffer.
        assert_eq!(bare.as_bytes().len(), m.as_bytes().len() - sdp.len());
        // A message without a body is kept as it is.
        let empty = with(b"\"Al\"", b"");
        assert_eq!(empty.without_body(), empty);
    }
}
