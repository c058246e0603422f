//! The message parser: locates the start line, each header field and the body.
//!
//! One pass over the header section; only Content-Length is decoded here because framing
//! needs it. Everything else is decoded on demand. The common header line takes a one-pass
//! path (`plain_line`); every other line, and everything it declines, takes the general
//! path, which `reference.rs` keeps in its earlier form as the fast path's oracle.

use bytes::Bytes;

use crate::error::{ErrorKind, ParseError};
use crate::limits::Limits;
use crate::message::{Header, Message, Span, StartLine};
use crate::method::Method;
use crate::name::HeaderName;
use crate::scan;

#[cfg(any(test, feature = "oracles"))]
pub(crate) mod reference;

/// The header section of a message, located but not yet attached to a buffer.
#[derive(Debug)]
pub(crate) struct Head {
    pub start_line: StartLine,
    pub headers: Vec<Header>,
    pub headers_start: u32,
    pub headers_end: u32,
    /// Offset of the first body byte.
    pub body_start: usize,
    pub content_length: Option<u32>,
    pub content_length_count: u8,
}

impl Message {
    /// Parses one UDP datagram (or any complete buffer) with the default [`Limits`].
    ///
    /// Leading CRLFs are skipped (RFC 3261 §7.5); octets after the Content-Length body are
    /// ignored (RFC 4475 §3.1.1.8).
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Message, ParseError> {
        Message::parse_with(bytes, &Limits::default())
    }

    /// Parses one datagram with explicit limits.
    pub fn parse_with(bytes: impl Into<Bytes>, limits: &Limits) -> Result<Message, ParseError> {
        let bytes: Bytes = bytes.into();
        let skip = leading_crlf(&bytes);
        let bytes = bytes.slice(skip..);
        parse_datagram(bytes, limits).map_err(|e| ParseError {
            kind: e.kind,
            offset: e.offset + skip,
        })
    }
}

/// Number of CR/LF bytes before the start line.
pub(crate) fn leading_crlf(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()
}

/// Parses a whole datagram from `bytes`, which starts at the start line. Without
/// Content-Length the body is the rest of the datagram (RFC 3261 §18.3).
fn parse_datagram(bytes: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    if bytes.len() > limits.max_message_size {
        return Err(ErrorKind::MessageTooLarge {
            limit: limits.max_message_size,
        }
        .at(limits.max_message_size));
    }
    let head = parse_head(&bytes, limits, Input::Complete)?;
    let body_end = match head.content_length {
        Some(n) => {
            let end = head.body_start + n as usize;
            if end > bytes.len() {
                return Err(ErrorKind::BodyTruncated.at(bytes.len()));
            }
            end
        }
        None => bytes.len(),
    };
    Ok(attach(head, bytes.slice(..body_end)))
}

/// Builds the message from a located head and a buffer ending at the body's end.
pub(crate) fn attach(head: Head, buf: Bytes) -> Message {
    let body = Span::new(head.body_start.min(buf.len()), buf.len());
    Message {
        buf: crate::message::Buf::new(buf),
        start_line: head.start_line,
        headers: head.headers,
        headers_start: head.headers_start,
        headers_end: head.headers_end,
        body,
        content_length: head.content_length,
        content_length_count: head.content_length_count,
        top_via: Default::default(),
        ids: Default::default(),
        cseq: Default::default(),
    }
}

/// The end of the line starting at `from`: (content end, next line start), `None` when
/// there is no line feed after `from`.
///
/// Header lines are short (30 to 60 bytes), so a word-at-a-time search beats a vector
/// search whose set-up costs more than the scan.
#[inline]
pub(crate) fn line_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let lf = scan::find_byte_from(b, from, b'\n')?;
    let end = if lf > from && b.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Whether `b` is all there is (a datagram) or the start of a stream that may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// A whole datagram: the end of `b` is the end of the message.
    Complete,
    /// A stream prefix: more bytes may follow, so nothing may be decided from the end of `b`.
    Partial,
}

/// Locates the start line, the header fields and where the body starts.
///
/// Returns [`ErrorKind::Truncated`] when the empty line ending the headers is not in `b`
/// (the stream framer uses that to wait for more bytes). With [`Input::Partial`] a header line
/// whose line end is the last byte of `b` is also `Truncated`: whether it continues on a
/// folded line is only known once the next byte arrives.
///
/// The common line, `Name: value CRLF`, takes one pass: a token scan for the name, a word
/// compare to classify it, and the line end from the message's newline iterator. Anything
/// else (white space before the colon, no colon, folding) takes the general path.
pub(crate) fn parse_head(b: &[u8], limits: &Limits, input: Input) -> Result<Head, ParseError> {
    if b.is_empty() {
        return Err(ErrorKind::Empty.at(0));
    }
    // Offsets are stored as u32; a larger buffer is refused before any is taken.
    if u32::try_from(b.len()).is_err() {
        return Err(ErrorKind::MessageTooLarge {
            limit: u32::MAX as usize,
        }
        .at(0));
    }
    let (sl_end, mut pos) = line_end(b, 0).ok_or(ErrorKind::Truncated.at(b.len()))?;
    let start_line = parse_start_line(b.get(..sl_end).unwrap_or_default())?;
    let headers_start = pos;
    let mut headers = Vec::with_capacity(20);
    let mut counts = Counts::default();

    loop {
        if let Some((header, next)) = plain_line(b, pos) {
            if headers.len() >= limits.max_headers {
                return Err(ErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                }
                .at(pos));
            }
            if next - pos > limits.max_header_line {
                return Err(ErrorKind::HeaderLineTooLong {
                    limit: limits.max_header_line,
                }
                .at(pos));
            }
            if header.name.counted() {
                let value = header.value.of(b);
                counts.add(header.name, value, limits, pos, header.value.start as usize)?;
            }
            headers.push(header);
            pos = next;
            continue;
        }
        // The general path: the end of the header section, or a line plain_line declined.
        // Asking known_before_colon again here (rather than going straight to the token
        // scan) measured about 5 % faster end to end; the results are the same either way.
        let rest = b.get(pos..).unwrap_or_default();
        let (name, name_len, plain) = match HeaderName::known_before_colon(rest) {
            Some((name, len)) => (name, len, true),
            None => {
                let name_len = rest
                    .iter()
                    .position(|&c| !scan::is_token_char(c))
                    .unwrap_or(rest.len());
                let plain = name_len > 0 && rest.get(name_len) == Some(&b':');
                if !plain {
                    let body_start = match rest {
                        [b'\r', b'\n', ..] => Some(pos + 2),
                        [b'\n', ..] => Some(pos + 1),
                        [] => return Err(ErrorKind::Truncated.at(pos)),
                        // A continuation line with no header before it.
                        [c, ..] if scan::is_wsp(*c) => return Err(ErrorKind::HeaderName.at(pos)),
                        _ => None,
                    };
                    if let Some(body_start) = body_start {
                        return Ok(Head {
                            start_line,
                            headers,
                            headers_start: headers_start as u32,
                            headers_end: pos as u32,
                            body_start,
                            content_length: counts.content_length,
                            content_length_count: counts.content_length_count,
                        });
                    }
                }
                (HeaderName::classify_prefix(rest, name_len), name_len, plain)
            }
        };
        if headers.len() >= limits.max_headers {
            return Err(ErrorKind::TooManyHeaders {
                limit: limits.max_headers,
            }
            .at(pos));
        }
        // The header line, with continuation lines (folding) appended.
        let line_start = pos;
        // A plain line's name and colon hold no line feed: search from the value.
        let search_from = if plain { pos + name_len + 1 } else { pos };
        let (mut value_end, mut next) =
            line_end(b, search_from).ok_or(ErrorKind::Truncated.at(pos))?;
        let mut folded = false;
        loop {
            match b.get(next) {
                Some(&c) if scan::is_wsp(c) => {}
                Some(_) => break,
                // RFC 3261 §7.3.1: a line starting with SP or HTAB continues this header, so
                // on a stream the header is not over until the next byte is seen.
                None if input == Input::Partial => return Err(ErrorKind::Truncated.at(next)),
                None => break,
            }
            folded = true;
            let (e, n) = line_end(b, next).ok_or(ErrorKind::Truncated.at(next))?;
            value_end = e;
            next = n;
        }
        if next - line_start > limits.max_header_line {
            return Err(ErrorKind::HeaderLineTooLong {
                limit: limits.max_header_line,
            }
            .at(line_start));
        }
        let line = b.get(line_start..value_end).unwrap_or_default();
        let colon = if plain {
            name_len
        } else {
            find_colon(line, name_len, line_start)?
        };
        let value = line.get(colon + 1..).unwrap_or_default();
        let lead = value
            .iter()
            .position(|&c| !scan::is_lws(c))
            .unwrap_or(value.len());
        let value = value.get(lead..).unwrap_or_default();
        let trail = value
            .iter()
            .rev()
            .position(|&c| !scan::is_lws(c))
            .unwrap_or(value.len());
        let value = value.get(..value.len() - trail).unwrap_or_default();
        let vstart = line_start + colon + 1 + lead;
        if name.counted() {
            counts.add(name, value, limits, line_start, vstart)?;
        }
        headers.push(Header {
            name,
            name_span: Span::new(line_start, line_start + name_len),
            value: Span::new(vstart, vstart + value.len()),
            line: Span::new(line_start, next),
            folded,
        });
        pos = next;
    }
}

/// The common header line in one pass: a known name, its colon, at most one space, a value
/// that neither starts nor ends with white space, the line end, and a next line that is
/// not a continuation. Returns the header and where the next line starts; `None` leaves
/// the line to the general path, which also decides everything this declines.
#[inline]
pub(crate) fn plain_line(b: &[u8], pos: usize) -> Option<(Header, usize)> {
    let (name, name_len) = HeaderName::known_before_colon(b.get(pos..)?)?;
    let mut vstart = pos + name_len + 1;
    if b.get(vstart) == Some(&b' ') {
        vstart += 1;
    }
    if scan::is_lws(*b.get(vstart)?) {
        return None;
    }
    let lf = scan::find_byte_from(b, vstart, b'\n')?;
    // b[vstart] is not a line feed, so lf > vstart and the value is not empty.
    let end = if b.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    let last = *b.get(end.checked_sub(1)?)?;
    let next_first = *b.get(lf + 1)?;
    if end <= vstart || scan::is_lws(last) || scan::is_wsp(next_first) {
        return None;
    }
    // parse_head refused buffers over u32::MAX bytes, so the offsets fit.
    Some((
        Header {
            name,
            name_span: Span {
                start: pos as u32,
                end: (pos + name_len) as u32,
            },
            value: Span {
                start: vstart as u32,
                end: end as u32,
            },
            line: Span {
                start: pos as u32,
                end: (lf + 1) as u32,
            },
            folded: false,
        },
        lf + 1,
    ))
}

/// The colon of a header line whose name is not directly followed by one: white space may
/// come between (RFC 3261 §7.3.1); anything else is an error at the offending byte.
#[cold]
fn find_colon(line: &[u8], name_len: usize, line_start: usize) -> Result<usize, ParseError> {
    if name_len == 0 {
        return Err(ErrorKind::HeaderName.at(line_start));
    }
    let mut colon = name_len;
    while line.get(colon).is_some_and(|&c| scan::is_wsp(c)) {
        colon += 1;
    }
    if line.get(colon) == Some(&b':') {
        return Ok(colon);
    }
    let kind = if line.get(colon).is_none() || colon > name_len {
        ErrorKind::MissingColon
    } else {
        // e.g. "Foobar roobar" has a space, then a non-colon: still no colon.
        match memchr::memchr(b':', line) {
            None => ErrorKind::MissingColon,
            Some(_) => ErrorKind::HeaderName,
        }
    };
    Err(kind.at(line_start + colon))
}

/// What the header loop tallies: Content-Length (framing needs it) and the Via and Route
/// depths that [`Limits`] bound.
#[derive(Default)]
struct Counts {
    content_length: Option<u32>,
    content_length_count: u8,
    via: usize,
    route: usize,
}

impl Counts {
    fn add(
        &mut self,
        name: HeaderName,
        value: &[u8],
        limits: &Limits,
        line_start: usize,
        vstart: usize,
    ) -> Result<(), ParseError> {
        match name {
            HeaderName::ContentLength => {
                self.content_length_count = self.content_length_count.saturating_add(1);
                let v = scan::parse_decimal_bytes(value, limits.max_message_size as u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(ErrorKind::ContentLength.at(vstart))?;
                self.content_length = match self.content_length {
                    None if self.content_length_count == 1 => Some(v),
                    // Several Content-Length fields: the body length is unknown.
                    _ => None,
                };
            }
            HeaderName::Via => {
                self.via += count_values(value);
                if self.via > limits.max_via {
                    return Err(ErrorKind::TooManyValues {
                        header: "Via",
                        limit: limits.max_via,
                    }
                    .at(line_start));
                }
            }
            _ => {
                self.route += count_values(value);
                if self.route > limits.max_route {
                    return Err(ErrorKind::TooManyValues {
                        header: "Route",
                        limit: limits.max_route,
                    }
                    .at(line_start));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn count_values(v: &[u8]) -> usize {
    // Most Via and Route lines hold one value: no comma, nothing to split.
    if scan::find_byte_from(v, 0, b',').is_none() {
        return 1;
    }
    let mut n = 1;
    let mut rest = v;
    while let Some(i) = scan::find_top_level(rest, b',') {
        n += 1;
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    n
}

/// Parses the Request-Line or Status-Line (without its terminator).
pub(crate) fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return parse_status_line(line);
    }
    // Request-Line = Method SP Request-URI SP SIP-Version. Extra SP between the elements
    // and trailing SP are tolerated (RFC 4475 §3.1.2.9, §3.1.2.10); SP inside the URI is not.
    let sp = scan::find_byte_from(line, 0, b' ').ok_or(ErrorKind::StartLine.at(line.len()))?;
    let method = line.get(..sp).unwrap_or_default();
    if !scan::is_token(method) {
        return Err(ErrorKind::Method.at(0));
    }
    let mut end = line.len();
    while end > sp && line.get(end - 1).is_some_and(|&c| scan::is_wsp(c)) {
        end -= 1;
    }
    // The version is short: a backward byte scan reaches its space at once.
    let last_sp = line
        .get(..end)
        .unwrap_or_default()
        .iter()
        .rposition(|&c| c == b' ')
        .unwrap_or(sp);
    if last_sp <= sp {
        // Only one element after the method: the version is missing.
        return Err(ErrorKind::StartLine.at(end));
    }
    let version = line.get(last_sp + 1..end).unwrap_or_default();
    check_version(version, last_sp + 1)?;
    let mut ustart = sp + 1;
    while line.get(ustart).is_some_and(|&c| scan::is_wsp(c)) {
        ustart += 1;
    }
    let mut uend = last_sp;
    while uend > ustart && line.get(uend - 1).is_some_and(|&c| scan::is_wsp(c)) {
        uend -= 1;
    }
    let uri = line.get(ustart..uend).unwrap_or_default();
    check_request_uri(uri).map_err(|rel| ErrorKind::RequestUri.at(ustart + rel))?;
    Ok(StartLine::Request {
        // A token is ASCII: no UTF-8 check needed.
        method: Method::from_token_bytes(method),
        uri: Span::new(ustart, uend),
    })
}

fn check_version(v: &[u8], at: usize) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let looks_like_sip = v.len() > 4
        && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        && v.iter().skip(4).all(|&c| c.is_ascii_digit() || c == b'.');
    Err(if looks_like_sip {
        ErrorKind::Version.at(at)
    } else {
        ErrorKind::StartLine.at(at)
    })
}

/// A Request-URI is `scheme ":" …` with no white space, no `<>`, and for sip/sips no
/// headers component (RFC 3261 §19.1.1 forbids them there; RFC 4475 §3.1.2.11).
/// Returns the offset of the fault within `uri`.
fn check_request_uri(uri: &[u8]) -> Result<(), usize> {
    let colon = scan::find_byte_from(uri, 0, b':').ok_or(uri.len())?;
    let scheme = uri.get(..colon).unwrap_or_default();
    let scheme_ok = scheme.first().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(0);
    }
    if let Some(bad) = uri.iter().position(|&c| !uri_char(c)) {
        return Err(bad);
    }
    if uri.len() == colon + 1 {
        return Err(colon + 1);
    }
    if (scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips"))
        && scan::find_byte_from(uri, 0, b'?').is_some()
        && scan::find_byte_from(uri, 0, b'@')
            .is_none_or(|at| scan::find_byte_from(uri, at, b'?').is_some())
    {
        return Err(memchr::memrchr(b'?', uri).unwrap_or(0));
    }
    Ok(())
}

/// Bytes a Request-URI may hold: no white space or controls, no `<`, `>` or `"`, ASCII.
static URI_CHAR: [bool; 256] = uri_chars();

#[allow(clippy::indexing_slicing)] // const evaluation: u8 indices into 256 entries
const fn uri_chars() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = !(c <= b' ' || c == b'<' || c == b'>' || c == b'"' || c >= 0x7f);
        i += 1;
    }
    t
}

#[inline]
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
fn uri_char(c: u8) -> bool {
    URI_CHAR[usize::from(c)]
}

/// Parses `SIP/2.0 SP Status-Code SP Reason-Phrase`.
fn parse_status_line(line: &[u8]) -> Result<StartLine, ParseError> {
    let sp = memchr::memchr(b' ', line).ok_or(ErrorKind::StartLine.at(line.len()))?;
    check_version(line.get(..sp).unwrap_or_default(), 0)?;
    let rest = line.get(sp + 1..).unwrap_or_default();
    let code_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let after = rest.get(code_len);
    if code_len != 3 || after.is_some_and(|&c| c != b' ') {
        return Err(ErrorKind::StatusCode.at(sp + 1));
    }
    let code = rest
        .get(..3)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u16>().ok())
        .filter(|c| (100..=699).contains(c))
        .ok_or(ErrorKind::StatusCode.at(sp + 1))?;
    let reason_start = (sp + 1 + 4).min(line.len());
    Ok(StartLine::Response {
        code,
        reason: Span::new(reason_start, line.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parses_request() {
        let m = Message::parse(INVITE).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri_str(), Some("sip:bob@example.com"));
        assert_eq!(m.headers().len(), 7);
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(
            m.header_str(HeaderName::CallId).unwrap().unwrap(),
            "a84b4c76e66710@pc33.example.com"
        );
    }

    #[test]
    fn datagram_without_content_length_takes_the_rest() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nbody";
        assert_eq!(Message::parse(&msg[..]).unwrap().body(), b"body");
    }

    #[test]
    fn rejects_what_it_must() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (b"", ErrorKind::Empty),
            (b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n", ErrorKind::Truncated),
            (b"INVITE sip:a@b SIP/3.0\r\n\r\n", ErrorKind::Version),
            (b"INVITE sip:a@b\r\n\r\n", ErrorKind::StartLine),
            (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", ErrorKind::RequestUri),
            (b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n", ErrorKind::RequestUri),
            (b"SIP/2.0 1000 Big\r\n\r\n", ErrorKind::StatusCode),
            (b"SIP/2.0 099 Small\r\n\r\n", ErrorKind::StatusCode),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nFoo bar\r\n\r\n",
                ErrorKind::MissingColon,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
                ErrorKind::ContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc",
                ErrorKind::BodyTruncated,
            ),
        ];
        for (input, kind) in cases {
            let e = Message::parse(*input).unwrap_err();
            assert_eq!(&e.kind, kind, "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// Header-section pieces, normal and odd, for the differential test below.
    fn piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\n".to_owned()),
            Just("v: SIP/2.0/UDP a, SIP/2.0/TCP \"b,c\"\r\n".to_owned()),
            Just("Route: <sip:a;lr>, <sip:b;lr>\r\n".to_owned()),
            Just("Record-Route: <sip:a,b>\r\n".to_owned()),
            Just("Content-Length: 4\r\n".to_owned()),
            Just("l: 0\r\n".to_owned()),
            Just("Content-Length: 99999999999\r\n".to_owned()),
            Just("Content-Length : 2 \r\n".to_owned()),
            Just("To :\tBob <sip:b>\r\n".to_owned()),
            Just("Subject:\r\n folded\r\n\tagain\r\n".to_owned()),
            Just("NoColon\r\n".to_owned()),
            Just("Bad Name: x\r\n".to_owned()),
            Just(": empty name\r\n".to_owned()),
            Just(" leading space\r\n".to_owned()),
            Just("X-Trail: value   \t\r\n".to_owned()),
            Just("Lf-Only: x\n".to_owned()),
            Just("Cr: x\ry\r\n".to_owned()),
            Just("\r".to_owned()),
            "[A-Za-z-]{1,22}: [ -~]{0,30}\r\n",
            "[ -~\t\r\n]{0,12}",
        ]
    }

    proptest::proptest! {
        /// The fast header loop finds exactly what the general one (kept as the oracle)
        /// finds, errors and their offsets included, on whole and partial inputs and with
        /// tight limits.
        #[test]
        fn new_matches_reference(
            start in proptest::prop_oneof![
                proptest::strategy::Just("INVITE sip:a@b SIP/2.0\r\n"),
                proptest::strategy::Just("SIP/2.0 200 OK\r\n"),
                proptest::strategy::Just("INVITE sip:a@b SIP/2.0\n"),
            ],
            pieces in proptest::collection::vec(piece(), 0..12),
            end in proptest::prop_oneof![
                proptest::strategy::Just("\r\nbody"),
                proptest::strategy::Just("\n"),
                proptest::strategy::Just(""),
            ],
            cut in proptest::option::of(0usize..400),
            tight in proptest::bool::ANY,
        ) {
            let mut msg = String::from(start);
            for p in &pieces {
                msg.push_str(p);
            }
            msg.push_str(end);
            let mut b = msg.into_bytes();
            if let Some(cut) = cut {
                b.truncate(cut);
            }
            let limits = if tight {
                Limits { max_headers: 4, max_header_line: 40, max_via: 2, max_route: 2, ..Limits::default() }
            } else {
                Limits::default()
            };
            for input in [Input::Complete, Input::Partial] {
                let new = parse_head(&b, &limits, input);
                let old = reference::parse_head_reference(&b, &limits, input);
                proptest::prop_assert_eq!(format!("{new:?}"), format!("{old:?}"));
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let e = Message::parse_with(
            &b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..],
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyHeaders { limit: 2 });
        let limits = Limits {
            max_via: 2,
            ..Limits::default()
        };
        let e = Message::parse_with(
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nv: SIP/2.0/UDP c\r\n\r\n"[..],
            &limits,
        )
        .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::TooManyValues { .. }));
    }
}
