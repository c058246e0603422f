//! Parse and validation errors: what was wrong, where, and how a server should react.

use std::fmt;

/// A message that could not be accepted, with the byte offset where the fault was found.
///
/// The offset is relative to the start of the buffer handed to the parser (for a stream,
/// the start of the message). [`ParseError::status`] gives the response a server sends for
/// a bad request; a bad response is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Byte offset of the fault.
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        ParseError { kind, offset }
    }

    /// The status code a server answers a request with when it fails this way.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// A reason phrase for that response: says what and where, safe to put on the wire.
    pub fn reason_phrase(&self) -> String {
        format!("Bad Request ({self})")
    }
}

/// The kinds of fault the parser and the validator report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The buffer held nothing but white space.
    #[error("empty message")]
    Empty,
    /// The message is larger than the configured limit.
    #[error("message larger than {limit} bytes")]
    MessageTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// More header lines than the configured limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A header line (with its continuations) longer than the configured limit.
    #[error("header line longer than {limit} bytes")]
    HeaderLineTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// More Via, Route or Record-Route values than the configured limit.
    #[error("more than {limit} {header} values")]
    TooManyValues {
        /// The header that has too many values.
        header: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// The header section is not terminated by an empty line.
    #[error("header section not terminated")]
    Truncated,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    StartLine,
    /// The method is not a token.
    #[error("malformed method")]
    Method,
    /// The Request-URI is not an absolute URI.
    #[error("malformed Request-URI")]
    RequestUri,
    /// The SIP version is not `SIP/2.0`.
    #[error("unsupported SIP version")]
    Version,
    /// The status code is not three digits between 100 and 699.
    #[error("malformed status code")]
    StatusCode,
    /// A header line does not start with a token followed by a colon.
    #[error("malformed header name")]
    HeaderName,
    /// A header line has no colon.
    #[error("header line without colon")]
    MissingColon,
    /// A Content-Length value is not a non-negative decimal number.
    #[error("malformed Content-Length")]
    ContentLength,
    /// Content-Length promises more bytes than the message holds.
    #[error("Content-Length larger than the body")]
    BodyTruncated,
    /// Several Content-Length header fields, which makes the body ambiguous.
    #[error("several Content-Length values")]
    ConflictingContentLength,
    /// A stream message without Content-Length (RFC 3261 §18.3 makes it mandatory).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that may appear once appears several times.
    #[error("several {0} headers")]
    DuplicateHeader(&'static str),
    /// A header value does not follow its grammar.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The Request-URI scheme is not one this element handles (answered with 416).
    #[error("unsupported Request-URI scheme")]
    UnsupportedUriScheme,
}

impl ErrorKind {
    /// The response status a server sends for a request rejected this way.
    pub fn status(&self) -> u16 {
        match self {
            ErrorKind::MessageTooLarge { .. } => 513,
            ErrorKind::Version => 505,
            ErrorKind::UnsupportedUriScheme => 416,
            _ => 400,
        }
    }

    pub(crate) fn at(self, offset: usize) -> ParseError {
        ParseError::new(self, offset)
    }
}

/// Display helper used by the CLI: the kind, offset and a short excerpt of the input there.
pub struct Located<'a>(pub &'a ParseError, pub &'a [u8]);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ParseError { kind, offset } = self.0;
        let start = (*offset).min(self.1.len());
        let end = (start + 24).min(self.1.len());
        let excerpt = self.1.get(start..end).unwrap_or_default();
        write!(
            f,
            "{kind} at byte {offset} (near {:?})",
            String::from_utf8_lossy(excerpt)
        )
    }
}
