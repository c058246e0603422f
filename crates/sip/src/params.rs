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
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let raw = self.0;
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
        if self.iter().all(|(name, value)| pair_ok(name, value)) {
            Ok(())
        } else {
            Err(BadParam)
        }
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

fn plain_char(c: u8) -> bool {
    c > b' ' && c != 0x7f && !matches!(c, b'"' | b'<' | b'>' | b',' | b';' | b'=')
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

    #[test]
    fn empty_elements_rejected() {
        assert!(Params::new(";").validate().is_err());
        assert!(Params::new("a;;b").validate().is_err());
        assert!(Params::new("a=").validate().is_err());
        assert!(Params::new("").validate().is_ok());
    }
}
