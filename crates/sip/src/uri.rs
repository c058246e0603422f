//! URIs: SIP and SIPS (RFC 3261 §19.1), tel (RFC 3966), and any other absolute URI kept
//! opaque. Parsed views borrow from the text they were parsed from.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::Params;
use crate::scan;

/// Why a URI was refused. Offsets are relative to the URI text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("missing scheme")]
    Scheme,
    /// A character not allowed in the user or password part.
    #[error("bad character in user part at {0}")]
    User(usize),
    /// The host is empty or malformed.
    #[error("malformed host")]
    Host,
    /// The port is not a number up to 65535.
    #[error("malformed port")]
    Port,
    /// A bad URI parameter.
    #[error("malformed URI parameter")]
    Param,
    /// A bad headers component.
    #[error("malformed URI headers")]
    Headers,
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other absolute URI, kept as written.
    Other {
        /// The scheme, as written.
        scheme: &'a str,
        /// Everything after the colon.
        rest: &'a str,
    },
}

impl<'a> Uri<'a> {
    /// Parses a URI (surrounding white space is not allowed).
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        let colon = scan::find_byte(s, b':').ok_or(UriError::Scheme)?;
        let scheme = s.get(..colon).unwrap_or_default();
        let rest = s.get(colon + 1..).unwrap_or_default();
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(UriError::Scheme);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(false, rest, colon + 1).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(true, rest, colon + 1).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_rest(rest).map(Uri::Tel)
        } else if rest.is_empty() || rest.bytes().any(|c| c <= b' ' || c >= 0x7f) {
            Err(UriError::Scheme)
        } else {
            Ok(Uri::Other { scheme, rest })
        }
    }

    /// The SIP/SIPS form, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme in lower case.
    pub fn scheme(&self) -> Cow<'a, str> {
        match self {
            Uri::Sip(u) if u.secure => Cow::Borrowed("sips"),
            Uri::Sip(_) => Cow::Borrowed("sip"),
            Uri::Tel(_) => Cow::Borrowed("tel"),
            Uri::Other { scheme, .. } => Cow::Owned(scheme.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                if !t.params.as_str().is_empty() {
                    write!(f, ";{}", t.params.as_str())?;
                }
                Ok(())
            }
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as written (compare case-insensitively).
    Domain(&'a str),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference (`[…]` in the text).
    V6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses a host: IPv6 reference, IPv4 address or host name.
    pub fn parse(s: &'a str) -> Result<Host<'a>, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::Host)?;
            return inner.parse().map(Host::V6).map_err(|_| UriError::Host);
        }
        // An IPv4 address (the common case in a proxy's own traffic) is read in one pass,
        // which checks every byte itself.
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            if let Some(ip) = scan::parse_ipv4(s) {
                return Ok(Host::V4(ip));
            }
        }
        // One pass: every byte must be a host character; which kinds were seen decides
        // whether an IPv4 address is worth trying.
        let mut seen = 0u8;
        for c in s.bytes() {
            let class = host_class(c);
            if class == 0 {
                return Err(UriError::Host);
            }
            seen |= class;
        }
        if seen == 0 {
            return Err(UriError::Host); // empty
        }
        if seen & !(HOST_DIGIT | HOST_DOT) == 0 && seen & HOST_DOT != 0 {
            if let Some(ip) = scan::parse_ipv4(s) {
                return Ok(Host::V4(ip));
            }
        }
        // hostname = *( domainlabel "." ) toplabel [ "." ]; "_" tolerated as many stacks do.
        if s.starts_with('.') || s.starts_with('-') {
            Err(UriError::Host)
        } else {
            Ok(Host::Domain(s))
        }
    }
}

pub(crate) const HOST_DIGIT: u8 = 1;
pub(crate) const HOST_DOT: u8 = 2;
const HOST_OTHER: u8 = 4;

/// The kind of a host-name byte: digit, dot, other allowed (letter, `-`, `_`), or 0.
static HOST_CLASS: [u8; 256] = host_classes();

#[allow(clippy::indexing_slicing)] // const evaluation: u8 indices into 256 entries
const fn host_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() {
            HOST_DIGIT
        } else if c == b'.' {
            HOST_DOT
        } else if c.is_ascii_alphabetic() || c == b'-' || c == b'_' {
            HOST_OTHER
        } else {
            0
        };
        i += 1;
    }
    t
}

#[inline]
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
pub(crate) fn host_class(c: u8) -> u8 {
    HOST_CLASS[usize::from(c)]
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(ip) => {
                let mut s = String::with_capacity(15);
                scan::push_ipv4(&mut s, *ip);
                f.write_str(&s)
            }
            Host::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// Parses `host [":" port]`.
pub(crate) fn parse_hostport(s: &str) -> Result<(Host<'_>, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        match scan::find_byte(s, b']') {
            Some(i) => (
                s.get(..=i).unwrap_or_default(),
                s.get(i + 1..).unwrap_or_default(),
            ),
            None => return Err(UriError::Host),
        }
    } else {
        match scan::find_byte(s, b':') {
            Some(i) => (
                s.get(..i).unwrap_or_default(),
                s.get(i..).unwrap_or_default(),
            ),
            None => (s, ""),
        }
    };
    let port = match port.strip_prefix(':') {
        Some(p) => Some(
            scan::parse_decimal(p, u64::from(u16::MAX))
                .and_then(|v| u16::try_from(v).ok())
                .ok_or(UriError::Port)?,
        ),
        None if port.is_empty() => None,
        None => return Err(UriError::Host),
    };
    Ok((Host::parse(host)?, port))
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escapes kept (see [`SipUri::user_decoded`]).
    pub user: Option<&'a str>,
    /// The password, escapes kept.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// The headers component after `?`, as written.
    pub headers: Option<&'a str>,
}

#[cfg(test)]
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Characters allowed in each part of a SIP URI (RFC 3261 §25.1), one table load per byte:
/// URIs are read several times per message.
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const PARAM: u8 = 4;
const HEADER: u8 = 8;

static URI_CHARS: [u8; 256] = uri_chars();

#[allow(clippy::indexing_slicing)] // const evaluation: u8 indices into 256 entries
const fn uri_chars() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            t[c] = USER | PASSWORD | PARAM | HEADER;
        }
        if matches!(b, b'%' | b'&' | b'=' | b'+' | b'$') {
            t[c] |= USER | PASSWORD;
        }
        if matches!(b, b',') {
            t[c] |= USER | PASSWORD;
        }
        if matches!(b, b';' | b'?' | b'/') {
            t[c] |= USER;
        }
        if matches!(
            b,
            b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=' | b';'
        ) {
            t[c] |= PARAM;
        }
        if matches!(
            b,
            b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        ) {
            t[c] |= HEADER;
        }
        c += 1;
    }
    t
}

/// The first byte of `s` not allowed in `part`, and whether a `%` escape was seen.
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
fn first_not(s: &str, part: u8) -> (Option<usize>, bool) {
    let mut escaped = false;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if URI_CHARS[usize::from(c)] & part == 0 {
            return (Some(i), escaped);
        }
        escaped |= c == b'%';
    }
    (None, escaped)
}

/// Whether every byte of `s` is allowed in `part` and every escape is well formed.
fn all_in(s: &str, part: u8) -> bool {
    match first_not(s, part) {
        (Some(_), _) => false,
        (None, escaped) => !escaped || scan::escapes_valid(s),
    }
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &'a str) -> Result<SipUri<'a>, UriError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(UriError::Scheme),
        }
    }

    fn parse_rest(secure: bool, s: &'a str, base: usize) -> Result<SipUri<'a>, UriError> {
        // The user part may hold ';', '?' and '/' (RFC 3261 §25.1 user-unreserved), but never
        // '@', so the first '@' ends the userinfo (RFC 4475 §3.1.1.2, §3.1.1.9).
        let (userinfo, rest) = match scan::find_byte(s, b'@') {
            Some(i) => (
                Some(s.get(..i).unwrap_or_default()),
                s.get(i + 1..).unwrap_or_default(),
            ),
            None => (None, s),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = match scan::find_byte(ui, b':') {
                    Some(i) => (ui.get(..i).unwrap_or_default(), ui.get(i + 1..)),
                    None => (ui, None),
                };
                let (bad_user, escaped) = first_not(u, USER);
                if u.is_empty() || bad_user.is_some() || (escaped && !scan::escapes_valid(u)) {
                    return Err(UriError::User(base + bad_user.unwrap_or(0)));
                }
                if let Some(p) = p {
                    let (bad, escaped) = first_not(p, PASSWORD);
                    if bad.is_some() || (escaped && !scan::escapes_valid(p)) {
                        return Err(UriError::User(base + u.len() + 1 + bad.unwrap_or(0)));
                    }
                }
                (Some(u), p)
            }
            None => (None, None),
        };
        let (before_headers, headers) = match scan::find_byte(rest, b'?') {
            Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
            None => (rest, None),
        };
        let (hostport, params) = match scan::find_byte(before_headers, b';') {
            Some(i) => (
                before_headers.get(..i).unwrap_or_default(),
                before_headers.get(i + 1..).unwrap_or_default(),
            ),
            None => (before_headers, ""),
        };
        let (host, port) = parse_hostport(hostport)?;
        // URI parameter characters are plain bytes, `;` and `=`: the one-pass check of a
        // plain list decides.
        if !all_in(params, PARAM) || !crate::params::plain_well_formed(params) {
            return Err(UriError::Param);
        }
        let params = Params::new(params);
        if let Some(h) = headers {
            let ok = !h.is_empty() && all_in(h, HEADER);
            if !ok {
                return Err(UriError::Headers);
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with `%` escapes decoded (may hold any byte, even NUL).
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(scan::percent_decode)
    }

    /// The `transport` parameter in lower case, when present.
    pub fn transport(&self) -> Option<String> {
        self.transport_param().map(str::to_ascii_lowercase)
    }

    /// The `transport` parameter as written (compare it case-insensitively): for readers
    /// that match it on every message and need no lower-case copy.
    pub fn transport_param(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// Whether the `lr` parameter is present (loose router, RFC 3261 §16.4).
    pub fn lr(&self) -> bool {
        self.params.get("lr").is_some()
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// Whether the URI equals `other` by the rules of RFC 3261 §19.1.4 (escapes decoded,
    /// host and parameter names case-insensitive, user case-sensitive, and `user`, `ttl`,
    /// `method`, `maddr`, `transport` significant when present in either).
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure
            || self.user_decoded() != other.user_decoded()
            || self.password.map(scan::percent_decode) != other.password.map(scan::percent_decode)
            || self.port != other.port
        {
            return false;
        }
        let hosts_eq = match (self.host, other.host) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        if !hosts_eq {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            let a = self
                .params
                .get(name)
                .map(|v| v.map(|s| s.to_ascii_lowercase()));
            let b = other
                .params
                .get(name)
                .map(|v| v.map(|s| s.to_ascii_lowercase()));
            if a != b {
                return false;
            }
        }
        // Other parameters appearing in both must match. A repeated name is looked up the way
        // `Params::get` does (first occurrence) on both sides, so a URI that repeats a parameter
        // with different values is still equivalent to itself.
        for (name, _) in self.params.iter() {
            let mine = self.params.get(name).flatten();
            if let Some(theirs) = other.params.get(name) {
                let a = mine.map(|v| scan::percent_decode(v).to_ascii_lowercase());
                let b = theirs.map(|v| scan::percent_decode(v).to_ascii_lowercase());
                if a != b {
                    return false;
                }
            }
        }
        self.headers == other.headers
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = self.user {
            f.write_str(u)?;
            if let Some(p) = self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        self.host.fmt(f)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.params.as_str().is_empty() {
            write!(f, ";{}", self.params.as_str())?;
        }
        if let Some(h) = self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// A `tel:` URI (RFC 3966), kept close to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number, global (`+…`) or local, visual separators kept.
    pub number: &'a str,
    /// Parameters after the number.
    pub params: Params<'a>,
}

impl<'a> TelUri<'a> {
    fn parse_rest(s: &'a str) -> Result<TelUri<'a>, UriError> {
        let (number, params) = match s.find(';') {
            Some(i) => (
                s.get(..i).unwrap_or_default(),
                s.get(i + 1..).unwrap_or_default(),
            ),
            None => (s, ""),
        };
        let ok = !number.is_empty()
            && number.bytes().all(|c| {
                c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
            });
        if !ok {
            return Err(UriError::User(0));
        }
        let params = Params::new(params);
        params.validate().map_err(|_| UriError::Param)?;
        Ok(TelUri { number, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 hosts are read before the host-character pass; what is not an IPv4 address
    /// is read as before.
    #[test]
    fn hosts_read_as_ipv4_or_names() {
        let v4 = |s: &str| Host::V4(s.parse().unwrap());
        let cases: &[(&str, Option<Host<'_>>)] = &[
            ("127.0.0.1", Some(v4("127.0.0.1"))),
            ("0.0.0.0", Some(v4("0.0.0.0"))),
            ("1.2.3", Some(Host::Domain("1.2.3"))),
            ("01.2.3.4", Some(Host::Domain("01.2.3.4"))),
            ("256.1.1.1", Some(Host::Domain("256.1.1.1"))),
            ("1.2.3.4.", Some(Host::Domain("1.2.3.4."))),
            ("1and1.com", Some(Host::Domain("1and1.com"))),
            ("1.2.3.4x", Some(Host::Domain("1.2.3.4x"))),
            ("1.2.3.4:5", None),
            ("1.2.3.4 ", None),
            ("-a.com", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(Host::parse(s).ok(), *want, "{s:?}");
        }
    }

    /// The character table says what the per-part rules it replaced said, for every byte.
    #[test]
    fn uri_char_table_matches_the_rules() {
        for c in 0..=255u8 {
            let t = URI_CHARS[usize::from(c)];
            let u = is_unreserved(c);
            let user = u
                || matches!(
                    c,
                    b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
                );
            let password = u || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',');
            let param = u
                || matches!(
                    c,
                    b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=' | b';'
                );
            let header = u
                || matches!(
                    c,
                    b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
                );
            assert_eq!(t & USER != 0, user, "{c}");
            assert_eq!(t & PASSWORD != 0, password, "{c}");
            assert_eq!(t & PARAM != 0, param, "{c}");
            assert_eq!(t & HEADER != 0, header, "{c}");
        }
    }

    /// The two-pass host check the one-pass table replaced, kept as its oracle.
    fn host_reference(s: &str) -> Result<Host<'_>, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::Host)?;
            return inner.parse().map(Host::V6).map_err(|_| UriError::Host);
        }
        if s.is_empty() {
            return Err(UriError::Host);
        }
        if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') && s.bytes().any(|c| c == b'.') {
            if let Ok(ip) = s.parse() {
                return Ok(Host::V4(ip));
            }
        }
        let ok = s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            && !s.starts_with('.')
            && !s.starts_with('-');
        if ok {
            Ok(Host::Domain(s))
        } else {
            Err(UriError::Host)
        }
    }

    proptest::proptest! {
        #[test]
        fn host_matches_reference(s in "[0-9.a-zA-Z_:\\[\\]-]{0,20}|[0-9]{1,3}(\\.[0-9]{1,4}){0,4}") {
            proptest::prop_assert_eq!(Host::parse(&s), host_reference(&s));
        }
    }

    #[test]
    fn parses_full_sip_uri() {
        let u = SipUri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x")
            .unwrap();
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=x"));
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x"
        );
    }

    #[test]
    fn torture_user_parts() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Domain("example.com"));
        let u = SipUri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        let u = SipUri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.user_decoded().unwrap().as_ref(), b"null-\0-null");
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "sip:",
            "sip:@h",
            "sip:a b@h",
            "sip:h:99999",
            "sip:h:x",
            "sip:a@",
            "sip:[::1",
            "sip:h;;",
            "sip:%zz@h",
            "1sip:h",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn equivalence_follows_19_1_4() {
        let a = SipUri::parse("sip:%61lice@atlanta.com;transport=TCP").unwrap();
        let b = SipUri::parse("sip:alice@AtLanTa.CoM;Transport=tcp").unwrap();
        assert!(a.equivalent(&b));
        let c = SipUri::parse("sip:ALICE@atlanta.com;transport=tcp").unwrap();
        assert!(!a.equivalent(&c));
        let d = SipUri::parse("sip:alice@atlanta.com").unwrap();
        assert!(!a.equivalent(&d));
    }

    #[test]
    fn repeated_parameter_is_equivalent_to_itself() {
        // Found by fuzzing: `;p=a;p=b` compared the second value with the other's first.
        let u = SipUri::parse("sip:h.example.com;lr;p=a:b;lr;p=c;q").unwrap();
        assert!(u.equivalent(&u));
        let v = SipUri::parse("sip:h.example.com;p=a:b").unwrap();
        assert!(u.equivalent(&v) && v.equivalent(&u));
        let w = SipUri::parse("sip:h.example.com;p=c").unwrap();
        assert!(!u.equivalent(&w) && !w.equivalent(&u));
    }

    #[test]
    fn tel_and_other_schemes() {
        assert!(matches!(
            Uri::parse("tel:+1-201-555-0123;ext=1"),
            Ok(Uri::Tel(_))
        ));
        assert!(matches!(
            Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent"),
            Ok(Uri::Other { .. })
        ));
    }
}
