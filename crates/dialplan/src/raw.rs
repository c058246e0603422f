//! The configuration file as written, before checking: every value that can be wrong keeps
//! its position so an error can name file, line and key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::RawDuration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    pub registrar: Option<RawRegistrar>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub auth: RawAuth,
    pub script: Option<RawScript>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScript {
    pub file: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub trusted: Option<Vec<Spanned<String>>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<String>,
    pub flood_rate: Option<Spanned<i64>>,
    pub flood_burst: Option<Spanned<i64>>,
    pub flood_block: Option<Spanned<RawDuration>>,
    pub overload_backlog: Option<Spanned<i64>>,
    pub retry_after: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Vec<Spanned<String>>>,
    pub record_route: Option<bool>,
    pub t1: Option<Spanned<RawDuration>>,
    pub t2: Option<Spanned<RawDuration>>,
    pub t4: Option<Spanned<RawDuration>>,
    pub timer_c: Option<Spanned<RawDuration>>,
    pub max_message_size: Option<Spanned<i64>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub no_match: Option<Spanned<i64>>,
    pub no_match_reason: Option<String>,
    pub connection_idle_timeout: Option<Spanned<RawDuration>>,
    pub max_incoming_connections: Option<Spanned<i64>>,
    pub max_outgoing_connections: Option<Spanned<i64>>,
    pub max_connections_per_ip: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<RawDuration>>,
    pub unused_connection_timeout: Option<Spanned<RawDuration>>,
    pub drain_timeout: Option<Spanned<RawDuration>>,
    pub late_answer: Option<Spanned<String>>,
    pub udp_mtu: Option<Spanned<i64>>,
    pub udp_mtu_try: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
    pub linger: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailover {
    pub no_response_timeout: Option<Spanned<RawDuration>>,
    pub ring_timeout: Option<Spanned<RawDuration>>,
    pub on_response: Option<Spanned<String>>,
    pub follow_redirects: Option<bool>,
    pub max_targets: Option<Spanned<i64>>,
    pub reach: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub conditions: RawMatch,
    pub targets: Option<Vec<Spanned<String>>>,
    pub mode: Option<Spanned<String>>,
    pub group: Option<Vec<RawGroup>>,
    pub reject: Option<Spanned<i64>>,
    pub reason: Option<String>,
    #[serde(default)]
    pub failover: RawFailover,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub method: Option<Spanned<String>>,
    pub request_uri: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    pub header: BTreeMap<String, Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub transport: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub targets: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistrar {
    pub domains: Option<Vec<Spanned<String>>>,
    pub min_expires: Option<Spanned<i64>>,
    pub max_expires: Option<Spanned<i64>>,
    pub default_expires: Option<Spanned<i64>>,
    pub max_contacts: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub require: Option<bool>,
    pub nonce_ttl: Option<Spanned<RawDuration>>,
    pub max_failures: Option<Spanned<i64>>,
    pub block_time: Option<Spanned<RawDuration>>,
    pub algorithms: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub path: Option<String>,
    pub url: Option<Spanned<String>>,
}
