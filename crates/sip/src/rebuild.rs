//! The edited message without parsing it again: the original header table with its spans
//! moved past the splices, and the inserted lines read alone.
//!
//! A proxy edits and re-reads every request it forwards (a Via pushed, Max-Forwards
//! decremented, a Record-Route added, the Request-URI set, our Route popped): six of the
//! thirteen parses of a failover call (`docs/performance.md`). The result must be the
//! message [`Message::parse`] would make of the same bytes, so anything this does not
//! follow exactly (the status line or the body edited, a folded or counted header touched,
//! a value whose edges changed, limits that could be reached) goes to the parser instead;
//! `tests::same_as_parsing_again` and the proptests check the two agree.

use bytes::Bytes;

use crate::edit::Editor;
use crate::error::ParseError;
use crate::limits::Limits;
use crate::message::{Header, Message, Span, StartLine, ViaCache};
use crate::name::HeaderName;
use crate::parse::plain_line;
use crate::scan;

impl Editor<'_> {
    /// The edited message: what [`Message::parse`] makes of [`Editor::finish`]'s bytes,
    /// mostly without parsing them again.
    pub fn finish_message(&mut self) -> Result<Message, ParseError> {
        let out = self.finish();
        match rebuild(self.msg, &self.splices, &out) {
            Some(m) => Ok(m),
            None => Message::parse(out),
        }
    }
}

type Splices = [crate::edit::Splice];

/// `span` moved by `delta` bytes.
fn moved(span: Span, delta: i64) -> Option<Span> {
    Some(Span {
        start: u32::try_from(i64::from(span.start) + delta).ok()?,
        end: u32::try_from(i64::from(span.end) + delta).ok()?,
    })
}

/// How much a splice changes the length.
fn growth(s: &crate::edit::Splice) -> i64 {
    s.with.len() as i64 - i64::from(s.span.end - s.span.start)
}

fn rebuild(msg: &Message, splices: &Splices, out: &Bytes) -> Option<Message> {
    let limits = Limits::default();
    if out.len() > limits.max_message_size || scan_crlf_start(out) {
        return None;
    }
    // Splices that overlap were resolved by `finish` dropping one: leave that to the parser.
    let mut pos = 0;
    for s in splices {
        if s.span.start < pos {
            return None;
        }
        pos = s.span.end;
    }
    // The start line: only a new Request-URI is followed.
    let start_line = match &msg.start_line {
        StartLine::Request { method, uri } => {
            let mut new_uri = *uri;
            for s in splices.iter().filter(|s| s.span.start < msg.headers_start) {
                if s.span != *uri || s.with.is_empty() || s.with.iter().any(|&c| c <= b' ') {
                    return None;
                }
                new_uri = Span {
                    start: uri.start,
                    end: uri.start + u32::try_from(s.with.len()).ok()?,
                };
            }
            StartLine::Request {
                method: method.clone(),
                uri: new_uri,
            }
        }
        StartLine::Response { .. } => {
            if splices.iter().any(|s| s.span.start < msg.headers_start) {
                return None;
            }
            msg.start_line.clone()
        }
    };
    // The body: untouched.
    if splices.iter().any(|s| s.span.end > msg.headers_end) {
        return None;
    }
    // One pass over the headers and the splices (both in order), `delta` being how far
    // the original's bytes have moved so far.
    let mut delta: i64 = splices
        .iter()
        .filter(|s| s.span.start < msg.headers_start)
        .map(growth)
        .sum();
    let headers_start = u32::try_from(i64::from(msg.headers_start) + delta).ok()?;
    let mut next = splices
        .iter()
        .filter(|s| s.span.start >= msg.headers_start)
        .peekable();
    let mut headers: Vec<Header> = Vec::with_capacity(msg.headers.len() + 2);
    for h in &msg.headers {
        // Lines inserted before this one (an insertion anywhere else inside the header
        // section is not a line of its own: the parser decides).
        while let Some(s) =
            next.next_if(|s| s.span.start == s.span.end && s.span.start <= h.line.start)
        {
            if s.span.start != h.line.start {
                return None;
            }
            insert_lines(s, h.line.start, delta, out, &mut headers)?;
            delta += growth(s);
        }
        match next.next_if(|s| s.span.start < h.line.end) {
            None => headers.push(Header {
                name_span: moved(h.name_span, delta)?,
                value: moved(h.value, delta)?,
                line: moved(h.line, delta)?,
                ..*h
            }),
            Some(s) if s.span == h.line && s.with.is_empty() => delta += growth(s), // removed
            Some(s)
                if !h.folded
                    && h.name != HeaderName::ContentLength
                    && s.span.start >= h.value.start
                    && s.span.end <= h.value.end
                    && s.span.start != s.span.end
                    && !s.with.iter().any(|&c| c == b'\r' || c == b'\n') =>
            {
                let grown = delta + growth(s);
                let value = Span {
                    start: moved(h.value, delta)?.start,
                    end: moved(h.value, grown)?.end,
                };
                // The parser trims the value: its edges must not be white space.
                let v = out.get(value.start as usize..value.end as usize)?;
                if v.is_empty() || scan::is_lws(*v.first()?) || scan::is_lws(*v.last()?) {
                    return None;
                }
                headers.push(Header {
                    name_span: moved(h.name_span, delta)?,
                    value,
                    line: Span {
                        start: moved(h.line, delta)?.start,
                        end: moved(h.line, grown)?.end,
                    },
                    ..*h
                });
                delta = grown;
            }
            Some(_) => return None,
        }
        // A second splice in the same line: the parser decides.
        if next
            .peek()
            .is_some_and(|s| s.span.start < h.line.end && s.span.end > h.line.start)
        {
            return None;
        }
    }
    // Lines inserted at the end of the header section, before the empty line.
    for s in next {
        if s.span.start != s.span.end || s.span.start != msg.headers_end {
            return None;
        }
        insert_lines(s, msg.headers_end, delta, out, &mut headers)?;
        delta += growth(s);
    }
    let mut vias = 0usize;
    let mut routes = 0usize;
    // Limits the parser checks: a count over them goes to the parser, which refuses.
    if headers.len() > limits.max_headers {
        return None;
    }
    for h in &headers {
        // An upper bound of the values (a comma inside a quoted string counts too).
        let values = || -> Option<usize> {
            let v = out.get(h.value.start as usize..h.value.end as usize)?;
            Some(1 + v.iter().filter(|&&c| c == b',').count())
        };
        match h.name {
            HeaderName::Via => vias += values()?,
            HeaderName::Route | HeaderName::RecordRoute => routes += values()?,
            _ => {}
        }
        if h.line.end - h.line.start > limits.max_header_line as u32 {
            return None;
        }
    }
    if vias > limits.max_via || routes > limits.max_route {
        return None;
    }
    let headers_end = u32::try_from(i64::from(msg.headers_end) + delta).ok()?;
    let body = Span {
        start: u32::try_from(i64::from(msg.body.start) + delta).ok()?,
        end: u32::try_from(out.len()).ok()?,
    };
    if body.end - body.start != msg.body.end - msg.body.start {
        return None;
    }
    Some(Message {
        buf: crate::message::Buf::new(out.clone()),
        start_line,
        headers,
        headers_start,
        headers_end,
        body,
        content_length: msg.content_length,
        content_length_count: msg.content_length_count,
        top_via: ViaCache::default(),
        ids: Default::default(),
        cseq: Default::default(),
    })
}

/// Reads the header lines an insertion put into `out`, each as the parser's one-pass path
/// reads it; `None` for anything that path declines or that the parser counts specially.
fn insert_lines(
    s: &crate::edit::Splice,
    at: u32,
    delta: i64,
    out: &Bytes,
    headers: &mut Vec<Header>,
) -> Option<()> {
    let mut at = usize::try_from(i64::from(at) + delta).ok()?;
    let stop = at + s.with.len();
    while at < stop {
        let (h, next) = plain_line(out, at)?;
        if h.name == HeaderName::ContentLength || h.name == HeaderName::Other || next > stop {
            return None;
        }
        headers.push(h);
        at = next;
    }
    Some(())
}

/// Whether the output starts with a line break (the parser skips those; offsets would move).
fn scan_crlf_start(out: &[u8]) -> bool {
    matches!(out.first(), Some(b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:100@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1\r\n\
From: sipp <sip:sipp@127.0.0.1:5090>;tag=1\r\n\
To: <sip:100@127.0.0.1:5060>\r\n\
Call-ID: 1-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Route: <sip:127.0.0.1:5060;lr;tk=0011223344556677>, <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    /// Each edit the proxy makes, alone and together, is followed without the parser, and
    /// gives what the parser gives.
    #[test]
    fn same_as_parsing_again() {
        let m = Message::parse(INVITE).unwrap();
        type Edit = fn(&mut Editor<'_>);
        let edits: [(&str, Edit); 6] = [
            ("uri", |e| {
                e.set_request_uri("sip:alice@192.0.2.1:5070;transport=tcp");
            }),
            ("max-forwards", |e| {
                e.decrement_max_forwards().unwrap();
            }),
            ("via", |e| {
                e.push_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKrl1");
            }),
            ("record-route", |e| {
                e.push_record_route("<sip:127.0.0.1:5060;lr;tk=aa>");
            }),
            ("pop route", |e| {
                e.pop_route();
            }),
            ("pop via", |e| {
                e.pop_via();
            }),
        ];
        for mask in 1u32..(1 << edits.len()) {
            let chosen: Vec<_> = edits
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .collect();
            let mut e = m.edit();
            for (_, (_, f)) in &chosen {
                f(&mut e);
            }
            let out = e.finish();
            let names: Vec<_> = chosen.iter().map(|(_, (n, _))| *n).collect();
            let rebuilt = rebuild(&m, &e.splices, &out);
            assert!(rebuilt.is_some(), "followed without the parser: {names:?}");
            assert_eq!(rebuilt, Message::parse(out).ok(), "{names:?}");
        }
    }

    /// What it does not follow goes to the parser: the same message either way.
    #[test]
    fn the_rest_is_parsed() {
        let m = Message::parse(INVITE).unwrap();
        let mut e = m.edit();
        e.set_body(Some("text/plain"), Bytes::from_static(b"hello"));
        let out = e.finish();
        assert!(rebuild(&m, &e.splices, &out).is_none());
        let mut e = m.edit();
        e.set_body(Some("text/plain"), Bytes::from_static(b"hello"));
        assert_eq!(e.finish_message().ok(), Message::parse(out).ok());
    }
}
