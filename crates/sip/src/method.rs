//! Request methods.

use std::fmt;

/// A SIP request method. Methods are case-sensitive (RFC 3261 §7.1); unknown ones are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// REGISTER (RFC 3261).
    Register,
    /// OPTIONS (RFC 3261).
    Options,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token.
    Other(Box<str>),
}

impl Method {
    /// Classifies a method token. The caller has checked that it is a token.
    pub fn from_token(s: &str) -> Method {
        Method::from_token_bytes(s.as_bytes())
    }

    /// [`Method::from_token`] on bytes (a token is ASCII, so nothing is lost).
    pub(crate) fn from_token_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(String::from_utf8_lossy(other).into()),
        }
    }

    /// A small number for a method with a variant (a message notes its CSeq by it);
    /// `None` for [`Method::Other`].
    pub(crate) fn code(&self) -> Option<u8> {
        let code = match self {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Bye => 2,
            Method::Cancel => 3,
            Method::Register => 4,
            Method::Options => 5,
            Method::Info => 6,
            Method::Update => 7,
            Method::Prack => 8,
            Method::Subscribe => 9,
            Method::Notify => 10,
            Method::Refer => 11,
            Method::Message => 12,
            Method::Publish => 13,
            Method::Other(_) => return None,
        };
        Some(code)
    }

    /// The method [`Method::code`] gave `code`.
    pub(crate) fn from_code(code: u8) -> Option<Method> {
        const BY_CODE: [Method; 14] = [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Register,
            Method::Options,
            Method::Info,
            Method::Update,
            Method::Prack,
            Method::Subscribe,
            Method::Notify,
            Method::Refer,
            Method::Message,
            Method::Publish,
        ];
        BY_CODE.get(usize::from(code)).cloned()
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `code` is exhaustive (the compiler holds every variant to it); this holds
    /// `from_code` to be its inverse, and each code's method to read back from its token.
    #[test]
    fn every_known_method_has_a_code_that_gives_it_back() {
        let known: Vec<Method> = (0..=u8::MAX).map_while(Method::from_code).collect();
        assert_eq!(known.len(), 14);
        for (code, m) in (0u8..).zip(&known) {
            assert_eq!(m.code(), Some(code), "{m}");
            assert_eq!(&Method::from_token(m.as_str()), m, "{m}");
        }
        assert_eq!(Method::from_token("FOO").code(), None);
        assert_eq!(Method::from_code(14), None);
    }
}
