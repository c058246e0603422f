//! `[security]`: trusted and allowed sources, flood and overload limits, the secret.

use std::path::PathBuf;

use rollover_proxy::{Cidr, SecurityConfig};
use toml::Spanned;

use crate::raw::RawSecurity;
use crate::{ConfigError, Ctx, SecuritySettings};

pub(crate) fn compile_security(
    cx: &Ctx<'_>,
    raw: &RawSecurity,
) -> Result<SecuritySettings, ConfigError> {
    let d = SecurityConfig::default();
    let list = |v: &Option<Vec<Spanned<String>>>, k: &str| -> Result<Vec<Cidr>, ConfigError> {
        v.iter().flatten().map(|c| cx.cidr(c, k)).collect()
    };
    if let Some(s) = raw.secret.as_ref().filter(|s| s.get_ref().len() < 16) {
        return Err(cx.err(
            s.span(),
            "security.secret",
            "too short: use at least 16 characters (e.g. the output of `openssl rand -hex 32`)",
        ));
    }
    let limits = SecurityConfig {
        trusted: list(&raw.trusted, "security.trusted")?,
        allow: list(&raw.allow, "security.allow")?,
        pike_rate: cx.count(
            &raw.flood_rate,
            "security.flood_rate",
            0,
            1_000_000,
            d.pike_rate as usize,
        )? as u32,
        pike_burst: cx.count(
            &raw.flood_burst,
            "security.flood_burst",
            1,
            1_000_000,
            d.pike_burst as usize,
        )? as u32,
        pike_block: cx.duration(&raw.flood_block, "security.flood_block", d.pike_block)?,
        overload_backlog: cx.count(
            &raw.overload_backlog,
            "security.overload_backlog",
            0,
            1_000_000,
            d.overload_backlog,
        )?,
        retry_after: cx.count(
            &raw.retry_after,
            "security.retry_after",
            0,
            86_400,
            d.retry_after as usize,
        )? as u32,
    };
    Ok(SecuritySettings {
        limits,
        secret: raw.secret.as_ref().map(|s| s.get_ref().clone()),
        secret_file: PathBuf::from(
            raw.secret_file
                .clone()
                .unwrap_or_else(|| "rollover-data/secret".into()),
        ),
    })
}
