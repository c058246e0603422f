//! Byte-level grammar helpers shared by every parser in this crate (RFC 3261 §25.1).
//!
//! Everything here works on `&[u8]` / `&str` with `get()` so no input can cause an
//! out-of-bounds panic.

// A u8 index into a 256-entry table cannot be out of bounds.
#[allow(clippy::indexing_slicing)]
/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// Whether `c` may appear in a `token`.
#[inline]
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
pub fn is_token_char(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Whether `s` is a non-empty `token`.
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token_char(c))
}

/// Whether `c` is SP or HTAB.
#[inline]
pub fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Whether `c` is linear white space once folding is taken into account (SP, HTAB, CR, LF).
#[inline]
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims LWS (including folded line breaks) on both sides.
#[inline]
pub fn trim_lws(s: &str) -> &str {
    // Byte-wise: LWS is ASCII, so both cut points fall on char boundaries.
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// [`trim_lws`] on bytes.
#[inline]
pub fn trim_lws_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// Index of the first `b` in `s`. `b` must be ASCII, so the index is a char boundary.
///
/// Cheaper than `str::find(char)` on the short strings of header values.
#[inline]
pub fn find_byte(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    let bytes = s.as_bytes();
    if bytes.len() < 128 {
        // On header-sized strings memchr's call and set-up cost more than a word-at-a-time
        // scan.
        find_byte_from(bytes, 0, b)
    } else {
        memchr::memchr(b, bytes)
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index (0–7) of the first byte of the little-endian word `w` equal to `c`.
///
/// The zero-byte test `(x - LO) & !x & HI` can flag a byte above a real match (a borrow
/// runs upward), never one below it, so its lowest flag is exact.
#[inline]
pub fn first_in_word(w: u64, c: u8) -> Option<usize> {
    let x = w ^ (LO * u64::from(c));
    let hit = x.wrapping_sub(LO) & !x & HI;
    (hit != 0).then(|| (hit.trailing_zeros() / 8) as usize)
}

/// Index of the first `c` in `b` at or after `from`, eight bytes at a time.
#[inline]
pub fn find_byte_from(b: &[u8], from: usize, c: u8) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for w in words.by_ref() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        if let Some(i) = first_in_word(w, c) {
            return Some(at + i);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&x| x == c)
        .map(|i| at + i)
}

/// Index of the first of the bytes `cs` in `b` at or after `from`, eight bytes at a time.
///
/// The flags of several bytes are or-ed: a false flag lies above a real match of its own
/// byte, which is flagged too, so the lowest flag is still exact.
#[inline]
pub fn find_any_from(b: &[u8], from: usize, cs: [u8; 3]) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for w in words.by_ref() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let hit = cs.iter().fold(0, |acc, &c| {
            let x = w ^ (LO * u64::from(c));
            acc | (x.wrapping_sub(LO) & !x & HI)
        });
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|x| cs.contains(x))
        .map(|i| at + i)
}

/// Splits `s` at every `sep` that is outside a quoted string and outside `<…>`.
///
/// Used for comma-separated header values (RFC 3261 §7.3.1) and `;` parameter lists. Empty
/// elements are returned as they are so callers can reject them where the grammar forbids them.
pub fn split_top_level(s: &str, sep: u8) -> SplitTopLevel<'_> {
    SplitTopLevel { rest: Some(s), sep }
}

/// Iterator returned by [`split_top_level`].
#[derive(Debug, Clone)]
pub struct SplitTopLevel<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitTopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find_top_level(s.as_bytes(), self.sep) {
            Some(i) => {
                self.rest = s.get(i + 1..);
                s.get(..i)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Index of the first `sep` outside quotes and angle brackets.
///
/// Jumps between the bytes that can change the state with `memchr` instead of stepping
/// through every byte: the hot path of list splitting, parameter lookup and value counting.
pub fn find_top_level(b: &[u8], sep: u8) -> Option<usize> {
    // Most values hold no separator at all (one Contact, one Route entry): one scan says
    // so without stepping through their quotes and brackets.
    memchr::memchr(sep, b)?;
    let mut i = 0;
    let mut in_angle = false;
    loop {
        let rest = b.get(i..)?;
        let at = i + if in_angle {
            // Inside `<…>` only a quote or the closing bracket matters.
            memchr::memchr2(b'"', b'>', rest)?
        } else {
            memchr::memchr3(sep, b'"', b'<', rest)?
        };
        match b.get(at)? {
            b'"' => i = after_quoted(b, at + 1)?,
            b'<' => {
                in_angle = true;
                i = at + 1;
            }
            b'>' => {
                in_angle = false;
                i = at + 1;
            }
            _ => return Some(at),
        }
    }
}

/// Index just past the closing quote of a quoted string whose content starts at `from`;
/// `None` when it is not terminated. A backslash escapes the byte after it.
pub(crate) fn after_quoted(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let at = i + memchr::memchr2(b'\\', b'"', b.get(i..)?)?;
        if b.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        i = at + 2;
    }
}

/// Parses a quoted string starting at `s[0] == '"'`.
///
/// Returns the raw content between the quotes (escapes kept) and the remainder after the
/// closing quote, or `None` when the quote is not terminated.
pub fn quoted_string(s: &str) -> Option<(&str, &str)> {
    let close = closing_quote(s.as_bytes())?;
    Some((s.get(1..close)?, s.get(close + 1..)?))
}

/// The index of the quote closing the quoted string that `b` starts with (`b[0] == '"'`),
/// or `None` when `b` does not start one or it is not terminated.
pub fn closing_quote(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    for (i, &c) in b.iter().enumerate().skip(1) {
        if escaped {
            // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): CR and LF may not be escaped.
            if c == b'\r' || c == b'\n' {
                return None;
            }
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            return Some(i);
        }
    }
    None
}

/// Removes quoted-pair escapes from the content of a quoted string.
pub fn unescape_quoted(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Parses an unsigned decimal number that must fit in `max`.
///
/// Leading zeros are allowed (`0068`, RFC 4475 §3.1.1.1). Returns `None` for an empty string,
/// a non-digit, or a value over `max` (the overlarge scalars of RFC 4475 §3.1.2.4).
pub fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    parse_decimal_bytes(s.as_bytes(), max)
}

/// [`parse_decimal`] on bytes: a non-digit byte (UTF-8 or not) makes it `None`.
pub fn parse_decimal_bytes(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// A dotted-quad IPv4 address, read as `Ipv4Addr::from_str` reads it (four decimal
/// octets of at most 255, no leading zeros) in one pass: hosts in Via and URIs are parsed
/// several times per message, and the general parser costs ten times as much.
pub fn parse_ipv4(s: &str) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0usize; // octets finished
    let mut value = 0u16;
    let mut digits = 0u8;
    let mut leading_zero = false;
    for &c in s.as_bytes() {
        if c == b'.' {
            if digits == 0 {
                return None;
            }
            *octets.get_mut(n)? = u8::try_from(value).ok()?;
            n += 1;
            (value, digits, leading_zero) = (0, 0, false);
        } else if c.is_ascii_digit() {
            if leading_zero || digits == 3 {
                return None;
            }
            leading_zero = digits == 0 && c == b'0';
            value = value * 10 + u16::from(c - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

/// Appends an IPv4 address in dotted-quad form: what `Ipv4Addr`'s `Display` writes, for a
/// tenth of its cost (it is written for every hop and address the proxy puts in a message
/// or a key).
pub fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_u64(out, u64::from(o));
    }
}

/// Appends a decimal number (no `fmt` machinery).
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.4 compares URIs on decoded values).
///
/// A `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(s: &str) -> std::borrow::Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&x| hex_val(x)),
                b.get(i + 2).and_then(|&x| hex_val(x)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `s` is a valid `%`-escaped string: every `%` is followed by two hex digits.
pub fn escapes_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let ok = b.get(i + 1).is_some_and(|&x| hex_val(x).is_some())
                && b.get(i + 2).is_some_and(|&x| hex_val(x).is_some());
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv4_reads_as_the_standard_parser_does() {
        let cases = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "",
            ".",
            "1.2.3.4.",
            "1.2.3.04",
            "1.2.3.0",
            "1000.1.1.1",
            "a.b.c.d",
            "1.2.3.-4",
            "192.168.100.200",
            "00.0.0.0",
        ];
        for c in cases {
            assert_eq!(super::parse_ipv4(c), c.parse().ok(), "{c:?}");
        }
        // Every address of a /8's worth of octet spellings, with and without zeros.
        for a in 0..300u32 {
            for spelled in [format!("{a}.{a}.0.{a}"), format!("0{a}.1.1.1")] {
                assert_eq!(
                    super::parse_ipv4(&spelled),
                    spelled.parse().ok(),
                    "{spelled:?}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn numbers_and_ipv4_written_as_display_writes_them() {
        for n in [0u64, 1, 9, 10, 99, 100, 255, 65535, 4_294_967_295, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for ip in [
                std::net::Ipv4Addr::new(a, 0, 255, a),
                std::net::Ipv4Addr::new(127, a, a, 1),
            ] {
                let mut s = String::new();
                push_ipv4(&mut s, ip);
                assert_eq!(s, ip.to_string());
            }
        }
    }

    #[test]
    fn splits_outside_quotes_and_angles() {
        let v: Vec<_> = split_top_level(r#""a,b" <sip:x@y;p=1,2>;q=1 , <sip:z>"#, b',').collect();
        assert_eq!(v, vec![r#""a,b" <sip:x@y;p=1,2>;q=1 "#, " <sip:z>"]);
    }

    /// The byte-at-a-time state machine `find_top_level` replaced, kept as its oracle.
    fn find_top_level_reference(b: &[u8], sep: u8) -> Option<usize> {
        let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
        for (i, &c) in b.iter().enumerate() {
            if in_quote {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_quote = false;
                }
                continue;
            }
            match c {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                _ if c == sep && !in_angle => return Some(i),
                _ => {}
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn find_top_level_matches_reference(s in r#"[a ,;=<>"\\\r\n]{0,100}"#) {
            for sep in [b',', b';', b'=', b'<', b'>', b'"'] {
                proptest::prop_assert_eq!(
                    find_top_level(s.as_bytes(), sep),
                    find_top_level_reference(s.as_bytes(), sep)
                );
            }
        }

        #[test]
        fn trim_and_find_byte_match_std(s in "[a é\t\r\n;:]{0,80}") {
            proptest::prop_assert_eq!(
                trim_lws(&s),
                s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
            );
            for b in [b';', b':', b'a'] {
                proptest::prop_assert_eq!(find_byte(&s, b), s.find(char::from(b)));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn find_byte_from_matches_position(s in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'\n'), proptest::strategy::Just(0u8), proptest::strategy::Just(0x0bu8), proptest::strategy::Just(0x8au8), proptest::num::u8::ANY], 0..40), from in 0usize..45) {
            for c in [b'\n', 0u8, 0x8a] {
                let want = s.get(from..).and_then(|r| r.iter().position(|&x| x == c)).map(|i| from + i);
                proptest::prop_assert_eq!(find_byte_from(&s, from, c), want);
            }
            // Several bytes at once: the first of any of them (a false flag of one byte
            // must not hide an earlier match of another).
            for cs in [[b'\n', 0u8, 0x8a], [b';', b'"', b'<'], [0x0b, 0x0a, 0x0c]] {
                let want = s.get(from..).and_then(|r| r.iter().position(|x| cs.contains(x))).map(|i| from + i);
                proptest::prop_assert_eq!(find_any_from(&s, from, cs), want);
            }
        }
    }

    #[test]
    fn quoted_string_with_escapes() {
        let (inner, rest) = quoted_string(r#""J \"x\"" <sip:a>"#).unwrap();
        assert_eq!(inner, r#"J \"x\""#);
        assert_eq!(rest, " <sip:a>");
        assert_eq!(unescape_quoted(inner), r#"J "x""#);
        assert!(quoted_string(r#""unterminated <sip:a>"#).is_none());
    }

    #[test]
    fn decimals_bound_checked() {
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("300", 255), None);
        assert_eq!(parse_decimal("36893488147419103232", u64::MAX), None);
        assert_eq!(parse_decimal("-1", 10), None);
        assert_eq!(parse_decimal("", 10), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decode("%75se%72"), b"user");
        assert_eq!(&*percent_decode("null-%00-null"), b"null-\0-null");
        assert_eq!(&*percent_decode("%Z%45"), b"%ZE");
        assert!(!escapes_valid("%Z%45"));
        assert!(escapes_valid("a%20b"));
    }
}
