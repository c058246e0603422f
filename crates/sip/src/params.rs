//! `;name=value` parameter lists, shared by URIs, Via, name-addr headers and Reason.

use std::borrow::Cow;

use crate::scan;

/// A parameter list as written (without the leading `;`), decoded on demand.
///
/// White space around `;` and `=` is tolerated (RFC 3261 §7.3.1 SEMI and EQUAL allow LWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(&'a str);

/// A parameter list that failed [`Params::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadParam;

impl<'a> Params<'a> {
    /// Wraps a raw parameter list (the text after the first `;`).
    pub fn new(raw: &'a str) -> Params<'a> {
        Params(raw)
    }

    /// The raw text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Iterates `(name, value)` pairs; values are trimmed, quotes kept.
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter {
            raw: self.0,
            pos: 0,
            done: self.0.is_empty(),
        }
    }

    /// Looks a parameter up by name, case-insensitively.
    ///
    /// `None`: absent; `Some(None)`: present without value; `Some(Some(v))`: with value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Like [`Params::get`] with surrounding quotes removed and escapes decoded.
    pub fn get_unquoted(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).flatten().map(unquote)
    }

    /// Checks that every element has a non-empty name and, when `=` is present, a
    /// non-empty value that is a quoted string or has no white space or delimiters.
    pub fn validate(&self) -> Result<(), BadParam> {
        self.validate_get("").map(|_| ())
    }

    /// [`Params::validate`], then [`Params::get`] of `name` (`""`: none): the common list
    /// (`tag=…`, `branch=…;rport`) has no white space, quotes or brackets, so one pass
    /// over it checks every element and finds the one asked for. Others take the
    /// element-by-element check and a second walk.
    pub fn validate_get(&self, name: &str) -> Result<Option<Option<&'a str>>, BadParam> {
        match plain_pass(self.0, name) {
            Some(found) => Ok(found),
            None if self.iter().all(|(n, v)| pair_ok(n, v)) => Ok(if name.is_empty() {
                None
            } else {
                self.get(name)
            }),
            None => Err(BadParam),
        }
    }
}

/// One pass over a list of plain bytes, `;` and `=` only, every element with a name and,
/// after `=`, a value that is not empty and holds no second `=`: the first value of the
/// element named `name` (case-insensitively; `""` finds none). `None` for any other list,
/// left to the general check (which refuses the ill-formed plain ones too).
fn plain_pass<'a>(raw: &'a str, name: &str) -> Option<Option<Option<&'a str>>> {
    let b = raw.as_bytes();
    if b.is_empty() {
        return Some(None);
    }
    let mut found = None;
    let (mut start, mut eq, mut i) = (0, None, 0);
    loop {
        // Past a run of plain bytes (most of the list) to the next `;`, `=` or other byte.
        let rest = b.get(i..).unwrap_or_default();
        i += rest
            .iter()
            .position(|&c| !plain_char(c))
            .unwrap_or(rest.len());
        match b.get(i) {
            Some(b'=') if eq.is_none() => eq = Some(i),
            Some(b';') | None => {
                let name_end = eq.unwrap_or(i);
                if name_end == start || eq.is_some_and(|e| e + 1 == i) {
                    return None;
                }
                if found.is_none()
                    && !name.is_empty()
                    && raw
                        .get(start..name_end)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                {
                    found = Some(eq.and_then(|e| raw.get(e + 1..i)));
                }
                if i >= b.len() {
                    return Some(found);
                }
                (start, eq) = (i + 1, None);
            }
            Some(_) => return None,
        }
        i += 1;
    }
}

/// Whether a list of plain bytes, `;` and `=` only (URI parameters), is well formed: every
/// element has a name, and a value after `=` that is not empty and holds no second `=`.
pub(crate) fn plain_well_formed(p: &str) -> bool {
    plain_pass(p, "").is_some()
}

/// The iterator of [`Params::iter`].
///
/// Each element is found in one pass that stops at its `;` and notes its first `=`, both
/// outside quoted strings and `<…>` as [`scan::find_top_level`] defines them. It runs for
/// every branch, tag and rport lookup, so it steps over ordinary bytes with one table
/// load each.
#[derive(Debug, Clone)]
pub struct ParamsIter<'a> {
    raw: &'a str,
    pos: usize,
    done: bool,
}

/// Bytes that end an ordinary run inside a parameter list.
static SPECIAL: [bool; 256] = byte_table(b";=\"<>");

#[allow(clippy::indexing_slicing)] // const evaluation: u8 indices into 256 entries
const fn byte_table(set: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
}

#[inline]
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
fn special(c: u8) -> bool {
    SPECIAL[usize::from(c)]
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b = self.raw.as_bytes();
        let start = self.pos;
        // Most elements hold no quote and no `<`: their end is the next `;` and their `=`
        // the first one, found a word at a time. The others are stepped through.
        let (end, eq) = match scan::find_any_from(b, start, [b';', b'"', b'<']) {
            Some(i) if b.get(i) == Some(&b';') => {
                let element = b.get(..i).unwrap_or_default();
                (Some(i), scan::find_byte_from(element, start, b'='))
            }
            None => (None, scan::find_byte_from(b, start, b'=')),
            Some(_) => element_end(b, start),
        };
        let stop = match end {
            Some(e) => {
                self.pos = e + 1;
                e
            }
            None => {
                self.done = true;
                self.raw.len()
            }
        };
        let element =
            |from: usize, to: usize| scan::trim_lws(self.raw.get(from..to).unwrap_or_default());
        // A list of white space only has no elements (but ";" has two empty ones): found
        // here rather than by a pass over the list each time one is made.
        if start == 0 && end.is_none() && eq.is_none() && element(0, stop).is_empty() {
            return None;
        }
        Some(match eq {
            Some(e) => (element(start, e), Some(element(e + 1, stop))),
            None => (element(start, stop), None),
        })
    }
}

/// Where the element starting at `start` ends (its `;`, or `None` at the end of the list)
/// and its first `=`, both outside quoted strings and `<…>`.
fn element_end(b: &[u8], start: usize) -> (Option<usize>, Option<usize>) {
    let mut i = start;
    let mut eq = None;
    let mut in_angle = false;
    loop {
        let run = b
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|&c| special(c));
        let Some(run) = run else {
            return (None, eq);
        };
        i += run;
        match b.get(i) {
            Some(b';') if !in_angle => return (Some(i), eq),
            Some(b'=') if !in_angle && eq.is_none() => eq = Some(i),
            Some(b'"') => match scan::after_quoted(b, i + 1) {
                Some(after) => {
                    i = after;
                    continue;
                }
                // An unterminated quote runs to the end: no more separators.
                None => return (None, eq),
            },
            Some(b'<') => in_angle = true,
            Some(b'>') => in_angle = false,
            _ => {}
        }
        i += 1;
    }
}

/// One element of [`Params::validate`], for callers that walk the list anyway.
pub(crate) fn pair_ok(name: &str, value: Option<&str>) -> bool {
    let name_ok = !name.is_empty() && name.bytes().all(plain_char);
    let value_ok = match value {
        None => true,
        Some(v) if v.starts_with('"') => {
            matches!(scan::quoted_string(v), Some((_, rest)) if rest.is_empty())
        }
        Some(v) => !v.is_empty() && v.bytes().all(plain_char),
    };
    name_ok && value_ok
}

static PLAIN: [bool; 256] = plain_table();

#[allow(clippy::indexing_slicing)] // const evaluation: u8 indices into 256 entries
const fn plain_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b > b' ' && b != 0x7f && !matches!(b, b'"' | b'<' | b'>' | b',' | b';' | b'=');
        c += 1;
    }
    t
}

#[inline]
#[allow(clippy::indexing_slicing)] // u8 index, 256 entries
pub(crate) fn plain_char(c: u8) -> bool {
    PLAIN[usize::from(c)]
}

/// Removes quotes and quoted-pair escapes from a value, when it is quoted.
pub fn unquote(v: &str) -> Cow<'_, str> {
    match scan::quoted_string(v) {
        Some((inner, "")) => scan::unescape_quoted(inner),
        _ => Cow::Borrowed(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_lws() {
        let p = Params::new("  branch  =   z9hG4bK9ikj8  ; rport;Received=1.2.3.4");
        assert_eq!(p.get("branch"), Some(Some("z9hG4bK9ikj8")));
        assert_eq!(p.get("RPORT"), Some(None));
        assert_eq!(p.get("received"), Some(Some("1.2.3.4")));
        assert_eq!(p.get("maddr"), None);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn quoted_values() {
        let p = Params::new(r#"cause=200;text="Call completed; elsewhere""#);
        assert_eq!(p.get_unquoted("text").unwrap(), "Call completed; elsewhere");
        assert!(p.validate().is_ok());
    }

    /// The split-then-search iterator the one-pass `ParamsIter` replaced, kept as its oracle.
    fn iter_reference(raw: &str) -> Vec<(&str, Option<&str>)> {
        let empty = scan::trim_lws(raw).is_empty();
        scan::split_top_level(raw, b';')
            .filter(move |_| !empty)
            .map(|p| match scan::find_top_level(p.as_bytes(), b'=') {
                Some(i) => (
                    scan::trim_lws(p.get(..i).unwrap_or_default()),
                    Some(scan::trim_lws(p.get(i + 1..).unwrap_or_default())),
                ),
                None => (scan::trim_lws(p), None),
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn iter_matches_reference(raw in r#"[ab ;=<>"\\\t\r\né]{0,40}"#) {
            let got: Vec<_> = Params::new(&raw).iter().collect();
            proptest::prop_assert_eq!(got, iter_reference(&raw));
        }
    }

    proptest::proptest! {
        /// The one-split check of a plain list decides as the element-by-element one.
        #[test]
        fn validate_matches_the_general_check(raw in r#"[ab ;=<>"\\\t%]{0,16}"#) {
            let general = Params::new(&raw).iter().all(|(n, v)| pair_ok(n, v));
            proptest::prop_assert_eq!(Params::new(&raw).validate().is_ok(), general);
        }
    }

    proptest::proptest! {
        /// The one-pass check and look-up decide and find as the check and `get` apart.
        #[test]
        fn validate_get_is_validate_then_get(raw in r#"[aAgGt ;=<>"\\\t%]{0,16}"#, name in "(tag|TaG|a|g)") {
            let p = Params::new(&raw);
            let general = p.iter().all(|(n, v)| pair_ok(n, v));
            let expected = if general { Ok(p.get(&name)) } else { Err(BadParam) };
            proptest::prop_assert_eq!(p.validate_get(&name), expected);
            proptest::prop_assert_eq!(p.validate_get(""), if general { Ok(None) } else { Err(BadParam) });
        }
    }

    #[test]
    fn validate_get_finds_the_first_of_a_plain_list() {
        let p = Params::new("x;TAG=t1;tag=t2");
        assert_eq!(p.validate_get("tag"), Ok(Some(Some("t1"))));
        assert_eq!(p.validate_get("x"), Ok(Some(None)));
        assert_eq!(p.validate_get("y"), Ok(None));
        assert_eq!(Params::new("tag=a=b").validate_get("tag"), Err(BadParam));
        assert_eq!(Params::new("tag=").validate_get("tag"), Err(BadParam));
        assert_eq!(Params::new("tag=t;").validate_get("tag"), Err(BadParam));
    }

    #[test]
    fn empty_elements_rejected() {
        assert!(Params::new(";").validate().is_err());
        assert!(Params::new("a;;b").validate().is_err());
        assert!(Params::new("a=").validate().is_err());
        assert!(Params::new("").validate().is_ok());
    }
}
