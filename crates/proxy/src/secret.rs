//! The per-installation secret and the tokens made with it: the Record-Route token that
//! tells our own Route entries from forged ones, and the MAC in our Via branches that
//! tells a response to a request we sent from a forged one.
//!
//! Both are SipHash-2-4 (a keyed function made for MACs over short inputs) with a 128-bit
//! key derived from the secret, 64 bits written as 16 hex digits: short enough for a URI
//! parameter or a branch, and out of reach of guessing (2^64 tries per dialog). Every call
//! makes about ten, so the cost matters: HMAC-SHA256 cost about 6,000 instructions per
//! token, SipHash a few hundred. Route tokens made by earlier versions (HMAC-SHA256,
//! truncated the same way) are still accepted, so dialogs recorded before an upgrade go on.

use std::fmt;
use std::hash::Hasher;

use ring::{digest, hmac};
use rollover_txn::Peer;
use siphasher::sip::SipHasher24;

/// Length of a token in hex digits.
pub const TOKEN_LEN: usize = 16;

/// The key every token is made with. Whoever holds it can make Route entries and branches
/// this proxy accepts: keep it private, and the same on every node that shares dialogs.
#[derive(Clone)]
pub struct Secret {
    /// The SipHash key.
    sip: [u8; 16],
    /// The key of the tokens of earlier versions (verified only).
    legacy: hmac::Key,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from raw bytes (at least 16 are expected; the driver makes 32 random ones).
    pub fn new(bytes: &[u8]) -> Secret {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"rollover token key/siphash-2-4\0");
        ctx.update(bytes);
        let derived = ctx.finish();
        let mut sip = [0u8; 16];
        for (k, d) in sip.iter_mut().zip(derived.as_ref()) {
            *k = *d;
        }
        Secret {
            sip,
            legacy: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The token over `parts` (each length-prefixed, so `("ab","c")` ≠ `("a","bc")`).
    pub fn token(&self, parts: &[&[u8]]) -> Token {
        // The parts go to the hash gathered in one buffer: SipHash's streaming writes cost
        // more per short part than the hash of the whole (a branch MAC and a route token
        // are four short parts). The hash of pieces is the hash of their concatenation, so
        // a part too long for the buffer is written as it comes, to the same token.
        let mut h = SipHasher24::new_with_key(&self.sip);
        let mut buf = [0u8; 256];
        let mut len = 0;
        for p in parts {
            let prefix = (p.len() as u32).to_be_bytes();
            for piece in [&prefix[..], p] {
                if let Some(slot) = buf.get_mut(len..len + piece.len()) {
                    slot.copy_from_slice(piece);
                    len += piece.len();
                } else {
                    h.write(buf.get(..len).unwrap_or_default());
                    h.write(piece);
                    len = 0;
                }
            }
        }
        h.write(buf.get(..len).unwrap_or_default());
        Token::of(h.finish().to_be_bytes())
    }

    /// The token of earlier versions: HMAC-SHA256 truncated to 64 bits.
    fn legacy_token(&self, parts: &[&[u8]]) -> Token {
        let mut ctx = hmac::Context::with_key(&self.legacy);
        for p in parts {
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut first = [0u8; TOKEN_LEN / 2];
        for (d, s) in first.iter_mut().zip(tag.as_ref()) {
            *d = *s;
        }
        Token::of(first)
    }

    /// Whether `token` is the token over `parts` (compared in constant time).
    pub fn verify(&self, token: &str, parts: &[&[u8]]) -> bool {
        same(&self.token(parts), token)
    }

    /// The Record-Route token of a dialog: bound to its Call-ID and the caller's tag, so it
    /// serves requests in both directions (the tag is the From tag one way, the To tag the
    /// other) and no other dialog.
    pub fn route_token(&self, call_id: &str, caller_tag: &str) -> Token {
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
        let tags = || [from_tag, to_tag].into_iter().flatten();
        // Today's token for either tag first: the legacy one costs an HMAC each.
        tags().any(|tag| self.verify(token, &[b"rr", call_id.as_bytes(), tag.as_bytes()]))
            || tags().any(|tag| {
                let parts: [&[u8]; 3] = [b"rr", call_id.as_bytes(), tag.as_bytes()];
                same(&self.legacy_token(&parts), token)
            })
    }

    /// The MAC closing one of our branches: over the branch so far, the Call-ID and where
    /// the response is relayed to (the upstream Via's destination), so a stray 2xx can be
    /// relayed only to the hop the request really came from.
    pub fn branch_mac(&self, branch_head: &str, call_id: &str, upstream: Option<&Peer>) -> Token {
        // The hop in binary (transport, address, port): no text to format per branch.
        let mut hop = [0u8; 24];
        let mut len = 0;
        if let Some(p) = upstream {
            let mut put = |bytes: &[u8]| {
                for b in bytes {
                    if let Some(slot) = hop.get_mut(len) {
                        *slot = *b;
                        len += 1;
                    }
                }
            };
            put(p.transport.as_str().as_bytes());
            match p.addr.ip() {
                std::net::IpAddr::V4(ip) => put(&ip.octets()),
                std::net::IpAddr::V6(ip) => put(&ip.octets()),
            }
            put(&p.addr.port().to_be_bytes());
        }
        self.token(&[
            b"br",
            branch_head.as_bytes(),
            call_id.as_bytes(),
            hop.get(..len).unwrap_or_default(),
        ])
    }

    /// Whether `mac` closes the branch `branch_head` (compared in constant time).
    pub fn branch_mac_ok(
        &self,
        mac: &str,
        branch_head: &str,
        call_id: &str,
        upstream: Option<&Peer>,
    ) -> bool {
        same(&self.branch_mac(branch_head, call_id, upstream), mac)
    }
}

/// Constant-time comparison of a token we made with one we were given (any case).
fn same(want: &str, token: &str) -> bool {
    want.len() == token.len()
        && want
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

/// A token: 16 lower-case hex digits, kept on the stack (a call makes about ten).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    fn of(bytes: [u8; TOKEN_LEN / 2]) -> Token {
        let mut out = [0u8; TOKEN_LEN];
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&[hex(b >> 4), hex(b & 0xf)]);
        }
        Token(out)
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Token {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.as_str())
    }
}

fn hex(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + n - 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each part written to the hash as it comes: how tokens were made before.
    fn token_streamed(s: &Secret, parts: &[&[u8]]) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&s.sip);
        for p in parts {
            h.write(&(p.len() as u32).to_be_bytes());
            h.write(p);
        }
        h.finish().to_be_bytes()
    }

    #[test]
    fn a_token_is_the_same_hashed_whole_or_piece_by_piece() {
        // Tokens written by earlier builds (streamed part by part) must still check out,
        // and a part too long for the one-pass buffer takes the streamed path.
        let s = Secret::new(b"0123456789abcdef0123456789abcdef");
        let long = [b'x'; 300];
        for parts in [
            &[&b"rr"[..], b"call-1", b"tagA"][..],
            &[&b"br"[..], b"z9hG4bKrl1", b"c", &[0u8; 7]][..],
            &[&b"rr"[..], &long[..], b"t"][..],
            &[&b"rr"[..], &long[..150], &long[..150], b"t"][..],
        ] {
            assert_eq!(s.token(parts), Token::of(token_streamed(&s, parts)));
        }
        let t = s.token(&[b"rr", b"call-1", b"tagA"]);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(t.to_string(), t.as_str());
    }

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
        // A Route token of an earlier version (HMAC-SHA256) still opens its dialog, and
        // only its dialog.
        let old = s.legacy_token(&[b"rr", b"call-1", b"tagA"]);
        assert_ne!(old, t);
        assert!(s.route_token_ok(&old, "call-1", Some("tagA"), None));
        assert!(!s.route_token_ok(&old, "call-2", Some("tagA"), None));
        assert!(!other.route_token_ok(&old, "call-1", Some("tagA"), None));
        let hop = |a: &str| Peer {
            transport: rollover_txn::Transport::Udp,
            addr: a.parse().unwrap(),
        };
        let m = s.branch_mac("z9hG4bKrl1", "c", Some(&hop("192.0.2.1:5060")));
        assert_ne!(
            m,
            s.branch_mac("z9hG4bKrl1", "c", Some(&hop("192.0.2.9:5060")))
        );
        assert_ne!(
            m,
            s.branch_mac("z9hG4bKrl1", "c", Some(&hop("192.0.2.1:5061")))
        );
        assert_ne!(m, s.branch_mac("z9hG4bKrl1", "c", None));
    }
}
