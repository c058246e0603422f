//! What `rollover check` reports beyond errors, and the checks routing shares with it:
//! the full path of an unknown key, rules no request can reach, targets whose host the
//! caller chooses with nothing fencing it, and the captures a rule defines.

use rollover_sip::Message;
use toml::Spanned;

use crate::raw::RawRoute;
use crate::shadow;
use crate::{Action, Cond, ConfigWarning, Ctx, Rule};

/// The full path of the key at `span` (`route[2].failover.ring_timout`), found by walking
/// the document: serde only names the last part.
pub(crate) fn key_path(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    pub(crate) fn walk(
        table: &DeTable<'_>,
        at: &std::ops::Range<usize>,
        path: &str,
    ) -> Option<String> {
        for (k, v) in table.iter() {
            let here = if path.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{path}.{}", k.get_ref())
            };
            if k.span() == *at {
                return Some(here);
            }
            if let Some(found) = walk_value(v.get_ref(), at, &here) {
                return Some(found);
            }
        }
        None
    }
    pub(crate) fn walk_value(
        v: &DeValue<'_>,
        at: &std::ops::Range<usize>,
        path: &str,
    ) -> Option<String> {
        match v {
            DeValue::Table(t) => walk(t, at, path),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                walk_value(item.get_ref(), at, &format!("{path}[{}]", i + 1))
            }),
            _ => None,
        }
    }
    let doc = DeTable::parse(text).ok()?;
    walk(doc.get_ref(), &span, "")
}

/// Whether a target template's host comes from the request (`${ruri}`, `sip:$1@$2`): such
/// a target reaches wherever the caller says, unless fenced.
pub(crate) fn dynamic_host(template: &str) -> bool {
    let rest = template
        .strip_prefix("sips:")
        .or_else(|| template.strip_prefix("sip:"));
    match rest {
        None => template.contains('$'),
        Some(r) => r.rsplit_once('@').map_or(r, |(_, h)| h).contains('$'),
    }
}

/// Whether a Request-URI regex names the host (something literal right after the `@`), so
/// a request for another host does not match. Used for `check`'s warning; at routing time
/// the rule is tried against the request with its host replaced (see `host_pinned`).
pub(crate) fn pins_host(pattern: &str) -> bool {
    let Some((_, after)) = pattern.split_once('@') else {
        return false;
    };
    let mut chars = after.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '[' => true,
        Some('\\') => chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '['),
        _ => false,
    }
}

/// Whether the rule's `match.request_uri` would refuse this request were its host any
/// other: then a `${ruri}` target can only reach the host the operator wrote.
pub(crate) fn host_pinned(rule: &Rule, req: &Message) -> bool {
    let Some(re) = rule.conds.iter().find_map(|c| match c {
        Cond::RequestUri(re) => Some(re),
        _ => None,
    }) else {
        return false;
    };
    let Some(uri) = req.request_uri_str() else {
        return false;
    };
    let Ok(u) = rollover_sip::SipUri::parse(uri) else {
        return false;
    };
    let host = u.host.to_string();
    let canary = match uri.split_once('@') {
        Some((user, rest)) => format!(
            "{user}@{}",
            rest.replacen(&host, "rollover-canary.invalid", 1)
        ),
        None => uri.replacen(&host, "rollover-canary.invalid", 1),
    };
    !re.is_match(&canary)
}

/// Rules with a target whose host comes from the request and no fence: neither a
/// `match.request_uri` that pins the host nor an explicit `reach`.
pub(crate) fn unfenced_targets(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawRoute>],
    rules: &[Rule],
) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Action::Targets(groups) = &rule.action else {
            continue;
        };
        let Some(t) = groups.iter().flatten().find(|t| dynamic_host(t)) else {
            continue;
        };
        let pinned = rule.conds.iter().any(|c| match c {
            Cond::RequestUri(re) => pins_host(re.as_str()),
            _ => false,
        });
        if pinned || rule.policy.reach.as_ref().is_some_and(|r| r.explicit) {
            continue;
        }
        out.push(warn_at(
            cx,
            raw,
            i,
            format!(
                "route[{}] {:?}: target {t:?} takes its host from the request, and nothing fences it: \
                 it is called only when that host is one the plan names. Pin the host in \
                 match.request_uri (e.g. '^sip:100@192\\.168\\.0\\.100(:5060)?$') or list the hosts \
                 allowed in failover.reach",
                i + 1,
                rule.name
            ),
        ));
    }
    out
}

/// A warning about `route[i]`, located at its `[[route]]` line.
fn warn_at(cx: &Ctx<'_>, raw: &[Spanned<RawRoute>], i: usize, message: String) -> ConfigWarning {
    let span = raw.get(i).map_or(0..0, Spanned::span);
    let e = cx.err(span, &format!("route[{}]", i + 1), "");
    ConfigWarning {
        file: e.file,
        line: e.line,
        column: e.column,
        key: e.key,
        message,
    }
}

/// Rules that come after one matching everything they could: a warning each.
pub(crate) fn dead_rules(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawRoute>],
    rules: &[Rule],
) -> Vec<ConfigWarning> {
    let label = |i: usize| match raw.get(i).and_then(|r| r.get_ref().name.as_deref()) {
        Some(n) => format!("route[{}] {n:?}", i + 1),
        None => format!("route[{}]", i + 1),
    };
    let mut out = Vec::new();
    for (j, later) in rules.iter().enumerate() {
        let Some((i, what)) = rules
            .iter()
            .take(j)
            .enumerate()
            .find_map(|(i, earlier)| Some((i, shadow::shadowed_by(earlier, later)?)))
        else {
            continue;
        };
        out.push(warn_at(
            cx,
            raw,
            j,
            format!(
                "{} can never match: {} above it matches {what}",
                label(j),
                label(i)
            ),
        ));
    }
    out
}

/// The captures a rule defines, for checking its targets.
pub(crate) struct Captures {
    /// Groups of `match.request_uri` (`$0` is the whole match), when it is there.
    pub(crate) numbered: Option<usize>,
    /// Named groups of every condition, and `ruri`.
    pub(crate) named: Vec<String>,
}

impl Captures {
    pub(crate) fn of(conds: &[Cond]) -> Captures {
        let mut numbered = None;
        let mut named = Vec::new();
        for c in conds {
            let re = match c {
                Cond::RequestUri(re) => {
                    numbered = Some(re.captures_len());
                    re
                }
                Cond::Method(re)
                | Cond::To(re)
                | Cond::From(re)
                | Cond::Header(_, re)
                | Cond::Transport(re) => re,
                Cond::InviteOnly | Cond::Source(_) => continue,
            };
            named.extend(re.capture_names().flatten().map(str::to_owned));
        }
        named.push("ruri".to_owned());
        named.sort();
        named.dedup();
        Captures { numbered, named }
    }

    pub(crate) fn list(&self) -> String {
        let numbered = (0..self.numbered.unwrap_or(0)).map(|i| format!("${i}"));
        let named = self.named.iter().map(|n| format!("${{{n}}}"));
        numbered.chain(named).collect::<Vec<_>>().join(", ")
    }

    /// The first reference in `template` to a capture that does not exist: its offset and
    /// what to say.
    pub(crate) fn check(&self, template: &str) -> Option<(usize, String)> {
        let mut at = 0;
        while let Some(i) = template.get(at..).and_then(|r| r.find('$')) {
            let start = at + i;
            let after = template.get(start + 1..).unwrap_or_default();
            let (name, len, braced) = if after.starts_with('$') {
                at = start + 2;
                continue;
            } else if let Some(inner) = after.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Some((start, "unclosed ${ (write ${name})".to_owned()));
                };
                (inner.get(..end).unwrap_or_default(), end + 2, true)
            } else {
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                (after.get(..digits).unwrap_or_default(), digits, false)
            };
            at = start + 1 + len;
            if name.is_empty() && !braced {
                continue; // a lone `$` is itself
            }
            let written = if braced {
                format!("${{{name}}}")
            } else {
                format!("${name}")
            };
            let problem = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                let n: usize = name.parse().unwrap_or(usize::MAX);
                match self.numbered {
                    Some(len) if n < len => continue,
                    Some(len) => format!(
                        "match.request_uri has {} group{}",
                        len - 1,
                        if len == 2 { "" } else { "s" }
                    ),
                    None => "numbered captures come from match.request_uri, and this rule has none"
                        .to_owned(),
                }
            } else if self.named.iter().any(|n| n == name) {
                continue;
            } else {
                format!("no condition has a group named {name}")
            };
            return Some((
                start,
                format!(
                    "capture {written} does not exist: {problem}; defined here: {}",
                    self.list()
                ),
            ));
        }
        None
    }
}
