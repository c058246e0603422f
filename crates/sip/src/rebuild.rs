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

/// Where an offset of the original lands in the output, for the start of something: the
/// splices before it moved it, insertions at it included (they come before).
fn map_start(splices: &Splices, x: u32) -> Option<u32> {
    let mut delta: i64 = 0;
    for s in splices.iter().filter(|s| s.span.end <= x) {
        delta += s.with.len() as i64 - i64::from(s.span.end - s.span.start);
    }
    u32::try_from(i64::from(x) + delta).ok()
}

/// The same for the end of something: insertions at it come after, and do not count.
fn map_end(splices: &Splices, x: u32) -> Option<u32> {
    let mut delta: i64 = 0;
    for s in splices
        .iter()
        .filter(|s| s.span.end <= x && !(s.span.start == x && s.span.end == x))
    {
        delta += s.with.len() as i64 - i64::from(s.span.end - s.span.start);
    }
    u32::try_from(i64::from(x) + delta).ok()
}

fn shifted(splices: &Splices, span: Span) -> Option<Span> {
    Some(Span {
        start: map_start(splices, span.start)?,
        end: map_end(splices, span.end)?,
    })
}

fn rebuild(msg: &Message, splices: &[crate::edit::Splice], out: &Bytes) -> Option<Message> {
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
    let mut headers: Vec<Header> = Vec::with_capacity(msg.headers.len() + 2);
    let mut vias = 0usize;
    let mut routes = 0usize;
    let mut insertions = splices
        .iter()
        .filter(|s| s.span.start == s.span.end)
        .peekable();
    for h in &msg.headers {
        // Lines inserted before this one (an insertion anywhere else inside the header
        // section is not a line of its own: the parser decides).
        while let Some(s) = insertions.next_if(|s| s.span.start <= h.line.start) {
            if s.span.start != h.line.start {
                return None;
            }
            insert_lines(splices, s, out, &mut headers)?;
        }
        let touching: Vec<&crate::edit::Splice> = splices
            .iter()
            .filter(|s| s.span.start < h.line.end && s.span.end > h.line.start)
            .collect();
        match touching.as_slice() {
            [] => headers.push(Header {
                name_span: shifted(splices, h.name_span)?,
                value: shifted(splices, h.value)?,
                line: shifted(splices, h.line)?,
                ..*h
            }),
            [s] if s.span == h.line && s.with.is_empty() => {} // removed
            [s] if !h.folded
                && h.name != HeaderName::ContentLength
                && s.span.start >= h.value.start
                && s.span.end <= h.value.end
                && s.span.start != s.span.end =>
            {
                if s.with.iter().any(|&c| c == b'\r' || c == b'\n') {
                    return None;
                }
                let value = shifted(splices, h.value)?;
                // The parser trims the value: its edges must not be white space.
                let v = out.get(value.start as usize..value.end as usize)?;
                if v.is_empty() || scan::is_lws(*v.first()?) || scan::is_lws(*v.last()?) {
                    return None;
                }
                headers.push(Header {
                    name_span: shifted(splices, h.name_span)?,
                    value,
                    line: shifted(splices, h.line)?,
                    ..*h
                });
            }
            _ => return None,
        }
    }
    // Lines inserted at the end of the header section.
    for s in insertions {
        if s.span.start != msg.headers_end {
            return None;
        }
        insert_lines(splices, s, out, &mut headers)?;
    }
    // Limits the parser checks: a count over them goes to the parser, which refuses.
    if headers.len() > limits.max_headers {
        return None;
    }
    for h in &headers {
        let commas = out
            .get(h.value.start as usize..h.value.end as usize)?
            .iter()
            .filter(|&&c| c == b',')
            .count();
        match h.name {
            HeaderName::Via => vias += 1 + commas,
            HeaderName::Route | HeaderName::RecordRoute => routes += 1 + commas,
            _ => {}
        }
        if h.line.end - h.line.start > limits.max_header_line as u32 {
            return None;
        }
    }
    if vias > limits.max_via || routes > limits.max_route {
        return None;
    }
    // A line inserted first is part of the header section; one inserted last comes before
    // the empty line.
    let headers_start = map_end(splices, msg.headers_start)?;
    let headers_end = map_start(splices, msg.headers_end)?;
    let body = Span {
        start: map_start(splices, msg.body.start)?,
        end: u32::try_from(out.len()).ok()?,
    };
    if body.end - body.start != msg.body.end - msg.body.start {
        return None;
    }
    Some(Message {
        buf: out.clone(),
        start_line,
        headers,
        headers_start,
        headers_end,
        body,
        content_length: msg.content_length,
        content_length_count: msg.content_length_count,
        top_via: ViaCache::default(),
    })
}

/// Reads the header lines an insertion put into `out`, each as the parser's one-pass path
/// reads it; `None` for anything that path declines or that the parser counts specially.
fn insert_lines(
    splices: &Splices,
    s: &crate::edit::Splice,
    out: &Bytes,
    headers: &mut Vec<Header>,
) -> Option<()> {
    // After everything before this place, and after the insertions here made before it.
    let before: usize = splices
        .iter()
        .filter(|o| o.span.start == s.span.start && o.span.end == o.span.start && o.seq < s.seq)
        .map(|o| o.with.len())
        .sum();
    let mut at = map_end(splices, s.span.start)? as usize + before;
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
