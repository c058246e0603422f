//! Which rules no request can reach: a rule is dead when a rule above it matches every
//! request it could match. The analysis only says so when it is sure; a rule it cannot
//! reason about is assumed reachable.

use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, Look};

use crate::{Cond, Rule};

/// Why `earlier` shadows `later`: `Some(what)` names the requests it takes
/// ("every INVITE"), `None` when it does not (or the analysis cannot tell).
pub(crate) fn shadowed_by(earlier: &Rule, later: &Rule) -> Option<String> {
    let methods = later_methods(later);
    if let Some(ms) = &methods {
        if ms.is_empty() {
            return None;
        }
    }
    let mut whole = true;
    for c in &earlier.conds {
        let covered = match c {
            Cond::InviteOnly => methods
                .as_ref()
                .is_some_and(|ms| ms.iter().all(|m| m == "INVITE")),
            Cond::Method(a) => match &methods {
                Some(ms) => ms.iter().all(|m| a.is_match(m)),
                None => universal(a, true),
            },
            Cond::RequestUri(a) => {
                let b = later.conds.iter().find_map(|c| match c {
                    Cond::RequestUri(b) => Some(b),
                    _ => None,
                });
                covered(a, b, true, &mut whole)
            }
            Cond::To(a) => {
                let b = later.conds.iter().find_map(|c| match c {
                    Cond::To(b) => Some(b),
                    _ => None,
                });
                covered(a, b, true, &mut whole)
            }
            Cond::From(a) => {
                let b = later.conds.iter().find_map(|c| match c {
                    Cond::From(b) => Some(b),
                    _ => None,
                });
                covered(a, b, true, &mut whole)
            }
            Cond::Header(name, a) => {
                // A request without the header does not match `earlier`: `later` must
                // require the same header.
                whole = false;
                later.conds.iter().any(|c| match c {
                    Cond::Header(n, b) if n.eq_ignore_ascii_case(name) => {
                        covered(a, Some(b), false, &mut true)
                    }
                    _ => false,
                })
            }
            Cond::Source(a) => {
                whole = false;
                later.conds.iter().any(|c| match c {
                    Cond::Source(b) => a.covers(b),
                    _ => false,
                })
            }
            Cond::Transport(a) => {
                let b = later.conds.iter().find_map(|c| match c {
                    Cond::Transport(b) => Some(b),
                    _ => None,
                });
                let theirs: Vec<&str> = ["udp", "tcp", "tls"]
                    .into_iter()
                    .filter(|t| b.is_none_or(|b| b.is_match(t)))
                    .collect();
                if ["udp", "tcp", "tls"].iter().any(|t| !a.is_match(t)) {
                    whole = false;
                }
                !theirs.is_empty() && theirs.iter().all(|t| a.is_match(t))
            }
        };
        if !covered {
            return None;
        }
    }
    let what = match &methods {
        Some(ms) => ms.join(" or "),
        None => "request".to_owned(),
    };
    Some(if whole {
        format!("every {what}")
    } else {
        format!("every {what} it could match")
    })
}

/// The methods `rule` can match, when that is a known finite set.
fn later_methods(rule: &Rule) -> Option<Vec<String>> {
    rule.conds.iter().find_map(|c| match c {
        Cond::InviteOnly => Some(Some(vec!["INVITE".to_owned()])),
        Cond::Method(re) => Some(finite(re)),
        _ => None,
    })?
}

fn hir(re: &Regex) -> Option<Hir> {
    regex_syntax::Parser::new().parse(re.as_str()).ok()
}

/// Whether a match of `hir` in a text is still a match when more text follows: no
/// assertion other than a start anchor.
fn extends(hir: &Hir) -> bool {
    hir.properties()
        .look_set()
        .remove(Look::Start)
        .remove(Look::StartLF)
        .remove(Look::StartCRLF)
        .is_empty()
}

/// Whether `re` matches every value (values never hold a line break; `nonempty`: and are
/// never empty).
fn universal(re: &Regex, nonempty: bool) -> bool {
    if ["^.*$", ".*$"].contains(&re.as_str().trim()) {
        return true;
    }
    if nonempty && [".+", "^.+", ".+$", "^.+$", ".", "^."].contains(&re.as_str().trim()) {
        return true;
    }
    hir(re).is_some_and(|h| extends(&h)) && re.is_match("")
}

/// Whether every value `b` matches (any value when `b` is `None`), `a` matches too.
/// `whole` is cleared unless `a` matches every value.
fn covered(a: &Regex, b: Option<&Regex>, nonempty: bool, whole: &mut bool) -> bool {
    if universal(a, nonempty) {
        return true;
    }
    *whole = false;
    let Some(b) = b else {
        return false;
    };
    if a.as_str() == b.as_str() {
        return true;
    }
    // Every match of an anchored `b` begins the value with one of a finite set of
    // literals; if `a` matches each literal and nothing after can undo that, `a` matches
    // every value `b` does.
    let (Some(ha), Some(hb)) = (hir(a), hir(b)) else {
        return false;
    };
    if !extends(&ha) || !hb.properties().look_set_prefix().contains(Look::Start) {
        return false;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hb);
    let Some(lits) = seq.literals() else {
        return false;
    };
    !lits.is_empty()
        && lits
            .iter()
            .all(|l| std::str::from_utf8(l.as_bytes()).is_ok_and(|s| a.is_match(s)))
}

/// The strings `re` can match as a whole value, when `re` is anchored at both ends and
/// spells out a finite set (`^(INVITE|MESSAGE)$`).
fn finite(re: &Regex) -> Option<Vec<String>> {
    let h = hir(re)?;
    let p = h.properties();
    if !p.look_set_prefix().contains(Look::Start) || !p.look_set_suffix().contains(Look::End) {
        return None;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&h);
    let lits = seq.literals()?;
    lits.iter()
        .map(|l| {
            if l.is_exact() {
                String::from_utf8(l.as_bytes().to_vec()).ok()
            } else {
                None
            }
        })
        .collect()
}
