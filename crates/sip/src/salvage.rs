//! An answer for a request the parser refused: when the bytes cannot be a [`Message`]
//! (too large, too many headers, a body shorter than its Content-Length…) but its Via,
//! From, To, Call-ID and CSeq lines can still be read, the sender gets the status RFC 3261
//! asks for (400, 513 Message Too Large, 505) instead of silence.
//!
//! The answer is built only from lines of the request itself and is sent only when it is
//! no larger than the request: a forged source gains nothing by provoking it.
//!
//! [`Message`]: crate::Message

use bytes::Bytes;

use crate::error::{ErrorKind, ParseError};

/// Longest header line looked at; longer ones are skipped.
const MAX_LINE: usize = 8192;

/// The stateless response to a request refused with `err`, or `None` when the bytes are
/// not a request (a response, an ACK, junk) or lack a header a response needs.
pub fn refusal_for_unparsed(bytes: &[u8], err: &ParseError) -> Option<Bytes> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next()?;
    let start = std::str::from_utf8(start).ok()?;
    let mut parts = start.split(' ');
    let method = parts.next()?;
    let (_, version) = (parts.next()?, parts.next()?);
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
    };
    if !is_token(method) || method == "ACK" || !version.starts_with("SIP/") {
        return None;
    }
    let mut vias: Vec<&str> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.len() > MAX_LINE || line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => vias.push(line),
            "from" | "f" => from = from.or(Some(line)),
            "to" | "t" => to = to.or(Some(line)),
            "call-id" | "i" => call_id = call_id.or(Some(line)),
            "cseq" => cseq = cseq.or(Some(line)),
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty() {
        return None;
    }
    let status = match err.kind {
        ErrorKind::MessageTooLarge { .. }
        | ErrorKind::TooManyHeaders { .. }
        | ErrorKind::HeaderLineTooLong { .. }
        | ErrorKind::TooManyValues { .. } => 513,
        _ => err.status(),
    };
    let detailed = match status {
        513 => "Message Too Large".to_owned(),
        505 => "Version Not Supported".to_owned(),
        416 => "Unsupported URI Scheme".to_owned(),
        _ => err.reason_phrase(),
    };
    let build = |reason: &str| {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for v in &vias {
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(from);
        out.push_str("\r\n");
        out.push_str(to);
        if !to.to_ascii_lowercase().contains(";tag=") {
            out.push_str(";tag=rl-bad");
        }
        out.push_str("\r\n");
        out.push_str(call_id);
        out.push_str("\r\n");
        out.push_str(cseq);
        out.push_str("\r\nContent-Length: 0\r\n\r\n");
        out
    };
    // Never larger than what came in (a forged source gains nothing by provoking it): the
    // reason that says what and where, else the bare one, else no answer.
    let answer = [detailed.as_str(), "Bad Request"]
        .into_iter()
        .map(build)
        .find(|out| out.len() <= bytes.len())
        .map(Bytes::from);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Message};

    fn request(extra: &str, body_len: usize, body: &str) -> String {
        format!("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: salvage\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: {body_len}\r\n\r\n{body}")
    }

    fn answer(text: &str, limits: &Limits) -> Option<Message> {
        let err = Message::parse_with(Bytes::from(text.to_owned()), limits).unwrap_err();
        refusal_for_unparsed(text.as_bytes(), &err).map(|b| Message::parse(b).unwrap())
    }

    #[test]
    fn a_body_shorter_than_its_content_length_gets_400() {
        let r = answer(&request("", 100, "v=0\r\n"), &Limits::default()).unwrap();
        assert_eq!(r.status(), Some(400));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-1"));
        assert_eq!(r.to_tag(), Some("rl-bad"));
        assert_eq!(r.call_id().unwrap(), "salvage");
    }

    #[test]
    fn too_many_headers_or_a_long_line_gets_513_and_is_no_larger_than_the_request() {
        let many = "X-Pad: 1\r\n".repeat(200);
        let text = request(&many, 0, "");
        let r = answer(&text, &Limits::default()).unwrap();
        assert_eq!(r.status(), Some(513));
        assert!(r.as_bytes().len() < text.len());
        let long = format!("X-Long: {}\r\n", "x".repeat(9000));
        let r = answer(&request(&long, 0, ""), &Limits::default()).unwrap();
        assert_eq!(r.status(), Some(513));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_amplifies(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            extra in "[a-zA-Z:;= \r\n]{0,80}",
        ) {
            // Arbitrary bytes, and a request with arbitrary trailing lines.
            let framed = format!("{}{extra}", request("", 100, ""));
            for input in [bytes.clone(), framed.into_bytes()] {
                let input = Bytes::from(input);
                if let Err(e) = Message::parse_with(input.clone(), &Limits::default()) {
                    if let Some(out) = refusal_for_unparsed(&input, &e) {
                        proptest::prop_assert!(out.len() <= input.len());
                        proptest::prop_assert!(Message::parse(out).is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn no_answer_for_responses_acks_junk_or_missing_headers() {
        let limits = Limits::default();
        let ack = request("", 100, "")
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        assert!(answer(&ack, &limits).is_none());
        let resp =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nContent-Length: 9\r\n\r\n";
        assert!(answer(resp, &limits).is_none());
        let no_via = request("", 100, "")
            .replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n", "");
        assert!(answer(&no_via, &limits).is_none());
        let junk = "\u{1}\u{2}garbage garbage garbage\r\n\r\n";
        let err = Message::parse(Bytes::from(junk)).unwrap_err();
        assert!(refusal_for_unparsed(junk.as_bytes(), &err).is_none());
    }
}
