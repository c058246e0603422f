//! The header-section parser as it was before the fast path, kept as the oracle the
//! differential property test (`tests::new_matches_reference`) and the `parse` fuzz target
//! (through `crate::oracles`) compare against.

use crate::error::{ErrorKind, ParseError};
use crate::limits::Limits;
use crate::message::{Header, Span};
use crate::name::HeaderName;
use crate::parse::{parse_start_line, Head, Input};
use crate::scan;

/// Locates the start line, the header fields and where the body starts.
///
/// Returns [`ErrorKind::Truncated`] when the empty line ending the headers is not in `b`
/// (the stream framer uses that to wait for more bytes). With [`Input::Partial`] a header line
/// whose line end is the last byte of `b` is also `Truncated`: whether it continues on a
/// folded line is only known once the next byte arrives.
pub(crate) fn parse_head_reference(
    b: &[u8],
    limits: &Limits,
    input: Input,
) -> Result<Head, ParseError> {
    if b.is_empty() {
        return Err(ErrorKind::Empty.at(0));
    }
    let mut lines = Lines::new(b);
    let (sl_end, mut pos) = lines.end_of(0).ok_or(ErrorKind::Truncated.at(b.len()))?;
    let start_line = parse_start_line(b.get(..sl_end).unwrap_or_default())?;
    let headers_start = pos;
    let mut headers = Vec::with_capacity(20);
    let mut content_length = None;
    let mut content_length_count = 0u8;
    let mut via_count = 0usize;
    let mut route_count = 0usize;

    loop {
        match b.get(pos..) {
            Some([b'\r', b'\n', ..]) => {
                return Ok(Head {
                    start_line,
                    headers,
                    headers_start: Span::new(headers_start, 0).start,
                    headers_end: Span::new(pos, 0).start,
                    body_start: pos + 2,
                    content_length,
                    content_length_count,
                })
            }
            Some([b'\n', ..]) => {
                return Ok(Head {
                    start_line,
                    headers,
                    headers_start: Span::new(headers_start, 0).start,
                    headers_end: Span::new(pos, 0).start,
                    body_start: pos + 1,
                    content_length,
                    content_length_count,
                })
            }
            Some([]) | None => return Err(ErrorKind::Truncated.at(pos)),
            Some([c, ..]) if scan::is_wsp(*c) => {
                // A continuation line with no header before it.
                return Err(ErrorKind::HeaderName.at(pos));
            }
            Some(_) => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(ErrorKind::TooManyHeaders {
                limit: limits.max_headers,
            }
            .at(pos));
        }
        // The header line, with continuation lines (folding) appended.
        let line_start = pos;
        let (mut value_end, mut next) = lines.end_of(pos).ok_or(ErrorKind::Truncated.at(pos))?;
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
            let (e, n) = lines.end_of(next).ok_or(ErrorKind::Truncated.at(next))?;
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
        let name_len = line.iter().take_while(|&&c| scan::is_token_char(c)).count();
        if name_len == 0 {
            return Err(ErrorKind::HeaderName.at(line_start));
        }
        let mut colon = name_len;
        while line.get(colon).is_some_and(|&c| scan::is_wsp(c)) {
            colon += 1;
        }
        if line.get(colon) != Some(&b':') {
            let kind = if line.get(colon).is_none() || colon > name_len {
                ErrorKind::MissingColon
            } else {
                // e.g. "Foobar roobar" has a space, then a non-colon: still no colon.
                match memchr::memchr(b':', line) {
                    None => ErrorKind::MissingColon,
                    Some(_) => ErrorKind::HeaderName,
                }
            };
            return Err(kind.at(line_start + colon));
        }
        let mut vstart = colon + 1;
        while line.get(vstart).is_some_and(|&c| scan::is_lws(c)) {
            vstart += 1;
        }
        let mut vend = line.len();
        while vend > vstart && line.get(vend - 1).is_some_and(|&c| scan::is_lws(c)) {
            vend -= 1;
        }
        let name = HeaderName::classify(line.get(..name_len).unwrap_or_default());
        let value = line.get(vstart..vend).unwrap_or_default();
        match name {
            HeaderName::ContentLength => {
                content_length_count = content_length_count.saturating_add(1);
                let v = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| scan::parse_decimal(s, limits.max_message_size as u64))
                    .ok_or(ErrorKind::ContentLength.at(line_start + vstart))?;
                let v = u32::try_from(v)
                    .map_err(|_| ErrorKind::ContentLength.at(line_start + vstart))?;
                content_length = match content_length {
                    None if content_length_count == 1 => Some(v),
                    // Several Content-Length fields: the body length is unknown.
                    _ => None,
                };
            }
            HeaderName::Via => {
                via_count += count_values(value);
                if via_count > limits.max_via {
                    return Err(ErrorKind::TooManyValues {
                        header: "Via",
                        limit: limits.max_via,
                    }
                    .at(line_start));
                }
            }
            HeaderName::Route | HeaderName::RecordRoute => {
                route_count += count_values(value);
                if route_count > limits.max_route {
                    return Err(ErrorKind::TooManyValues {
                        header: "Route",
                        limit: limits.max_route,
                    }
                    .at(line_start));
                }
            }
            _ => {}
        }
        headers.push(Header {
            name,
            name_span: Span::new(line_start, line_start + name_len),
            value: Span::new(line_start + vstart, line_start + vend),
            line: Span::new(line_start, next),
            folded,
        });
        pos = next;
    }
}

fn count_values(v: &[u8]) -> usize {
    // Most Via and Route lines hold one value: no comma, nothing to split.
    if !v.contains(&b',') {
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

/// Line ends, found by one `memchr` iterator over the buffer: a vector search started once
/// per message rather than once per (short) line.
struct Lines<'a> {
    b: &'a [u8],
    newlines: memchr::Memchr<'a>,
}

impl<'a> Lines<'a> {
    fn new(b: &'a [u8]) -> Lines<'a> {
        Lines {
            b,
            newlines: memchr::memchr_iter(b'\n', b),
        }
    }

    /// The end of the line starting at `from`: (content end, next line start). Lines must
    /// be asked for in order.
    #[inline]
    fn end_of(&mut self, from: usize) -> Option<(usize, usize)> {
        let lf = loop {
            let lf = self.newlines.next()?;
            if lf >= from {
                break lf;
            }
        };
        let end = if lf > from && self.b.get(lf - 1) == Some(&b'\r') {
            lf - 1
        } else {
            lf
        };
        Some((end, lf + 1))
    }
}
