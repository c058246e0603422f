//! Header names: known ones as an enum, compact forms by table (RFC 3261 §7.3.3 and the
//! IANA registry), everything else kept as written and compared case-insensitively.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canonical:literal $(, $compact:literal)? ;)*) => {
        /// A header name. Names are case-insensitive; compact forms map to their long form.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no variant for; its name is kept in the message.
            Other,
        }

        impl HeaderName {
            /// The canonical (long) spelling, or `None` for [`HeaderName::Other`].
            pub fn canonical(self) -> Option<&'static str> {
                match self {
                    $( HeaderName::$variant => Some($canonical), )*
                    HeaderName::Other => None,
                }
            }

            /// The compact form (RFC 3261 §7.3.3), where the header has one.
            pub fn compact(self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            fn from_compact(c: u8) -> HeaderName {
                match c.to_ascii_lowercase() {
                    $( $( c if char::from(c) == $compact => HeaderName::$variant, )? )*
                    _ => HeaderName::Other,
                }
            }

            const KNOWN: &'static [(&'static str, HeaderName)] = &[
                $( ($canonical, HeaderName::$variant), )*
            ];
        }
    };
}

header_names! {
    /// Via.
    Via => "Via", 'v';
    /// From.
    From => "From", 'f';
    /// To.
    To => "To", 't';
    /// Call-ID.
    CallId => "Call-ID", 'i';
    /// CSeq.
    CSeq => "CSeq";
    /// Contact.
    Contact => "Contact", 'm';
    /// Max-Forwards.
    MaxForwards => "Max-Forwards";
    /// Content-Length.
    ContentLength => "Content-Length", 'l';
    /// Content-Type.
    ContentType => "Content-Type", 'c';
    /// Content-Encoding.
    ContentEncoding => "Content-Encoding", 'e';
    /// Route.
    Route => "Route";
    /// Record-Route.
    RecordRoute => "Record-Route";
    /// Expires.
    Expires => "Expires";
    /// Min-Expires.
    MinExpires => "Min-Expires";
    /// Allow.
    Allow => "Allow";
    /// Supported.
    Supported => "Supported", 'k';
    /// Require.
    Require => "Require";
    /// Proxy-Require.
    ProxyRequire => "Proxy-Require";
    /// Unsupported.
    Unsupported => "Unsupported";
    /// Reason (RFC 3326).
    Reason => "Reason";
    /// Retry-After.
    RetryAfter => "Retry-After";
    /// WWW-Authenticate.
    WwwAuthenticate => "WWW-Authenticate";
    /// Proxy-Authenticate.
    ProxyAuthenticate => "Proxy-Authenticate";
    /// Authorization.
    Authorization => "Authorization";
    /// Proxy-Authorization.
    ProxyAuthorization => "Proxy-Authorization";
    /// Subject.
    Subject => "Subject", 's';
    /// Event (RFC 6665).
    Event => "Event", 'o';
    /// Allow-Events (RFC 6665).
    AllowEvents => "Allow-Events", 'u';
    /// Refer-To (RFC 3515).
    ReferTo => "Refer-To", 'r';
    /// Referred-By (RFC 3892).
    ReferredBy => "Referred-By", 'b';
    /// Session-Expires (RFC 4028).
    SessionExpires => "Session-Expires", 'x';
    /// Identity (RFC 8224).
    Identity => "Identity", 'y';
    /// Accept-Contact (RFC 3841).
    AcceptContact => "Accept-Contact", 'a';
    /// Reject-Contact (RFC 3841).
    RejectContact => "Reject-Contact", 'j';
    /// Request-Disposition (RFC 3841).
    RequestDisposition => "Request-Disposition", 'd';
    /// Accept.
    Accept => "Accept";
    /// User-Agent.
    UserAgent => "User-Agent";
    /// Server.
    Server => "Server";
    /// Warning.
    Warning => "Warning";
    /// Date.
    Date => "Date";
    /// Timestamp.
    Timestamp => "Timestamp";
}

/// The known names by hash: each slot holds a name's length, its bytes as lower-cased
/// 64-bit words (zero past the end) and where its letters are. The hash is perfect for
/// today's names (a collision is a compile error), so classifying a name, once per header
/// line, is one hash and one compare of up to three words.
const BUCKETS: usize = 128;
/// The longest known name ("Request-Disposition") fits three words.
const WORDS: usize = 3;

#[derive(Clone, Copy)]
struct Slot {
    /// 0 for an empty slot.
    len: usize,
    name: HeaderName,
    words: [u64; WORDS],
    /// Bit 0x20 at the letters: OR-ing it into the wire bytes folds the case of letters and
    /// nothing else, so a match is exact for every other byte.
    case: [u64; WORDS],
}

static TABLE: [Slot; BUCKETS] = table();

/// Setting bit 0x20 of every byte folds ASCII case (and some other bytes onto each other,
/// which only makes the hash coarser: the compare uses `Slot::case`).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The bytes of a word that belong to a name `len - 8 * word` bytes long from there.
#[inline]
const fn word_mask(remaining: usize) -> u64 {
    if remaining >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * remaining)) - 1
    }
}

/// The multiplier was picked so that no two known names share a bucket.
#[inline]
const fn name_hash(len: usize, w0: u64) -> usize {
    ((w0 ^ len as u64).wrapping_mul(0x9309_0287_A6EA_2981) >> 57) as usize % BUCKETS
}

#[allow(clippy::indexing_slicing)] // const evaluation: an overflow is a compile error
const fn table() -> [Slot; BUCKETS] {
    let empty = Slot {
        len: 0,
        name: HeaderName::Other,
        words: [0; WORDS],
        case: [0; WORDS],
    };
    let mut table = [empty; BUCKETS];
    let known = HeaderName::KNOWN;
    let mut i = 0;
    while i < known.len() {
        let (text, name) = known[i];
        let bytes = text.as_bytes();
        assert!(bytes.len() >= 2 && bytes.len() <= 8 * WORDS);
        let mut slot = Slot {
            len: bytes.len(),
            name,
            ..empty
        };
        let mut j = 0;
        while j < bytes.len() {
            let shift = 8 * (j % 8);
            slot.words[j / 8] |= ((bytes[j] | 0x20) as u64) << shift;
            if bytes[j].is_ascii_alphabetic() {
                slot.case[j / 8] |= 0x20 << shift;
            }
            j += 1;
        }
        let bucket = name_hash(slot.len, slot.words[0]);
        // Two names in one bucket: pick another multiplier for `name_hash`.
        assert!(table[bucket].len == 0);
        table[bucket] = slot;
        i += 1;
    }
    table
}

/// The known name whose words (bytes past `len` zero) these are, if any.
#[inline]
fn lookup(len: usize, words: [u64; WORDS]) -> Option<HeaderName> {
    let slot = TABLE.get(name_hash(len, words[0] | FOLD & word_mask(len)))?;
    let hit = slot.len == len
        && words[0] | slot.case[0] == slot.words[0]
        && words[1] | slot.case[1] == slot.words[1]
        && words[2] | slot.case[2] == slot.words[2];
    hit.then_some(slot.name)
}

/// Eight bytes of `b` from `at` as a little-endian word, zero past the end of `b`.
#[inline]
fn load_word(b: &[u8], at: usize) -> u64 {
    match b.get(at..).and_then(|r| r.first_chunk::<8>()) {
        Some(w) => u64::from_le_bytes(*w),
        None => {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(b.get(at..).unwrap_or_default()) {
                *d = *s;
            }
            u64::from_le_bytes(w)
        }
    }
}

impl HeaderName {
    /// Classifies a header name as written on the wire (any case, long or compact form).
    pub fn classify(name: &[u8]) -> HeaderName {
        HeaderName::classify_prefix(name, name.len())
    }

    /// Classifies the name made of the first `len` bytes of `b`. The parser passes the rest
    /// of the message: the bytes after the name are read (and masked off) so that a short
    /// name costs one word load. A known name is matched exactly (letters in any case), so
    /// a match also proves the name is a token.
    #[inline]
    pub(crate) fn classify_prefix(b: &[u8], len: usize) -> HeaderName {
        if len <= 1 {
            return match b.first() {
                Some(&c) if len == 1 => HeaderName::from_compact(c),
                _ => HeaderName::Other,
            };
        }
        if len > 8 * WORDS {
            return HeaderName::Other;
        }
        let word = |k: usize| load_word(b, 8 * k) & word_mask(len.saturating_sub(8 * k));
        let words = [word(0), word(1), word(2)];
        lookup(len, words).unwrap_or(HeaderName::Other)
    }

    /// A known header name at the start of `line`, directly followed by its colon: the
    /// parser's fast path. `None` sends the line down the general path.
    ///
    /// The colon is found a word at a time; the name's words (bytes past it masked off) are
    /// then hashed and compared with the one candidate in their bucket.
    #[inline]
    pub(crate) fn known_before_colon(line: &[u8]) -> Option<(HeaderName, usize)> {
        let word = |k: usize| {
            line.get(8 * k..)
                .and_then(|r| r.first_chunk::<8>())
                .map(|w| u64::from_le_bytes(*w))
        };
        let colon = |w: u64| crate::scan::first_in_word(w, b':');
        let w0 = word(0)?;
        let (len, words) = match colon(w0) {
            Some(i) => (i, [w0 & word_mask(i), 0, 0]),
            None => {
                let w1 = word(1)?;
                match colon(w1) {
                    Some(i) => (8 + i, [w0, w1 & word_mask(i), 0]),
                    None => {
                        let w2 = word(2)?;
                        let i = colon(w2)?;
                        (16 + i, [w0, w1, w2 & word_mask(i)])
                    }
                }
            }
        };
        if len <= 1 {
            return match line.first() {
                Some(&c) if len == 1 => match HeaderName::from_compact(c) {
                    HeaderName::Other => None,
                    name => Some((name, 1)),
                },
                _ => None,
            };
        }
        lookup(len, words).map(|name| (name, len))
    }

    /// Headers whose values are comma-separated lists (RFC 3261 §7.3.1) and may be split.
    ///
    /// Authentication headers are not listed: their commas separate parameters.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Allow
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::AllowEvents
                | HeaderName::Accept
                | HeaderName::ContentEncoding
                | HeaderName::Reason
                | HeaderName::Warning
                | HeaderName::AcceptContact
                | HeaderName::RejectContact
                | HeaderName::RequestDisposition
        )
    }

    /// Headers the parser tallies as it goes: Content-Length, and the Via and Route depths.
    #[inline]
    pub(crate) fn counted(self) -> bool {
        matches!(
            self,
            HeaderName::ContentLength
                | HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
        )
    }

    /// Headers that may appear at most once (RFC 3261 §7.3.1 and §20).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical().unwrap_or("(extension header)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_long_compact_and_case() {
        assert_eq!(
            HeaderName::classify(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::classify(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::classify(b"L"), HeaderName::ContentLength);
        assert_eq!(HeaderName::classify(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::classify(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"q"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b""), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"X-Custom"), HeaderName::Other);
    }

    /// The byte-by-byte comparison the word-based classifier replaced, kept as its oracle.
    fn classify_reference(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return HeaderName::from_compact(name[0]);
        }
        HeaderName::KNOWN
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
            .map_or(HeaderName::Other, |&(_, h)| h)
    }

    proptest::proptest! {
        /// Any token name, alone or followed by the rest of a line, classifies as the
        /// reference does; known names are mixed in with random case and one-byte changes.
        #[test]
        fn classify_matches_reference(
            pick in 0usize..HeaderName::KNOWN.len(),
            case in proptest::collection::vec(proptest::bool::ANY, 24),
            mutate in proptest::option::of((0usize..24, "[-a-zA-Z0-9.!%*_+`'~\\r\\n :@\\[\\x7f]")),
            random in "[-a-zA-Z0-9.!%*_+`'~]{0,26}",
            tail in "[: a-z\\r\\n]{0,12}",
            use_known in proptest::bool::ANY,
        ) {
            let mut name: Vec<u8> = if use_known {
                HeaderName::KNOWN[pick].0.bytes().zip(&case).map(|(c, &up)| {
                    if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                }).collect()
            } else {
                random.into_bytes()
            };
            if let Some((at, c)) = mutate {
                if at < name.len() {
                    name[at] = c.as_bytes()[0];
                }
            }
            let expected = classify_reference(&name);
            proptest::prop_assert_eq!(HeaderName::classify(&name), expected);
            let mut line = name.clone();
            line.extend_from_slice(tail.as_bytes());
            proptest::prop_assert_eq!(HeaderName::classify_prefix(&line, name.len()), expected);
            // The fast path: a known name directly followed by a colon, found as such.
            let mut line = name.clone();
            line.extend_from_slice(b": value\r\n");
            let fast = HeaderName::known_before_colon(&line);
            if expected != HeaderName::Other && !name.contains(&b':') && name.len() <= 23 {
                proptest::prop_assert_eq!(fast, Some((expected, name.len())));
            } else if let Some((h, len)) = fast {
                proptest::prop_assert_eq!(classify_reference(&line[..len]), h);
            }
        }
    }

    #[test]
    fn every_known_name_classifies_in_any_case() {
        for &(name, h) in HeaderName::KNOWN {
            assert_eq!(HeaderName::classify(name.as_bytes()), h, "{name}");
            assert_eq!(
                HeaderName::classify(name.to_ascii_lowercase().as_bytes()),
                h,
                "{name}"
            );
            assert_eq!(
                HeaderName::classify(name.to_ascii_uppercase().as_bytes()),
                h,
                "{name}"
            );
            assert_eq!(h.canonical(), Some(name));
        }
    }
}
