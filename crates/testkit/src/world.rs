//! The world: how each scripted target behaves, one entry per target, separated by white
//! space or new lines (`#` starts a comment):
//!
//! ```text
//! a=100,silence        a sends 100 Trying, then nothing
//! b=180@2s,486@5s      b rings after 2 s and rejects at 5 s (times from the INVITE)
//! c=302(sip:d@h;q=0.5,sip:e@h;q=1)   c redirects (Contacts in parentheses)
//! e=200@1s             e answers after 1 s
//! d=unreachable        the transport to d fails at once
//! f=silence            f never answers (the default for a target the world does not name)
//! ```
//!
//! `caller=cancel@3s` makes the caller CANCEL its INVITE after 3 s.
//!
//! A name matches a target when it equals the target URI's user part, its host, or the
//! whole URI.

use std::time::Duration;

use rollover_sip::Uri;

/// One scripted response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The status.
    pub status: u16,
    /// When, after the INVITE arrives.
    pub at: Duration,
    /// Contacts (for 3xx).
    pub contacts: Vec<String>,
}

/// How a target behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// These responses, then silence.
    Script(Vec<Step>),
    /// The transport fails at once (connection refused).
    Unreachable,
}

/// A world that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("world entry {entry:?}: {reason}")]
pub struct WorldError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong.
    pub reason: String,
}

/// The scripted targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    entries: Vec<(String, Behaviour)>,
    caller_cancel: Option<Duration>,
}

/// Parses `2s`, `1.5s`, `800ms` or bare seconds (times in a world).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s').unwrap_or(s).trim();
    let v: f64 = secs.parse().ok()?;
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| Duration::from_secs_f64(v))
}

fn split_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(s.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(s.get(start..).unwrap_or_default());
    items
}

impl World {
    /// Parses a world (see the module docs).
    pub fn parse(text: &str) -> Result<World, WorldError> {
        let mut entries = Vec::new();
        let mut caller_cancel = None;
        let clean: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        for entry in clean.split_whitespace() {
            let err = |reason: &str| WorldError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (name, spec) = entry
                .split_once('=')
                .ok_or_else(|| err("expected name=behaviour"))?;
            if name.is_empty() {
                return Err(err("empty target name"));
            }
            if name == "caller" {
                let at = spec
                    .strip_prefix("cancel@")
                    .and_then(parse_duration)
                    .ok_or_else(|| err("the caller can only cancel: caller=cancel@3s"))?;
                caller_cancel = Some(at);
                continue;
            }
            let mut steps = Vec::new();
            let mut behaviour = None;
            for item in split_items(spec) {
                match item {
                    "silence" => {}
                    "unreachable" => behaviour = Some(Behaviour::Unreachable),
                    _ => {
                        let (body, at) = match item.rsplit_once('@') {
                            Some((b, t)) if !t.contains(')') => (
                                b,
                                parse_duration(t)
                                    .ok_or_else(|| err("bad time after @ (use 2s, 1.5s, 800ms)"))?,
                            ),
                            _ => (item, Duration::ZERO),
                        };
                        let (code, contacts) = match body.split_once('(') {
                            Some((c, rest)) => {
                                let inner =
                                    rest.strip_suffix(')').ok_or_else(|| err("unclosed ("))?;
                                (
                                    c,
                                    inner
                                        .split(',')
                                        .map(|s| s.trim().to_owned())
                                        .filter(|s| !s.is_empty())
                                        .collect(),
                                )
                            }
                            None => (body, Vec::new()),
                        };
                        let status: u16 = code
                            .parse()
                            .ok()
                            .filter(|c| (100..700).contains(c))
                            .ok_or_else(|| {
                                err("expected a status code 100-699, silence or unreachable")
                            })?;
                        steps.push(Step {
                            status,
                            at,
                            contacts,
                        });
                    }
                }
            }
            entries.push((
                name.to_owned(),
                behaviour.unwrap_or(Behaviour::Script(steps)),
            ));
        }
        Ok(World {
            entries,
            caller_cancel,
        })
    }

    /// When the caller CANCELs its INVITE (`caller=cancel@3s`), if it does.
    pub fn caller_cancel(&self) -> Option<Duration> {
        self.caller_cancel
    }

    /// The behaviour for a Request-URI.
    pub fn behaviour(&self, uri: &str) -> Option<&Behaviour> {
        let parsed = Uri::parse(uri).ok();
        let sip = parsed.as_ref().and_then(Uri::as_sip);
        let user = sip.and_then(|u| u.user);
        let host = sip.map(|u| u.host.to_string());
        let bare = uri.split(';').next().unwrap_or(uri);
        self.entries
            .iter()
            .find(|(n, _)| {
                Some(n.as_str()) == user || Some(n) == host.as_ref() || n == uri || n == bare
            })
            .map(|(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_grammar() {
        let w = World::parse("a=100,silence b=180@2s,486@5s c=302(sip:d@h;q=0.5,sip:e@h;q=1)\n# comment\ne=200@1.5s d=unreachable").unwrap();
        assert_eq!(
            w.behaviour("sip:a@10.0.0.1"),
            Some(&Behaviour::Script(vec![Step {
                status: 100,
                at: Duration::ZERO,
                contacts: vec![]
            }]))
        );
        assert_eq!(
            w.behaviour("sip:b@h"),
            Some(&Behaviour::Script(vec![
                Step {
                    status: 180,
                    at: Duration::from_secs(2),
                    contacts: vec![]
                },
                Step {
                    status: 486,
                    at: Duration::from_secs(5),
                    contacts: vec![]
                },
            ]))
        );
        match w.behaviour("sip:c@h") {
            Some(Behaviour::Script(s)) => {
                assert_eq!(s[0].contacts, ["sip:d@h;q=0.5", "sip:e@h;q=1"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.behaviour("sip:d@h"), Some(&Behaviour::Unreachable));
        assert!(World::parse("x").is_err());
        assert!(World::parse("x=999").is_err());
        assert!(World::parse("x=200@soon").is_err());
        assert_eq!(parse_duration("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
    }
}
