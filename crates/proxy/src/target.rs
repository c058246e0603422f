//! Targets: where a call may be sent, and the ordered plan of groups to try.

use std::fmt;

use rollover_sip::{SipUri, Uri};
use rollover_txn::Transport;

/// One destination for a call: a SIP URI and the transport to reach it on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The URI put in the Request-URI.
    pub uri: String,
    /// The transport, from `;transport=`, the `/TCP` suffix form, or the scheme.
    pub transport: Transport,
}

/// A target that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Not a sip: or sips: URI.
    #[error("target {0:?} is not a sip: or sips: URI")]
    NotSip(String),
    /// A transport this server does not speak.
    #[error("target {0:?} names an unknown transport")]
    Transport(String),
}

impl Target {
    /// Parses `sip:101@192.0.2.1;transport=tcp`, or the Brekeke form
    /// `sip:101@192.0.2.1/TCP`.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        let (uri_text, suffix) = match s.rsplit_once('/') {
            Some((u, t)) if Transport::from_token(t).is_some() && !u.ends_with(':') => (u, Some(t)),
            _ => (s, None),
        };
        let uri = match Uri::parse(uri_text) {
            Ok(Uri::Sip(u)) => u,
            _ => return Err(TargetError::NotSip(s.to_owned())),
        };
        let transport = match (suffix, uri.transport()) {
            (Some(t), _) => Transport::from_token(t),
            (None, Some(t)) => Some(
                Transport::from_token(&t).ok_or_else(|| TargetError::Transport(s.to_owned()))?,
            ),
            (None, None) if uri.secure => Some(Transport::Tls),
            (None, None) => Some(Transport::Udp),
        }
        .ok_or_else(|| TargetError::Transport(s.to_owned()))?;
        Ok(Target {
            uri: uri_text.to_owned(),
            transport,
        })
    }

    /// The parsed URI.
    pub fn sip_uri(&self) -> Option<SipUri<'_>> {
        SipUri::parse(&self.uri).ok()
    }

    /// A comparison key: the URI by RFC 3261 §19.1.4 rules, reduced to what identifies a
    /// destination (user, host, port, transport), so redirects to a target already tried
    /// are recognised.
    pub fn identity(&self) -> String {
        match self.sip_uri() {
            Some(u) => {
                let user = u
                    .user_decoded()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let host = u.host.to_string().to_ascii_lowercase();
                let port = u.port.unwrap_or(if self.transport == Transport::Tls {
                    5061
                } else {
                    5060
                });
                format!("{user}@{host}:{port}/{}", self.transport)
            }
            None => self.uri.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)?;
        if self.transport != Transport::Udp
            && self
                .sip_uri()
                .is_some_and(|u| u.transport().is_none() && !u.secure)
        {
            write!(f, " ({})", self.transport)?;
        }
        Ok(())
    }
}

/// The ordered groups of targets for one call: the groups are tried one after another,
/// the targets of one group in parallel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// The groups, first tried first.
    pub groups: Vec<Vec<Target>>,
}

impl TargetPlan {
    /// Serial forking: each target alone, in order.
    pub fn serial(targets: Vec<Target>) -> TargetPlan {
        TargetPlan {
            groups: targets.into_iter().map(|t| vec![t]).collect(),
        }
    }

    /// Parallel forking: all targets at once.
    pub fn parallel(targets: Vec<Target>) -> TargetPlan {
        TargetPlan {
            groups: if targets.is_empty() {
                vec![]
            } else {
                vec![targets]
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        assert_eq!(
            Target::parse("sip:101@192.0.2.1").unwrap().transport,
            Transport::Udp
        );
        let t = Target::parse("sip:101@192.0.2.1/TCP").unwrap();
        assert_eq!(
            (t.uri.as_str(), t.transport),
            ("sip:101@192.0.2.1", Transport::Tcp)
        );
        assert_eq!(
            Target::parse("sip:101@192.0.2.1;transport=tcp")
                .unwrap()
                .transport,
            Transport::Tcp
        );
        assert_eq!(
            Target::parse("sips:101@example.com").unwrap().transport,
            Transport::Tls
        );
        assert!(Target::parse("tel:+123").is_err());
        assert!(Target::parse("sip:1@h;transport=sctp").is_err());
    }

    #[test]
    fn identity_ignores_spelling() {
        let a = Target::parse("sip:%61lice@Example.COM").unwrap();
        let b = Target::parse("sip:alice@example.com:5060").unwrap();
        assert_eq!(a.identity(), b.identity());
        let c = Target::parse("sip:alice@example.com/TCP").unwrap();
        assert_ne!(a.identity(), c.identity());
    }
}
