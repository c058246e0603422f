//! The registrar and location service in the running proxy: REGISTERs for our domains are
//! answered at the front door (after the allow list and flood control), and `location:`
//! targets of the dial plan expand into the Request-URI's registered contacts.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use rollover_dialplan::{is_location_target, DialPlan, RegistrarSettings, StoreSettings};
use rollover_proxy::{RouteDecision, RoutePolicy, Router};
use rollover_registrar::{aor_key, Location, Rules, SqliteStore};
use rollover_sip::{Host, Message, Method, StatusCode};
use rollover_txn::Peer;
use tracing::{debug, info, warn};

/// Seconds since the Unix epoch: registrations are kept in wall-clock time.
pub fn unix_now() -> u64 {
    #[allow(clippy::disallowed_methods)] // the binary owns the clock
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The registrar of a running proxy: the location service and what counts as local.
pub struct Registrar {
    location: Location<SqliteStore>,
    /// The addresses the proxy listens on and advertises: a REGISTER to one is ours.
    local: Vec<SocketAddr>,
}

impl Registrar {
    /// Opens the store and the location service.
    pub fn open(
        settings: &RegistrarSettings,
        store: &StoreSettings,
        local: Vec<SocketAddr>,
    ) -> anyhow::Result<Registrar> {
        if store.url.is_some() {
            anyhow::bail!(
                "[store] url: this build keeps registrations in SQLite only; leave url out"
            );
        }
        let db = SqliteStore::open(&store.path)
            .with_context(|| format!("opening the store in {}", store.path.display()))?;
        info!(
            domains = ?settings.domains,
            "registrar: bindings kept in {}",
            store.path.join(rollover_registrar::SQLITE_FILE).display()
        );
        Ok(Registrar {
            location: Location::new(rules(settings), db),
            local,
        })
    }

    /// Whether `host` names us: one of the domains or one of our addresses.
    fn is_local_host(&self, host: &Host<'_>) -> bool {
        match host {
            Host::Domain(d) => self.location.rules().is_local_domain(d),
            Host::V4(ip) => self.is_our_ip(IpAddr::V4(*ip)),
            Host::V6(ip) => self.is_our_ip(IpAddr::V6(*ip)),
        }
    }

    fn is_our_ip(&self, ip: IpAddr) -> bool {
        self.local
            .iter()
            .any(|a| a.ip() == ip || (a.ip().is_unspecified() && ip.is_loopback()))
    }

    /// The response to a REGISTER, when it is for us (its Request-URI names one of our
    /// domains or addresses); `None` lets the proxy relay it.
    pub fn handle(&mut self, msg: &Message, source: &Peer) -> Option<Bytes> {
        if msg.method() != Some(&Method::Register) || msg.to_tag().is_some() {
            return None;
        }
        let uri = msg.request_uri()?.ok()?;
        let sip = uri.as_sip()?;
        if !self.is_local_host(&sip.host) {
            return None;
        }
        Some(self.location.handle_register(unix_now(), msg, source))
    }

    /// Purges expired bindings.
    pub fn purge(&mut self) {
        match self.location.purge(unix_now()) {
            Ok(0) => {}
            Ok(n) => debug!("purged {n} expired binding(s)"),
            Err(e) => warn!("purging expired bindings failed: {e}"),
        }
    }

    /// The address-of-record a request to `uri` is for: its own key, or, when it names one
    /// of our addresses, the same user in our first domain.
    fn aor_of(&self, request: &Message) -> Option<String> {
        let uri = request.request_uri()?.ok()?;
        let sip = uri.as_sip()?;
        let domains = &self.location.rules().domains;
        match (&sip.host, domains.first()) {
            (Host::Domain(_), _) | (_, None) => aor_key(&uri),
            (h, Some(d)) if self.is_local_host(h) => Some(format!("sip:{}@{d}", sip.user?)),
            _ => aor_key(&uri),
        }
    }

    /// Replaces each `location:` placeholder of `groups` by the contacts of `aor`, one
    /// group per q value, highest first; targets written next to it in a parallel group
    /// join the first q group.
    fn expand(
        &mut self,
        aor: Option<&str>,
        groups: Vec<Vec<rollover_proxy::Target>>,
        call_id: &str,
    ) -> Vec<Vec<rollover_proxy::Target>> {
        let mut out = Vec::new();
        for g in groups {
            if !g.iter().any(is_location_target) {
                out.push(g);
                continue;
            }
            let others: Vec<_> = g.into_iter().filter(|t| !is_location_target(t)).collect();
            let found = match aor.map(|a| self.location.targets(a, unix_now())) {
                Some(Ok(q)) => q,
                Some(Err(e)) => {
                    warn!(call_id, "location look-up failed: {e}");
                    Vec::new()
                }
                None => Vec::new(),
            };
            debug!(call_id, aor, groups = found.len(), "location: expanded");
            let mut found = found.into_iter();
            match found.next() {
                Some(mut first) => {
                    first.extend(others);
                    out.push(first);
                    out.extend(found);
                }
                None if !others.is_empty() => out.push(others),
                None => {}
            }
        }
        out
    }
}

/// The dial plan, with `location:` targets expanded by the registrar when there is one.
pub struct Routes {
    /// The dial plan (replaced on reload).
    pub plan: DialPlan,
    /// The registrar, when `[registrar]` is configured.
    pub registrar: Option<Registrar>,
}

impl RoutePolicy for Routes {
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision {
        let decision = self.plan.route(request, source);
        let RouteDecision::Targets { plan, policy, rule } = decision else {
            return decision;
        };
        if !plan.groups.iter().flatten().any(is_location_target) {
            return RouteDecision::Targets { plan, policy, rule };
        }
        let call_id = request.call_id().unwrap_or("-");
        let groups = match &mut self.registrar {
            Some(r) => {
                let aor = r.aor_of(request);
                r.expand(aor.as_deref(), plan.groups, call_id)
            }
            None => {
                warn!(
                    call_id,
                    "rule {rule:?}: location: target without a [registrar]"
                );
                plan.groups
                    .into_iter()
                    .map(|g| {
                        g.into_iter()
                            .filter(|t| !is_location_target(t))
                            .collect::<Vec<_>>()
                    })
                    .filter(|g| !g.is_empty())
                    .collect()
            }
        };
        if groups.is_empty() {
            // RFC 3261 §10: the user has no current binding.
            return RouteDecision::Reject {
                status: StatusCode::TEMPORARILY_UNAVAILABLE,
                reason: StatusCode::TEMPORARILY_UNAVAILABLE.reason().into(),
                rule,
            };
        }
        RouteDecision::Targets {
            plan: rollover_proxy::TargetPlan { groups },
            policy,
            rule,
        }
    }
}

/// The registrar's rules from the settings.
fn rules(s: &RegistrarSettings) -> Rules {
    Rules {
        domains: s.domains.clone(),
        min_expires: s.min_expires,
        max_expires: s.max_expires,
        default_expires: s.default_expires,
        max_contacts: s.max_contacts,
    }
}
