//! `[registrar]` and `[store]`: the domains this proxy registers users for, the limits on
//! registrations, and where bindings are kept.

use std::path::PathBuf;

use toml::Spanned;

use crate::raw::{RawAuth, RawRegistrar, RawRoute, RawStore};
use crate::{ConfigError, Ctx};

/// The target that stands for the Request-URI's registered contacts.
pub const LOCATION_TARGET: &str = rollover_proxy::Target::LOCATION;

/// `[auth]`: digest authentication of our users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Whether requests from our users must authenticate; `None`: once users exist.
    pub require: Option<bool>,
    /// How long a nonce is good for.
    pub nonce_ttl: std::time::Duration,
    /// Wrong answers in a row from one source before it gets 403.
    pub max_failures: u32,
    /// How long such a source is refused.
    pub block_time: std::time::Duration,
    /// The digest algorithms offered, preferred first (`SHA-256`, `MD5`).
    pub algorithms: Vec<String>,
}

pub(crate) fn compile_auth(cx: &Ctx<'_>, raw: &RawAuth) -> Result<AuthConfig, ConfigError> {
    let mut algorithms = Vec::new();
    for a in raw.algorithms.iter().flatten() {
        let name = a.get_ref().to_ascii_uppercase();
        if name != "MD5" && name != "SHA-256" {
            return Err(cx.err(
                a.span(),
                "auth.algorithms",
                "expected \"SHA-256\" or \"MD5\"",
            ));
        }
        algorithms.push(name);
    }
    if algorithms.is_empty() {
        if raw.algorithms.is_some() {
            return Err(cx.err(0..0, "auth.algorithms", "name at least one algorithm"));
        }
        algorithms = vec!["SHA-256".into(), "MD5".into()];
    }
    Ok(AuthConfig {
        require: raw.require,
        nonce_ttl: cx.duration(
            &raw.nonce_ttl,
            "auth.nonce_ttl",
            std::time::Duration::from_secs(300),
        )?,
        max_failures: cx.count(&raw.max_failures, "auth.max_failures", 1, 1000, 5)? as u32,
        block_time: cx.duration(
            &raw.block_time,
            "auth.block_time",
            std::time::Duration::from_secs(300),
        )?,
        algorithms,
    })
}

/// `[registrar]`: REGISTER is answered for these domains (and the proxy's own addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarSettings {
    /// The domains, lower case.
    pub domains: Vec<String>,
    /// The shortest registration accepted, in seconds (423 below).
    pub min_expires: u32,
    /// The longest registration granted, in seconds.
    pub max_expires: u32,
    /// The registration time when the phone names none, in seconds.
    pub default_expires: u32,
    /// Contacts per address-of-record.
    pub max_contacts: usize,
}

/// `[store]`: where registrations (and users) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The data directory of the embedded store (`./rollover-data/`).
    pub path: PathBuf,
    /// A shared store's URL (`redis://127.0.0.1:6379/0`), used instead when written.
    pub url: Option<String>,
}

pub(crate) fn compile_registrar(
    cx: &Ctx<'_>,
    raw: Option<&RawRegistrar>,
) -> Result<Option<RegistrarSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let secs = |v: &Option<Spanned<i64>>, k: &str, d: usize| -> Result<u32, ConfigError> {
        Ok(cx.count(v, k, 1, 1 << 30, d)? as u32)
    };
    let mut domains = Vec::new();
    for d in raw.domains.iter().flatten() {
        let name = d.get_ref().trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(['@', ':', ' ', '/']) {
            return Err(cx.err(
                d.span(),
                "registrar.domains",
                "expected a domain name such as \"example.com\"",
            ));
        }
        domains.push(name);
    }
    let s = RegistrarSettings {
        domains,
        min_expires: secs(&raw.min_expires, "registrar.min_expires", 60)?,
        max_expires: secs(&raw.max_expires, "registrar.max_expires", 3600)?,
        default_expires: secs(&raw.default_expires, "registrar.default_expires", 3600)?,
        max_contacts: cx.count(&raw.max_contacts, "registrar.max_contacts", 1, 1000, 10)?,
    };
    if s.max_expires < s.min_expires {
        let span = raw.max_expires.as_ref().map_or(0..0, Spanned::span);
        return Err(cx.err(span, "registrar.max_expires", "below registrar.min_expires"));
    }
    Ok(Some(s))
}

pub(crate) fn compile_store(cx: &Ctx<'_>, raw: &RawStore) -> Result<StoreSettings, ConfigError> {
    if let Some(u) = &raw.url {
        if !u.get_ref().starts_with("redis://") {
            return Err(cx.err(
                u.span(),
                "store.url",
                "expected a redis:// URL (leave it out for the embedded SQLite store)",
            ));
        }
    }
    Ok(StoreSettings {
        path: PathBuf::from(raw.path.clone().unwrap_or_else(|| "rollover-data".into())),
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
    })
}

/// A `location:` target without a `[registrar]` could never call anyone: refused, located.
pub(crate) fn location_needs_registrar(
    cx: &Ctx<'_>,
    routes: &[Spanned<RawRoute>],
) -> Result<(), ConfigError> {
    for (i, r) in routes.iter().enumerate() {
        let r = r.get_ref();
        let lists = r.targets.iter().map(|t| ("targets".to_owned(), t)).chain(
            r.group
                .iter()
                .flatten()
                .enumerate()
                .map(|(g, grp)| (format!("group[{}].targets", g + 1), &grp.targets)),
        );
        for (key, list) in lists {
            for (n, t) in list.iter().enumerate() {
                if t.get_ref().trim() == LOCATION_TARGET {
                    return Err(cx.err(
                        t.span(),
                        &format!("route[{}].{key}[{}]", i + 1, n + 1),
                        "a location: target needs a [registrar] section (its domains)",
                    ));
                }
            }
        }
    }
    Ok(())
}
