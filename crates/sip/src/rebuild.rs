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
use crate::message::{
    Buf, CSeqCache, Header, IdCache, IdSpans, Message, Span, StartLine, ViaCache,
};
use crate::name::HeaderName;
use crate::parse::plain_line;
use crate::scan;

impl Editor<'_> {
    /// The edited message: what [`Message::parse`] makes of [`Editor::finish`]'s bytes,
    /// mostly without parsing them again.
    pub fn finish_message(&mut self) -> Result<Message, ParseError> {
        // Built as text when it can be, so the result need not be checked as UTF-8 again.
        let text = self.finish_text();
        let out = match &text {
            Some(text) => text.as_bytes().clone(),
            None => self.finish(),
        };
        match rebuild(self.msg, &self.splices, &out, text) {
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

/// `text`: `out` as checked text, when [`Editor::finish_text`] could make it so.
fn rebuild(
    msg: &Message,
    splices: &Splices,
    out: &Bytes,
    text: Option<bytestring::ByteString>,
) -> Option<Message> {
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
    let mut notes = Notes::of(msg);
    for h in &msg.headers {
        // Lines inserted before this one (an insertion anywhere else inside the header
        // section is not a line of its own: the parser decides).
        while let Some(s) =
            next.next_if(|s| s.span.start == s.span.end && s.span.start <= h.line.start)
        {
            if s.span.start != h.line.start {
                return None;
            }
            insert_lines(s, h.line.start, delta, out, &mut headers, &mut notes)?;
            delta += growth(s);
        }
        match next.next_if(|s| s.span.start < h.line.end) {
            None => {
                notes.moved(h.name, delta);
                headers.push(Header {
                    name_span: moved(h.name_span, delta)?,
                    value: moved(h.value, delta)?,
                    line: moved(h.line, delta)?,
                    ..*h
                })
            }
            Some(s) if s.span == h.line && s.with.is_empty() => {
                notes.touched(h.name);
                delta += growth(s); // removed
            }
            Some(s)
                if !h.folded
                    && h.name != HeaderName::ContentLength
                    && s.span.start >= h.value.start
                    && s.span.end <= h.value.end
                    && s.span.start != s.span.end
                    && !s.with.iter().any(|&c| c == b'\r' || c == b'\n') =>
            {
                notes.touched(h.name);
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
        insert_lines(s, msg.headers_end, delta, out, &mut headers, &mut notes)?;
        delta += growth(s);
    }
    let mut vias = 0usize;
    let mut routes = 0usize;
    // Limits the parser checks: a count over them goes to the parser, which refuses.
    if headers.len() > limits.max_headers {
        return None;
    }
    for h in &headers {
        // Counted as the parser counts them (nearly always one, found by a single scan).
        let values = || -> Option<usize> {
            let v = out.get(h.value.start as usize..h.value.end as usize)?;
            Some(crate::parse::count_values(v))
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
        buf: match text {
            Some(text) => Buf::Text(text),
            None => Buf::new(out.clone()),
        },
        start_line,
        headers,
        headers_start,
        headers_end,
        body,
        content_length: msg.content_length,
        content_length_count: msg.content_length_count,
        top_via: ViaCache::default(),
        ids: notes.ids(msg),
        cseq: notes.cseq(msg),
    })
}

/// What the original had noted about its Call-ID, tags and CSeq, carried to the rebuilt
/// message when the headers they come from were only moved: the first Call-ID, From, To
/// and CSeq field of each are then the same field, by the same number of bytes further.
/// Any of those four edited, removed or inserted, and the rebuilt message reads its own.
struct Notes {
    /// How far the first Call-ID, From and To fields moved.
    moved: [Option<i64>; 3],
    /// A Call-ID, From, To or CSeq field was edited, removed or added.
    touched: bool,
}

impl Notes {
    fn of(msg: &Message) -> Notes {
        Notes {
            moved: [None; 3],
            // Nothing noted: nothing to carry.
            touched: msg.ids.get().is_none() && msg.cseq.get().is_none(),
        }
    }

    fn slot(name: HeaderName) -> Option<usize> {
        match name {
            HeaderName::CallId => Some(0),
            HeaderName::From => Some(1),
            HeaderName::To => Some(2),
            _ => None,
        }
    }

    fn moved(&mut self, name: HeaderName, delta: i64) {
        if let Some(d) = Notes::slot(name).and_then(|i| self.moved.get_mut(i)) {
            d.get_or_insert(delta);
        }
    }

    fn touched(&mut self, name: HeaderName) {
        if Notes::slot(name).is_some() || name == HeaderName::CSeq {
            self.touched = true;
        }
    }

    fn ids(&self, msg: &Message) -> IdCache {
        let cache = IdCache::default();
        let Some(ids) = msg.ids.get().filter(|_| !self.touched) else {
            return cache;
        };
        // A place noted in a field that moves with it; nothing noted stays nothing.
        let carry = |span: Option<Span>, delta: Option<i64>| match (span, delta) {
            (None, _) => Some(None),
            (Some(s), Some(d)) => moved(s, d).map(Some),
            (Some(_), None) => None,
        };
        let [call_id, from_tag, to_tag] = self.moved;
        if let (Some(call_id), Some(from_tag), Some(to_tag)) = (
            carry(ids.call_id(), call_id),
            carry(ids.tag_of_from(), from_tag),
            carry(ids.tag_of_to(), to_tag),
        ) {
            cache.set(IdSpans::new(call_id, from_tag, to_tag));
        }
        cache
    }

    fn cseq(&self, msg: &Message) -> CSeqCache {
        let cache = CSeqCache::default();
        if let Some(noted) = msg.cseq.get().filter(|_| !self.touched) {
            cache.set(noted);
        }
        cache
    }
}

/// Reads the header lines an insertion put into `out`, each as the parser's one-pass path
/// reads it, telling `notes` which fields were added; `None` for anything that path
/// declines or that the parser counts specially.
fn insert_lines(
    s: &crate::edit::Splice,
    at: u32,
    delta: i64,
    out: &Bytes,
    headers: &mut Vec<Header>,
    notes: &mut Notes,
) -> Option<()> {
    let mut at = usize::try_from(i64::from(at) + delta).ok()?;
    let stop = at + s.with.len();
    while at < stop {
        let (h, next) = plain_line(out, at)?;
        if h.name == HeaderName::ContentLength || h.name == HeaderName::Other || next > stop {
            return None;
        }
        notes.touched(h.name);
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
            let rebuilt = rebuild(&m, &e.splices, &out, None);
            assert!(rebuilt.is_some(), "followed without the parser: {names:?}");
            assert_eq!(rebuilt, Message::parse(out).ok(), "{names:?}");
        }
    }

    /// The Call-ID, tags and CSeq the original had noted are carried when their fields only
    /// moved, and read afresh when one was edited, removed or added: either way the rebuilt
    /// message answers what parsing its bytes answers.
    #[test]
    fn noted_ids_and_cseq_carry_over_only_when_untouched() {
        let m = Message::parse(INVITE).unwrap();
        m.validate().unwrap();
        let _ = m.cseq().unwrap();
        assert!(m.ids.get().is_some() && m.cseq.get().is_some());
        type Edit = fn(&Message, &mut Editor<'_>);
        fn header(m: &Message, n: HeaderName) -> Header {
            m.header(n).cloned().unwrap()
        }
        let edits: [(&str, bool, Edit); 9] = [
            ("forwarding", true, |_, e| {
                e.set_request_uri("sip:alice@192.0.2.1:5070")
                    .push_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKrl1")
                    .push_record_route("<sip:127.0.0.1:5060;lr;tk=aa>")
                    .pop_route();
            }),
            ("a header added", true, |_, e| {
                e.add_header("Subject", "carried");
            }),
            ("To replaced", false, |m, e| {
                e.replace_value(&header(m, HeaderName::To), "<sip:bob@example.com>;tag=new");
            }),
            ("From replaced", false, |m, e| {
                e.replace_value(&header(m, HeaderName::From), "<sip:x@example.com>;tag=f2");
            }),
            ("Call-ID replaced", false, |m, e| {
                e.replace_value(&header(m, HeaderName::CallId), "another-call");
            }),
            ("CSeq replaced", false, |m, e| {
                e.replace_value(&header(m, HeaderName::CSeq), "77 INVITE");
            }),
            ("To removed", false, |_, e| {
                e.remove_all(HeaderName::To);
            }),
            ("a To added", false, |_, e| {
                e.add_header("To", "<sip:later@example.com>;tag=later");
            }),
            ("a Call-ID added", false, |_, e| {
                e.add_header("Call-ID", "second");
            }),
        ];
        for (name, carried, edit) in edits {
            let mut e = m.edit();
            edit(&m, &mut e);
            let out = e.finish();
            let Some(rebuilt) = rebuild(&m, &e.splices, &out, None) else {
                panic!("{name}: left to the parser");
            };
            let parsed = Message::parse(out).unwrap();
            assert_eq!(
                rebuilt.ids.get().is_some() && rebuilt.cseq.get().is_some(),
                carried,
                "{name}"
            );
            let err = |e: ParseError| e.to_string();
            assert_eq!(
                rebuilt.call_id().map_err(err),
                parsed.call_id().map_err(err),
                "{name}"
            );
            assert_eq!(rebuilt.from_tag(), parsed.from_tag(), "{name}");
            assert_eq!(rebuilt.to_tag(), parsed.to_tag(), "{name}");
            assert_eq!(
                rebuilt.cseq().map_err(err),
                parsed.cseq().map_err(err),
                "{name}"
            );
        }
    }

    /// What it does not follow goes to the parser: the same message either way.
    #[test]
    fn the_rest_is_parsed() {
        let m = Message::parse(INVITE).unwrap();
        let mut e = m.edit();
        e.set_body(Some("text/plain"), Bytes::from_static(b"hello"));
        let out = e.finish();
        assert!(rebuild(&m, &e.splices, &out, None).is_none());
        let mut e = m.edit();
        e.set_body(Some("text/plain"), Bytes::from_static(b"hello"));
        assert_eq!(e.finish_message().ok(), Message::parse(out).ok());
    }

    /// Built as text only from text: an edit that is not UTF-8, or a message that is not,
    /// gives the bytes the parser would keep as bytes; multi-byte text stays text.
    #[test]
    fn text_stays_text_and_bytes_stay_bytes() {
        let via = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKt1";
        let named = String::from_utf8(INVITE.to_vec())
            .unwrap()
            .replacen("From: ", "From: \"Zoë\" ", 1)
            .into_bytes();
        // The same length of body, not UTF-8.
        let mut raw_body = INVITE.to_vec();
        let n = raw_body.len();
        raw_body[n - 4..].copy_from_slice(b"\xff\xfe\xfd\xfc");
        for (name, bytes, text) in [
            ("ascii", INVITE.to_vec(), true),
            ("multi-byte", named, true),
            ("raw body", raw_body, false),
        ] {
            let m = Message::parse(bytes).unwrap();
            let mut e = m.edit();
            e.push_via(via).decrement_max_forwards().unwrap();
            let built = e.finish_message().unwrap();
            assert_eq!(Ok(&built), Message::parse(e.finish()).as_ref(), "{name}");
            assert_eq!(matches!(built.buf, Buf::Text(_)), text, "{name}");
        }
        // A text message given a body that is not UTF-8.
        let m = Message::parse(INVITE).unwrap();
        let mut e = m.edit();
        e.set_body(None, Bytes::from_static(b"\xff"));
        assert!(e.finish_text().is_none());
        assert_eq!(e.finish_message().ok(), Message::parse(e.finish()).ok());
    }
}
