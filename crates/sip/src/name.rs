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

/// Buckets of the known-name table, indexed by [`name_hash`]; each holds indices into
/// `KNOWN`, `u8::MAX` for an empty slot. Classifying a name then compares it with at most
/// `SLOTS` candidates instead of every known name (it runs once per header line).
const BUCKETS: usize = 64;
const SLOTS: usize = 4;
static BY_HASH: [[u8; SLOTS]; BUCKETS] = by_hash();

/// Case-insensitive hash of a name from its length and first byte.
#[inline]
const fn name_hash(len: usize, first: u8) -> usize {
    (len.wrapping_mul(7).wrapping_add((first | 0x20) as usize)) % BUCKETS
}

#[allow(clippy::indexing_slicing)] // const evaluation: an overflow is a compile error
const fn by_hash() -> [[u8; SLOTS]; BUCKETS] {
    let known = HeaderName::KNOWN;
    assert!(known.len() < u8::MAX as usize);
    let mut table = [[u8::MAX; SLOTS]; BUCKETS];
    let mut i = 0;
    while i < known.len() {
        let name = known[i].0.as_bytes();
        let bucket = &mut table[name_hash(name.len(), name[0])];
        let mut slot = 0;
        while bucket[slot] != u8::MAX {
            slot += 1; // past SLOTS: raise SLOTS or change name_hash
        }
        bucket[slot] = i as u8;
        i += 1;
    }
    table
}

/// Case-insensitive equality for token characters. Setting bit 0x20 folds ASCII case; among
/// token characters (all `name` can hold, the parser checked) it folds nothing else, so one
/// OR per byte replaces a lower-casing table lookup per byte.
#[inline]
fn same_token_ignoring_case(known: &[u8], name: &[u8]) -> bool {
    known.len() == name.len()
        && known
            .iter()
            .zip(name)
            .all(|(a, b)| (a | 0x20) == (b | 0x20))
}

impl HeaderName {
    /// Classifies a header name as written on the wire (any case, long or compact form).
    pub fn classify(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return name
                .first()
                .map_or(HeaderName::Other, |&c| HeaderName::from_compact(c));
        }
        let Some(&first) = name.first() else {
            return HeaderName::Other;
        };
        let slots = BY_HASH
            .get(name_hash(name.len(), first))
            .map_or(&[] as &[u8], |b| b.as_slice());
        for &i in slots {
            match Self::KNOWN.get(usize::from(i)) {
                Some(&(known, h)) if same_token_ignoring_case(known.as_bytes(), name) => return h,
                Some(_) => {}
                None => break, // an empty slot ends the bucket
            }
        }
        HeaderName::Other
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
