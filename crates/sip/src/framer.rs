//! Stream framing for TCP and TLS: split a byte stream into messages by Content-Length
//! (RFC 3261 §18.3), answering RFC 5626 §3.5.1 keep-alives.
//!
//! ```text
//!  bytes ──push()──▶ [ buffer ] ──next()──▶ Frame::Message | Frame::Ping | None (need more)
//! ```

use bytes::{Buf, BytesMut};

use crate::error::{ErrorKind, ParseError};
use crate::limits::Limits;
use crate::message::Message;
use crate::parse::{attach, parse_head, parse_start_line, Input};

/// What the framer found at the front of the stream.
#[derive(Debug)]
pub enum Frame {
    /// A complete message.
    Message(Message),
    /// A double-CRLF keep-alive ping; the peer expects a single CRLF pong (RFC 5626 §4.4.1).
    Ping,
}

/// A resumable splitter of a SIP byte stream into messages.
///
/// After an error the stream is out of sync and the connection should be closed.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// How far the buffer was searched for the empty line ending the headers, without
    /// finding it: a header section arriving in many small reads is scanned once, not
    /// re-parsed on every read.
    scanned: usize,
}

impl StreamFramer {
    /// A framer with the given limits.
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            limits,
            scanned: 0,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly, avoiding a copy (use with `BufMut` reads).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        // CRLFs between messages: "\r\n\r\n" is a ping, a lone "\r\n" a pong (ignored).
        while let Some(b'\r' | b'\n') = self.buf.first() {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                self.scanned = 0;
                return Ok(Some(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                    return Ok(None); // could still become a ping
                }
                self.buf.advance(2);
                self.scanned = 0;
            } else if self.buf.len() == 1 && self.buf.first() == Some(&b'\r') {
                return Ok(None);
            } else {
                self.buf.advance(1);
                self.scanned = 0;
            }
        }
        if self.buf.is_empty() {
            self.scanned = 0;
            return Ok(None);
        }
        // Parse only once the header section is complete (an empty line: CRLF CRLF, or
        // bare LFs). Earlier bytes were searched already; 2 bytes of overlap cover a
        // terminator split across reads.
        let from = self.scanned.saturating_sub(2);
        let rest = self.buf.get(from..).unwrap_or_default();
        let complete = memchr::memmem::find(rest, b"\n\r\n").is_some()
            || memchr::memmem::find(rest, b"\n\n").is_some();
        if !complete {
            // Junk is refused as soon as its first line is in, not when the limit is hit.
            let first_line_in =
                memchr::memchr(b'\n', self.buf.get(from..).unwrap_or_default()).is_some();
            if first_line_in
                && memchr::memchr(b'\n', self.buf.get(..from).unwrap_or_default()).is_none()
            {
                // Only the start line: header lines are judged once the section is complete,
                // so a stream framed whole or in pieces meets the same verdict.
                let lf = memchr::memchr(b'\n', &self.buf).unwrap_or(0);
                let line = self.buf.get(..lf).unwrap_or_default();
                parse_start_line(line.strip_suffix(b"\r").unwrap_or(line))?;
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.limits.max_message_size {
                return Err(ErrorKind::MessageTooLarge {
                    limit: self.limits.max_message_size,
                }
                .at(self.limits.max_message_size));
            }
            return Ok(None);
        }
        let head = match parse_head(&self.buf, &self.limits, Input::Partial) {
            Ok(h) => h,
            Err(e) if e.kind == ErrorKind::Truncated => {
                if self.buf.len() > self.limits.max_message_size {
                    return Err(ErrorKind::MessageTooLarge {
                        limit: self.limits.max_message_size,
                    }
                    .at(self.limits.max_message_size));
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if head.content_length_count > 1 {
            return Err(ErrorKind::ConflictingContentLength.at(head.headers_end as usize));
        }
        let len = head
            .content_length
            .ok_or(ErrorKind::MissingContentLength.at(head.headers_end as usize))?;
        let total = head.body_start + len as usize;
        if total > self.limits.max_message_size {
            return Err(ErrorKind::MessageTooLarge {
                limit: self.limits.max_message_size,
            }
            .at(0));
        }
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        self.scanned = 0;
        Ok(Some(Frame::Message(attach(head, bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc";

    fn frames(input: &[&[u8]]) -> Vec<String> {
        let mut f = StreamFramer::new(Limits::default());
        let mut out = vec![];
        for chunk in input {
            f.push(chunk);
            while let Some(fr) = f.next_frame().unwrap() {
                out.push(match fr {
                    Frame::Message(m) => String::from_utf8_lossy(m.body()).into_owned(),
                    Frame::Ping => "ping".into(),
                });
            }
        }
        out
    }

    #[test]
    fn splits_back_to_back_and_byte_by_byte() {
        let mut two = M.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(M);
        assert_eq!(frames(&[&two]), vec!["abc", "ping", "abc"]);
        let bytes: Vec<&[u8]> = two.chunks(1).collect();
        assert_eq!(frames(&bytes), vec!["abc", "ping", "abc"]);
    }

    #[test]
    fn junk_is_refused_at_its_first_line() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"\x00\xffgarbage\r\n");
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn pong_is_skipped() {
        let mut s = b"\r\n".to_vec();
        s.extend_from_slice(M);
        assert_eq!(frames(&[&s]), vec!["abc"]);
    }

    #[test]
    fn missing_or_double_content_length_is_an_error() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        assert_eq!(
            f.next_frame().unwrap_err().kind,
            ErrorKind::MissingContentLength
        );
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab");
        assert_eq!(
            f.next_frame().unwrap_err().kind,
            ErrorKind::ConflictingContentLength
        );
    }

    #[test]
    fn folding_decided_only_once_the_next_byte_arrives() {
        // Found by fuzzing: a header line ending at the end of the buffer was taken as
        // complete, so a continuation line arriving in the next read changed the verdict.
        let whole: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n 3\r\n\r\nabc";
        assert_eq!(frames(&[whole]), vec!["abc"]);
        let at = whole.windows(4).position(|w| w == b"l:\r\n").unwrap() + 4;
        let (a, b) = whole.split_at(at);
        assert_eq!(frames(&[a, b]), vec!["abc"]);
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(frames(&bytes), vec!["abc"]);
        // The fuzzer's input: "w" is a header name folded onto the next line, not yet an error.
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"A i:a SIP/2.0\nw\n");
        assert!(f.next_frame().unwrap().is_none());
        f.push(b" ");
        assert!(f.next_frame().unwrap().is_none());
    }

    #[test]
    fn oversized_stream_is_an_error() {
        let mut f = StreamFramer::new(Limits {
            max_message_size: 64,
            ..Limits::default()
        });
        f.push(&[b'A'; 100]);
        assert!(matches!(
            f.next_frame().unwrap_err().kind,
            ErrorKind::MessageTooLarge { .. }
        ));
    }
}
