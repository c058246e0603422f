//! Authentication headers: a challenge (WWW-Authenticate, Proxy-Authenticate) or
//! credentials (Authorization, Proxy-Authorization), RFC 3261 §22 and §25.1.

use std::borrow::Cow;

use crate::params::unquote;
use crate::scan;

/// A challenge (WWW-/Proxy-Authenticate) or credentials (Authorization,
/// Proxy-Authorization): a scheme and comma-separated auth-params (RFC 3261 §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    /// `Digest`, or any other scheme token.
    pub scheme: &'a str,
    params: &'a str,
}

impl<'a> Auth<'a> {
    /// Parses `scheme LWS auth-param *(COMMA auth-param)`.
    pub fn parse(s: &'a str) -> Option<Auth<'a>> {
        let s = scan::trim_lws(s);
        let end = s
            .bytes()
            .position(|c| !scan::is_token_char(c))
            .unwrap_or(s.len());
        let scheme = s.get(..end)?;
        let params = scan::trim_lws(s.get(end..)?);
        if scheme.is_empty()
            || (!params.is_empty() && !s.as_bytes().get(end).is_some_and(|&c| scan::is_lws(c)))
        {
            return None;
        }
        let auth = Auth { scheme, params };
        for (name, value) in auth.params() {
            let value_ok = value.starts_with('"')
                && matches!(scan::quoted_string(value), Some((_, r)) if r.is_empty())
                || !value.is_empty() && scan::is_token(value.as_bytes());
            if !scan::is_token(name.as_bytes()) || !value_ok {
                return None;
            }
        }
        Some(auth)
    }

    /// The auth-params as `(name, raw value)` pairs.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let raw = self.params;
        scan::split_top_level(raw, b',')
            .filter(move |_| !raw.is_empty())
            .map(|p| match p.find('=') {
                Some(i) => (
                    scan::trim_lws(p.get(..i).unwrap_or_default()),
                    scan::trim_lws(p.get(i + 1..).unwrap_or_default()),
                ),
                None => (scan::trim_lws(p), ""),
            })
    }

    /// A parameter by name (case-insensitive), unquoted.
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_challenge() {
        let a = Auth::parse(r#"Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth,auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5"#).unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.param("qop").unwrap(), "auth,auth-int");
        assert_eq!(a.param("ALGORITHM").unwrap(), "MD5");
        assert_eq!(a.param("opaque").unwrap(), "");
        assert!(Auth::parse(r#"Digest realm="unterminated"#).is_none());
    }
}
