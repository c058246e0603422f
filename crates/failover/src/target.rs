//! Targets: where a call may be sent, and the ordered plan of groups to try.

use std::fmt;

use rollover_sip::{SipUri, Uri, UriError};
use rollover_txn::Transport;

/// One destination for a call: a SIP URI and the transport to reach it on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The URI put in the Request-URI.
    pub uri: String,
    /// The transport, from `;transport=`, the `/TCP` suffix form, or the scheme.
    pub transport: Transport,
}

/// A target that could not be understood: the text, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {target:?}: {problem}")]
pub struct TargetError {
    /// The target as written.
    pub target: String,
    /// What is wrong.
    pub problem: TargetProblem,
}

/// What is wrong with a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetProblem {
    /// Another scheme (`tel:`, `http:`) or no scheme at all.
    #[error("not a sip: or sips: URI")]
    NotSip,
    /// A port that is a number, but not one from 1 to 65535.
    #[error("port {0} out of range (1–65535)")]
    PortRange(String),
    /// A port that is not a number.
    #[error("port {0:?} is not a number")]
    PortNotNumber(String),
    /// A `/XYZ` suffix that is not a transport.
    #[error("unknown transport suffix /{0} (UDP, TCP or TLS)")]
    Suffix(String),
    /// A `;transport=` this server does not speak.
    #[error("unknown transport {0:?} (udp, tcp or tls)")]
    Transport(String),
    /// Some other part of the SIP URI is malformed.
    #[error("malformed SIP URI: {0}")]
    Uri(UriError),
}

/// The port as written in a `sip:`/`sips:` URI's host part, if any.
fn port_text(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = rest.split([';', '?']).next().unwrap_or_default();
    let after_host = match hostport.rsplit_once(']') {
        Some((_, p)) => p,
        None => hostport,
    };
    after_host.split_once(':').map(|(_, p)| p)
}

impl Target {
    /// Parses `sip:101@192.0.2.1;transport=tcp`, or the Brekeke form
    /// `sip:101@192.0.2.1/TCP`.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        let fail = |problem| TargetError {
            target: s.to_owned(),
            problem,
        };
        let (uri_text, suffix) = match s.rsplit_once('/') {
            Some((u, t)) if Transport::from_token(t).is_some() && !u.ends_with(':') => (u, Some(t)),
            _ => (s, None),
        };
        let uri = match Uri::parse(uri_text) {
            Ok(Uri::Sip(u)) => u,
            Ok(_) | Err(UriError::Scheme) => return Err(fail(TargetProblem::NotSip)),
            Err(e) => {
                // `sip:1@h/TPC`: the URI before the slash is fine, the suffix is not.
                if let Some((u, t)) = s.rsplit_once('/') {
                    let word = !t.is_empty()
                        && t.len() <= 8
                        && t.bytes().all(|c| c.is_ascii_alphanumeric());
                    if word && matches!(Uri::parse(u), Ok(Uri::Sip(_))) {
                        return Err(fail(TargetProblem::Suffix(t.to_owned())));
                    }
                }
                return Err(fail(match (e, port_text(uri_text)) {
                    (UriError::Port, Some(p))
                        if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) =>
                    {
                        TargetProblem::PortRange(p.to_owned())
                    }
                    (UriError::Port, Some(p)) => TargetProblem::PortNotNumber(p.to_owned()),
                    (e, _) => TargetProblem::Uri(e),
                }));
            }
        };
        if uri.port == Some(0) {
            return Err(fail(TargetProblem::PortRange("0".into())));
        }
        let transport = match (suffix, uri.transport_param()) {
            (Some(t), _) => Transport::from_token(t),
            (None, Some(t)) => Some(
                Transport::from_token(t)
                    .ok_or_else(|| fail(TargetProblem::Transport(t.to_ascii_lowercase())))?,
            ),
            (None, None) if uri.secure => Some(Transport::Tls),
            (None, None) => Some(Transport::Udp),
        }
        .ok_or_else(|| fail(TargetProblem::NotSip))?;
        Ok(Target {
            uri: uri_text.to_owned(),
            transport,
        })
    }

    /// The text that stands for the Request-URI's registered contacts (a dial plan's
    /// `"location:"` target, a script's `req:lookup()`).
    pub const LOCATION: &'static str = "location:";

    /// The `location:` placeholder: whoever runs the policy with a location service
    /// replaces it by the registered contacts, one group per q value; without one it is a
    /// target that cannot be reached.
    pub fn location() -> Target {
        Target {
            uri: Target::LOCATION.to_owned(),
            transport: Transport::Udp,
        }
    }

    /// Whether this is the `location:` placeholder.
    pub fn is_location(&self) -> bool {
        self.uri == Target::LOCATION
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
    fn errors_say_what_is_wrong() {
        let problem = |s: &str| Target::parse(s).unwrap_err().problem;
        assert_eq!(problem("tel:+123"), TargetProblem::NotSip);
        assert_eq!(problem("192.0.2.1"), TargetProblem::NotSip);
        assert_eq!(
            problem("sip:1@h:99999"),
            TargetProblem::PortRange("99999".into())
        );
        assert_eq!(problem("sip:1@h:0"), TargetProblem::PortRange("0".into()));
        assert_eq!(
            problem("sip:1@[2001:db8::1]:70000;transport=tcp"),
            TargetProblem::PortRange("70000".into())
        );
        assert_eq!(
            problem("sip:1@h:five"),
            TargetProblem::PortNotNumber("five".into())
        );
        assert_eq!(problem("sip:1@h/TPC"), TargetProblem::Suffix("TPC".into()));
        assert_eq!(
            problem("sip:1@h;transport=sctp"),
            TargetProblem::Transport("sctp".into())
        );
        assert_eq!(
            Target::parse("sip:1@h:99999").unwrap_err().to_string(),
            "target \"sip:1@h:99999\": port 99999 out of range (1–65535)"
        );
        assert_eq!(
            Target::parse("sip:1@h/TPC").unwrap_err().to_string(),
            "target \"sip:1@h/TPC\": unknown transport suffix /TPC (UDP, TCP or TLS)"
        );
        // A slash inside a URI parameter is not a suffix.
        assert!(Target::parse("sip:1@h;x=a/b").is_ok());
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
