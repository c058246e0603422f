//! The per-installation secret and the tokens made with it: the Record-Route token that
//! tells our own Route entries from forged ones, and the MAC in our Via branches that
//! tells a response to a request we sent from a forged one.
//!
//! Both are HMAC-SHA256 truncated to 64 bits, written as 16 hex digits: short enough for
//! a URI parameter or a branch, and out of reach of guessing (2^64 tries per dialog).

use std::fmt;

use ring::hmac;

/// Length of a token in hex digits.
pub const TOKEN_LEN: usize = 16;

/// The key every token is made with. Whoever holds it can make Route entries and branches
/// this proxy accepts: keep it private, and the same on every node that shares dialogs.
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from raw bytes (at least 16 are expected; the driver makes 32 random ones).
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The token over `parts` (each length-prefixed, so `("ab","c")` ≠ `("a","bc")`).
    pub fn token(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut out = String::with_capacity(TOKEN_LEN);
        for b in tag.as_ref().iter().take(TOKEN_LEN / 2) {
            out.push(hex(b >> 4));
            out.push(hex(b & 0xf));
        }
        out
    }

    /// Whether `token` is the token over `parts` (compared in constant time).
    pub fn verify(&self, token: &str, parts: &[&[u8]]) -> bool {
        let want = self.token(parts);
        want.len() == token.len()
            && want
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
                == 0
    }

    /// The Record-Route token of a dialog: bound to its Call-ID and the caller's tag, so it
    /// serves requests in both directions (the tag is the From tag one way, the To tag the
    /// other) and no other dialog.
    pub fn route_token(&self, call_id: &str, caller_tag: &str) -> String {
        self.token(&[b"rr", call_id.as_bytes(), caller_tag.as_bytes()])
    }

    /// Whether a Route token belongs to the dialog of this request (either tag).
    pub fn route_token_ok(
        &self,
        token: &str,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
    ) -> bool {
        [from_tag, to_tag]
            .into_iter()
            .flatten()
            .any(|tag| self.verify(token, &[b"rr", call_id.as_bytes(), tag.as_bytes()]))
    }

    /// The MAC closing one of our branches: over the branch so far, the Call-ID and where
    /// the response is relayed to (the upstream Via's destination), so a stray 2xx can be
    /// relayed only to the hop the request really came from.
    pub fn branch_mac(&self, branch_head: &str, call_id: &str, upstream: &str) -> String {
        self.token(&[
            b"br",
            branch_head.as_bytes(),
            call_id.as_bytes(),
            upstream.as_bytes(),
        ])
    }
}

fn hex(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_keyed_bound_and_checked() {
        let s = Secret::new(b"0123456789abcdef0123456789abcdef");
        let other = Secret::new(b"another installation's secret...");
        let t = s.route_token("call-1", "tagA");
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(s.route_token_ok(&t, "call-1", Some("tagA"), None));
        assert!(s.route_token_ok(&t, "call-1", Some("tagB"), Some("tagA")));
        assert!(!s.route_token_ok(&t, "call-2", Some("tagA"), None));
        assert!(!s.route_token_ok(&t, "call-1", Some("tagB"), None));
        assert!(!other.route_token_ok(&t, "call-1", Some("tagA"), None));
        assert!(s.verify(&t.to_ascii_uppercase(), &[b"rr", b"call-1", b"tagA"]));
        assert!(!s.verify(&t[..15], &[b"rr", b"call-1", b"tagA"]));
        // Length-prefixed parts: moving a byte from one part to the next changes the token.
        assert_ne!(s.token(&[b"ab", b"c"]), s.token(&[b"a", b"bc"]));
        let m = s.branch_mac("z9hG4bKrl1", "c", "udp:192.0.2.1:5060");
        assert_ne!(m, s.branch_mac("z9hG4bKrl1", "c", "udp:192.0.2.9:5060"));
    }
}
