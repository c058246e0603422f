//! `name-addr` / `addr-spec` values: From, To, Contact, Route, Record-Route, Refer-To…
//! (RFC 3261 §20.10, §25.1).

use std::borrow::Cow;

use crate::params::Params;
use crate::scan;
use crate::uri::{Uri, UriError};

/// Why a name-addr was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// A display name with characters that are not allowed unquoted (RFC 4475 §3.1.2.15).
    #[error("display name must be tokens or a quoted string")]
    DisplayName,
    /// A quoted string that is never closed (RFC 4475 §3.1.2.6).
    #[error("unterminated quoted string")]
    Quote,
    /// `<` without `>`, or text between `>` and the parameters.
    #[error("malformed <URI>")]
    Angle,
    /// The URI itself.
    #[error("bad URI: {0}")]
    Uri(#[from] UriError),
    /// An empty or malformed header parameter.
    #[error("malformed header parameter")]
    Param,
}

/// A display name as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayName<'a> {
    /// A quoted string's content, escapes kept.
    Quoted(&'a str),
    /// One or more tokens separated by white space.
    Tokens(&'a str),
}

impl<'a> DisplayName<'a> {
    /// The name with escapes removed.
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            DisplayName::Quoted(s) => scan::unescape_quoted(s),
            DisplayName::Tokens(s) => Cow::Borrowed(s),
        }
    }
}

/// A parsed `name-addr` or `addr-spec` with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name, if any.
    pub display: Option<DisplayName<'a>>,
    /// The URI text (between `<>` when bracketed).
    pub uri_str: &'a str,
    /// The parsed URI.
    pub uri: Uri<'a>,
    /// Whether the URI was in angle brackets.
    pub bracketed: bool,
    /// Header parameters after the address (`;tag=…;q=0.5`).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (already split from any comma-separated list).
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, AddrError> {
        let (display, uri_str, bracketed, params) = split(s)?;
        let uri = Uri::parse(uri_str)?;
        Ok(NameAddr {
            display,
            uri_str,
            uri,
            bracketed,
            params,
        })
    }

    /// Checks the shape of one value (display name, brackets, header parameters) and
    /// returns its header parameters, without decoding the URI: for addresses this element
    /// only relays.
    pub fn check_shape(s: &'a str) -> Result<Params<'a>, AddrError> {
        Self::check_shape_get(s, "").map(|(params, _)| params)
    }

    /// [`NameAddr::check_shape`], and the header parameter `name` found in the same pass
    /// (as [`Params::get`] gives it).
    pub fn check_shape_get(
        s: &'a str,
        name: &str,
    ) -> Result<(Params<'a>, Option<Option<&'a str>>), AddrError> {
        match split_get(s, name)? {
            ((_, "", _, _), _) => Err(AddrError::Uri(UriError::Scheme)),
            ((_, _, _, params), found) => Ok((params, found)),
        }
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The `q` parameter in thousandths (Contact, RFC 3261 §20.10); `None` when absent or
    /// malformed.
    pub fn q(&self) -> Option<u16> {
        parse_qvalue(self.params.get("q").flatten()?)
    }

    /// The `expires` parameter (Contact).
    pub fn expires(&self) -> Option<u32> {
        let v = self.params.get("expires").flatten()?;
        scan::parse_decimal(v, u64::from(u32::MAX)).and_then(|v| u32::try_from(v).ok())
    }
}

/// A value's display name, URI text, whether the URI was bracketed, and its header
/// parameters, each checked except the URI's inside.
type Parts<'a> = (Option<DisplayName<'a>>, &'a str, bool, Params<'a>);

fn split(s: &str) -> Result<Parts<'_>, AddrError> {
    split_get(s, "").map(|(parts, _)| parts)
}

/// [`split`], and the header parameter `name` (`""`: none) found while checking them.
fn split_get<'a>(
    s: &'a str,
    name: &str,
) -> Result<(Parts<'a>, Option<Option<&'a str>>), AddrError> {
    let s = scan::trim_lws(s);
    let (display, uri_str, rest, bracketed) = if s.starts_with('"') {
        let (inner, rest) = scan::quoted_string(s).ok_or(AddrError::Quote)?;
        let rest = scan::trim_lws(rest);
        let (uri, after) = bracketed_uri(rest)?;
        (Some(DisplayName::Quoted(inner)), uri, after, true)
    } else if let Some(lt) = scan::find_byte(s, b'<') {
        let name = scan::trim_lws(s.get(..lt).unwrap_or_default());
        let display = if name.is_empty() {
            None
        } else {
            // Tokens separated by white space: every byte is one or the other.
            let ok = name
                .bytes()
                .all(|c| scan::is_token_char(c) || scan::is_lws(c));
            if !ok {
                return Err(if name.contains('"') {
                    AddrError::Quote
                } else {
                    AddrError::DisplayName
                });
            }
            Some(DisplayName::Tokens(name))
        };
        let (uri, after) = bracketed_uri(s.get(lt..).unwrap_or_default())?;
        (display, uri, after, true)
    } else {
        // addr-spec: parameters after ';' belong to the header, not the URI (§20).
        let (uri, params) = match scan::find_byte(s, b';') {
            Some(i) => (
                s.get(..i).unwrap_or_default(),
                s.get(i..).unwrap_or_default(),
            ),
            None => (s, ""),
        };
        let uri = scan::trim_lws(uri);
        if uri.contains('"') {
            return Err(AddrError::Quote);
        }
        if uri.bytes().any(|c| scan::is_lws(c) || c == b',') {
            return Err(AddrError::DisplayName);
        }
        (None, uri, params, false)
    };
    let rest = scan::trim_lws(rest);
    let params = match rest.strip_prefix(';') {
        Some(p) => Params::new(p),
        None if rest.is_empty() => Params::new(""),
        None => return Err(AddrError::Angle),
    };
    let mut found = None;
    if !rest.is_empty() {
        // A lone ';' or ';;' is an empty parameter (RFC 4475 §3.1.2.1).
        found = params.validate_get(name).map_err(|_| AddrError::Param)?;
        if scan::trim_lws(params.as_str()).is_empty() {
            return Err(AddrError::Param);
        }
    }
    Ok(((display, uri_str, bracketed, params), found))
}

/// Parses `<uri>` at the start of `s`; returns the URI text and what follows `>`.
fn bracketed_uri(s: &str) -> Result<(&str, &str), AddrError> {
    let inner = s.strip_prefix('<').ok_or(AddrError::Angle)?;
    let gt = scan::find_byte(inner, b'>').ok_or(AddrError::Angle)?;
    // LWS just inside the brackets is tolerated (RFC 4475 §3.1.2.14 allows either verdict).
    let uri = scan::trim_lws(inner.get(..gt).unwrap_or_default());
    Ok((uri, inner.get(gt + 1..).unwrap_or_default()))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, c) in frac.bytes().enumerate() {
        let weight = [100u16, 10, 1].get(i).copied().unwrap_or(0);
        thousandths += u16::from(c - b'0') * weight;
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.unwrap().text(), r#"J Rosenberg \""#);
        assert_eq!(a.tag(), Some("98asjd8"));
        let b = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(b.display, Some(DisplayName::Tokens("caller")));
        let c = NameAddr::parse("sip:user@example.com;tag=1").unwrap();
        assert!(!c.bracketed);
        assert_eq!(c.tag(), Some("1"));
        assert_eq!(c.uri_str, "sip:user@example.com");
        let d = NameAddr::parse("<sip:a@b;transport=tcp>;q=0.7;expires=60").unwrap();
        assert_eq!(d.q(), Some(700));
        assert_eq!(d.expires(), Some(60));
        assert_eq!(d.uri.as_sip().unwrap().transport().as_deref(), Some("tcp"));
    }

    #[test]
    fn rejects() {
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a@b>").unwrap_err(),
            AddrError::DisplayName
        );
        assert_eq!(
            NameAddr::parse(r#""Mr. J. User <sip:j@b>"#).unwrap_err(),
            AddrError::Quote
        );
        assert_eq!(
            NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).unwrap_err(),
            AddrError::Param
        );
        // Unquoted, a display name is tokens and white space, ASCII only.
        assert_eq!(
            NameAddr::parse("J\u{f6}rg <sip:a@b>").unwrap_err(),
            AddrError::DisplayName
        );
        assert_eq!(
            NameAddr::parse("A  B\t C.D <sip:a@b>").unwrap().display,
            Some(DisplayName::Tokens("A  B\t C.D"))
        );
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("<sip:a@b> junk").is_err());
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0.33"), Some(330));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
    }
}
