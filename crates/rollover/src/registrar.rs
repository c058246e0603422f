//! The registrar and location service in the running proxy: REGISTERs for our domains are
//! answered at the front door (after the allow list and flood control), and `location:`
//! targets of the dial plan expand into the Request-URI's registered contacts.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use bytes::Bytes;
use rollover_dialplan::{
    is_location_target, AuthConfig, DialPlan, RegistrarSettings, StoreSettings,
};
use rollover_proxy::{
    CallView, Edits, Failed, Failure, RouteDecision, RoutePolicy, SecurityConfig, Target,
    TargetPlan,
};
use rollover_registrar::auth::{self, Algorithm, AuthSettings, Digest, Kind, Verdict};
use rollover_registrar::{
    aor_key, Binding, Location, RedisStore, Rules, SqliteStore, Store, CHANGES_CHANNEL,
};
use rollover_script::Routing;
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
    location: Location<Box<dyn Store + Send>>,
    /// The Redis client, to hear other nodes' changes.
    redis: Option<redis::Client>,
    /// The addresses the proxy listens on and advertises: a REGISTER to one is ours.
    local: Vec<SocketAddr>,
    digest: Digest,
    /// `[auth] require`, when written.
    require: Option<bool>,
    /// Whether the store has users (what `require` defaults to).
    has_users: bool,
    /// Trusted sources: they need not authenticate and may relay anywhere.
    security: SecurityConfig,
}

/// What the front door hears from the registrar about one message.
pub enum Door {
    /// Not the registrar's business: the proxy routes it.
    Pass,
    /// Answer with this response, statelessly.
    Reply(Bytes),
    /// Drop it (the ACK of one of our stateless answers).
    Drop,
}

impl Registrar {
    /// Opens the store and the location service.
    pub fn open(
        settings: &RegistrarSettings,
        store: &StoreSettings,
        auth_cfg: &AuthConfig,
        secret: &[u8],
        security: SecurityConfig,
        local: Vec<SocketAddr>,
        seed: u64,
    ) -> anyhow::Result<Registrar> {
        let (mut db, redis) = open_store(store)?;
        let users = db.users().context("reading the users")?.len();
        match &store.url {
            Some(url) => info!(domains = ?settings.domains, "registrar: bindings kept in {url}"),
            None => info!(
                domains = ?settings.domains,
                "registrar: bindings kept in {}",
                store.path.join(rollover_registrar::SQLITE_FILE).display()
            ),
        }
        let settings_auth = AuthSettings {
            nonce_ttl: auth_cfg.nonce_ttl.as_secs().max(1),
            max_failures: auth_cfg.max_failures,
            block_for: auth_cfg.block_time.as_secs(),
            algorithms: auth_cfg
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::parse(a))
                .collect(),
        };
        let r = Registrar {
            location: Location::new(rules(settings), db),
            redis,
            local,
            digest: Digest::new(secret, settings_auth, seed),
            require: auth_cfg.require,
            has_users: users > 0,
            security,
        };
        info!(
            users,
            "auth: {}",
            if r.require_auth() {
                "our users must authenticate (digest)"
            } else {
                "off (no users yet, or [auth] require = false)"
            }
        );
        Ok(r)
    }

    /// With a shared store, a thread that hears the other nodes' changes and hands each
    /// changed address-of-record to `forget` (`None`: forget everything, after a
    /// reconnection may have missed some). It ends when `forget` returns false.
    pub fn watch_changes(&self, forget: impl Fn(Option<String>) -> bool + Send + 'static) {
        let Some(client) = self.redis.clone() else {
            return;
        };
        std::thread::spawn(move || loop {
            match listen(&client, &forget) {
                Ok(()) => return,
                Err(e) => {
                    warn!("listening for binding changes: {e}; again in 1 s");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if !forget(None) {
                        return;
                    }
                }
            }
        });
    }

    /// Forgets cached bindings: of one address-of-record, or all.
    pub fn forget(&mut self, aor: Option<&str>) {
        match aor {
            Some(a) => self.location.invalidate(a),
            None => self.location.invalidate_all(),
        }
    }

    /// Whether requests from our users must authenticate: `[auth] require`, else once
    /// users exist.
    fn require_auth(&self) -> bool {
        self.require.unwrap_or(self.has_users)
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

    /// The front door's registrar checks for a message from `source` (RFC 3261 §10.3,
    /// §22): REGISTERs for us are authenticated and answered; other new requests from our
    /// users must authenticate (407); a stranger may reach only our domains (no open relay).
    /// Call it for the messages [`screen`] leaves to it.
    pub fn admit(&mut self, msg: &Message, source: &Peer) -> Door {
        let Some(method) = msg.method() else {
            return Door::Pass;
        };
        let now = unix_now();
        let Some(Ok(uri)) = msg.request_uri() else {
            return Door::Pass;
        };
        let to_us = uri.as_sip().is_some_and(|u| self.is_local_host(&u.host));
        // The front door checked From and To for shape only: what is read here for a
        // decision must decode, or the request is refused (never let through unchecked).
        if *method == Method::Register && to_us {
            if msg.to_header().is_err() {
                return Door::Reply(auth::bad_address(msg, "To"));
            }
            if self.require_auth() {
                if let Some(refusal) = self.authenticate_register(now, msg, source) {
                    return Door::Reply(refusal);
                }
            }
            return Door::Reply(self.location.handle_register(now, msg, source));
        }
        if self.security.is_trusted(source.addr.ip()) {
            return Door::Pass;
        }
        // A request addressed to the proxy itself (an OPTIONS ping) is the core's.
        let to_proxy = uri.as_sip().is_some_and(|u| u.user.is_none()) && to_us;
        let from = match msg.from_header() {
            Ok(f) => f,
            Err(_) => return Door::Reply(auth::bad_address(msg, "From")),
        };
        let from_sip = from.uri.as_sip().cloned();
        let from_us = from_sip
            .as_ref()
            .is_some_and(|f| self.is_local_host(&f.host));
        if from_us && self.require_auth() && !to_proxy {
            let (user, realm) = self.user_and_realm(from_sip.as_ref());
            return match self.check(now, msg, Kind::Proxy, &realm, source) {
                Verdict::Ok(u) if u.username == user => Door::Pass,
                Verdict::Ok(u) => {
                    info!(%source, "{} authenticated but sent as {user}: 403", u.username);
                    Door::Reply(auth::forbidden(msg))
                }
                Verdict::Challenge { stale } => {
                    Door::Reply(self.digest.challenge(now, msg, Kind::Proxy, &realm, stale))
                }
                Verdict::Forbidden => Door::Reply(auth::forbidden(msg)),
            };
        }
        if !to_us {
            // RFC 3261 §16 leaves it to policy; ours: no open relay for strangers. (Logged
            // at debug: a stranger must not be able to flood the log.)
            debug!(%source, call_id = msg.call_id().unwrap_or("-"), "refused with 403: a stranger relaying to a domain not ours");
            return Door::Reply(auth::forbidden(msg));
        }
        Door::Pass
    }

    /// The user name and realm of a URI of ours: its domain, or the first domain when it
    /// names one of our addresses.
    fn user_and_realm(&self, uri: Option<&rollover_sip::SipUri<'_>>) -> (String, String) {
        let user = uri.and_then(|u| u.user).unwrap_or_default().to_owned();
        let realm = match uri.map(|u| &u.host) {
            Some(Host::Domain(d)) => d.to_ascii_lowercase(),
            _ => self
                .location
                .rules()
                .domains
                .first()
                .cloned()
                .unwrap_or_default(),
        };
        (user, realm)
    }

    /// Checks the credentials of `msg` for `realm` against the users in the store, and
    /// claims the nonce count in the store (shared by every node on a Redis store, so a
    /// request replayed to another node is challenged there too).
    fn check(
        &mut self,
        now: u64,
        msg: &Message,
        kind: Kind,
        realm: &str,
        source: &Peer,
    ) -> Verdict {
        // Both closures reach the store, one after the other.
        let store = std::cell::RefCell::new(self.location.store_mut());
        let found = |u: &str, r: &str| match store.borrow_mut().user(u, r) {
            Ok(u) => u,
            Err(e) => {
                warn!("reading a user failed: {e}");
                None
            }
        };
        let claim = |nonce: &str, nc: u32, ttl: u64| {
            match store.borrow_mut().claim_nonce(nonce, nc, ttl) {
                Ok(won) => won,
                Err(e) => {
                    // The store is down: the answer was right and this node's own counts
                    // still refuse a replay to it; refusing every authenticated request
                    // would stop our users' calls while it is down.
                    warn!("recording a nonce count in the store failed, accepted on this node's count: {e}");
                    true
                }
            }
        };
        self.digest
            .check_shared(now, msg, kind, realm, source.addr.ip(), found, claim)
    }

    /// RFC 3261 §10.3 steps 3 and 4: the REGISTER is from a user, and that user is the
    /// address-of-record's own. The refusal to send, if any.
    fn authenticate_register(&mut self, now: u64, msg: &Message, source: &Peer) -> Option<Bytes> {
        let to = msg.to_header().ok();
        let to_sip = to.as_ref().and_then(|t| t.uri.as_sip().cloned());
        let (user, realm) = self.user_and_realm(to_sip.as_ref());
        match self.check(now, msg, Kind::Registrar, &realm, source) {
            Verdict::Ok(u) if u.username == user && u.realm == realm => None,
            Verdict::Ok(u) => {
                info!(%source, "{} may not register {user}@{realm}: 403", u.username);
                Some(auth::forbidden(msg))
            }
            Verdict::Challenge { stale } => {
                Some(
                    self.digest
                        .challenge(now, msg, Kind::Registrar, &realm, stale),
                )
            }
            Verdict::Forbidden => Some(auth::forbidden(msg)),
        }
    }

    /// Purges expired bindings.
    pub fn purge(&mut self) {
        let now = unix_now();
        self.digest.purge(now);
        match self.location.store_mut().users() {
            Ok(u) => self.has_users = !u.is_empty(),
            Err(e) => warn!("reading the users failed: {e}"),
        }
        match self.location.purge(now) {
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

    /// The live binding a branch to `target` was expanded from, for a call to `request`.
    fn binding_for(&mut self, request: &Message, target: &Target) -> Option<Binding> {
        let aor = self.aor_of(request)?;
        let now = unix_now();
        self.location
            .bindings(&aor)
            .ok()?
            .into_iter()
            .find(|b| b.contact == target.uri && b.is_alive(now))
    }

    /// Where a branch to a registered contact goes (RFC 3327, RFC 5626 §5.3 in spirit): the
    /// first hop of its Path; else the flow its REGISTER came on, when that is not where
    /// its Contact points (a phone behind NAT); else `None`, the Contact itself.
    fn hop(&mut self, request: &Message, target: &Target) -> Option<Target> {
        let b = self.binding_for(request, target)?;
        if let Some(first) = b.path.first() {
            let na = rollover_sip::NameAddr::parse(first).ok()?;
            return Target::parse(na.uri_str).ok();
        }
        let flow = b.received?;
        let contact = target.sip_uri()?;
        let port = contact
            .port
            .unwrap_or(rollover_proxy::default_port(target.transport));
        let same = match contact.host {
            Host::V4(ip) => IpAddr::V4(ip) == flow.addr.ip(),
            Host::V6(ip) => IpAddr::V6(ip) == flow.addr.ip(),
            Host::Domain(_) => false,
        };
        if same && port == flow.addr.port() && target.transport == flow.transport {
            return None;
        }
        let mut uri = format!("sip:{}", flow.addr);
        if flow.transport != rollover_txn::Transport::Udp {
            uri.push_str(&format!(
                ";transport={}",
                flow.transport.as_str().to_ascii_lowercase()
            ));
        }
        Some(Target {
            uri,
            transport: flow.transport,
        })
    }

    /// The Route entries a branch to a registered contact carries: its Path.
    fn path(&mut self, request: &Message, target: &Target) -> Vec<String> {
        self.binding_for(request, target)
            .map(|b| b.path)
            .unwrap_or_default()
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

/// What the front door decides about `msg` without the registrar's state (no lock): a
/// response, an in-dialog request, a CANCEL pass; the ACK of one of our stateless answers
/// is dropped. `None`: a new request, for [`Registrar::admit`].
pub fn screen(msg: &Message) -> Option<Door> {
    let Some(method) = msg.method() else {
        return Some(Door::Pass);
    };
    if *method == Method::Ack {
        // The ACK of a 401/407/403 we sent statelessly ends here.
        return Some(match msg.to_tag() {
            Some(t) if t.starts_with(rollover_registrar::rules::REPLY_TAG_PREFIX) => Door::Drop,
            _ => Door::Pass,
        });
    }
    if msg.to_tag().is_some() || *method == Method::Cancel {
        return Some(Door::Pass);
    }
    None
}

/// A registrar shared by the workers: one cache, one store connection, one set of nonce
/// counts and failure counts (a replay or a guess must not escape by landing on another
/// worker). Held only for a look-up or a commit.
pub type Shared = Arc<Mutex<Registrar>>;

/// Locks the shared registrar (a worker that panicked holding it leaves it usable).
pub fn lock(r: &Shared) -> MutexGuard<'_, Registrar> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The routing policy (rules or a script), with `location:` targets expanded by the
/// registrar when there is one, and registered phones reached on their flow or Path.
pub struct Routes {
    /// The rules or the script (replaced on reload).
    pub inner: Routing<DialPlan>,
    /// The registrar, when `[registrar]` is configured.
    pub registrar: Option<Shared>,
    /// The contact URIs this worker expanded `location:` into lately: a branch to another
    /// target needs no look-up (and no lock) for its hop or Path.
    pub expanded: HashSet<String>,
}

/// How many contact URIs [`Routes::expanded`] holds before it starts over.
const EXPANDED_LIMIT: usize = 10_000;

impl Routes {
    /// `groups` with each `location:` placeholder expanded for `request`.
    fn expand(
        &mut self,
        request: &Message,
        groups: Vec<Vec<Target>>,
        rule: &str,
    ) -> Vec<Vec<Target>> {
        let call_id = request.call_id().unwrap_or("-");
        match &self.registrar {
            Some(r) => {
                let out = {
                    let mut r = lock(r);
                    let aor = r.aor_of(request);
                    r.expand(aor.as_deref(), groups, call_id)
                };
                if self.expanded.len() > EXPANDED_LIMIT {
                    self.expanded.clear();
                }
                // (Static targets among them cost one look-up each, no more.)
                self.expanded
                    .extend(out.iter().flatten().map(|t| t.uri.clone()));
                out
            }
            None => {
                warn!(
                    call_id,
                    "rule {rule:?}: location: target without a [registrar]"
                );
                groups
                    .into_iter()
                    .map(|g| {
                        g.into_iter()
                            .filter(|t| !is_location_target(t))
                            .collect::<Vec<_>>()
                    })
                    .filter(|g| !g.is_empty())
                    .collect()
            }
        }
    }

    /// The decision with `location:` expanded: 480 when nothing is left (RFC 3261 §10:
    /// the user has no current binding).
    fn located(&mut self, request: &Message, decision: RouteDecision) -> RouteDecision {
        let RouteDecision::Targets { plan, policy, rule } = decision else {
            return decision;
        };
        if !plan.groups.iter().flatten().any(is_location_target) {
            return RouteDecision::Targets { plan, policy, rule };
        }
        let groups = self.expand(request, plan.groups, &rule);
        if groups.is_empty() {
            return RouteDecision::Reject {
                status: StatusCode::TEMPORARILY_UNAVAILABLE,
                reason: StatusCode::TEMPORARILY_UNAVAILABLE.reason().into(),
                rule,
            };
        }
        RouteDecision::Targets {
            plan: TargetPlan { groups },
            policy,
            rule,
        }
    }
}

impl RoutePolicy for Routes {
    fn on_request(&mut self, request: &Message, source: &Peer) -> RouteDecision {
        let d = self.inner.on_request(request, source);
        self.located(request, d)
    }

    fn on_route(&mut self, call: CallView<'_>) -> RouteDecision {
        let d = self.inner.on_route(call);
        self.located(call.request, d)
    }

    fn on_release(&mut self, key: u64) {
        self.inner.on_release(key);
    }

    fn branch_hop(&mut self, call: CallView<'_>, target: &Target) -> Option<Target> {
        if !self.expanded.contains(&target.uri) {
            return None;
        }
        let hop = lock(self.registrar.as_ref()?).hop(call.request, target);
        if let Some(h) = &hop {
            debug!(call_id = call.call_id, "{target}: sent by way of {h}");
        }
        hop
    }

    fn on_branch(&mut self, call: CallView<'_>, target: &Target, edits: &mut Edits) {
        let mine = self.expanded.contains(&target.uri);
        if let Some(r) = self.registrar.as_ref().filter(|_| mine) {
            for p in lock(r).path(call.request, target) {
                edits.append_header("Route", &p);
            }
        }
        if let Some(r) = &self.registrar {
            consume_credentials(call.request, &lock(r), edits);
        }
        self.inner.on_branch(call, target, edits);
    }

    fn on_reply(
        &mut self,
        call: CallView<'_>,
        target: &Target,
        reply: &Message,
        edits: &mut Edits,
    ) {
        self.inner.on_reply(call, target, reply, edits);
    }

    fn on_failure(&mut self, call: CallView<'_>, failed: Failed<'_>) -> Failure {
        match self.inner.on_failure(call, failed) {
            // A failure route may name `location:` too.
            Failure::Retry(plan, policy)
                if plan.groups.iter().flatten().any(is_location_target) =>
            {
                let groups = self.expand(call.request, plan.groups, "failure route");
                if groups.is_empty() {
                    Failure::Reply
                } else {
                    Failure::Retry(TargetPlan { groups }, policy)
                }
            }
            other => other,
        }
    }
}

/// Our own realms' Proxy-Authorization is not passed on (Kamailio's
/// `consume_credentials`): the next hop has no use for it. Other realms' stay (§22.3).
fn consume_credentials(request: &Message, r: &Registrar, edits: &mut Edits) {
    let name = rollover_sip::HeaderName::ProxyAuthorization;
    if request.header(name).is_none() {
        return;
    }
    let values: Vec<&str> = request
        .headers_named(name)
        .filter_map(|h| request.value_str(h).ok())
        .collect();
    let ours = |v: &str| {
        rollover_sip::Auth::parse(v)
            .and_then(|a| {
                a.param("realm")
                    .map(|x| r.location.rules().is_local_domain(&x))
            })
            .unwrap_or(false)
    };
    if !values.iter().any(|v| ours(v)) {
        return;
    }
    edits.remove_header("Proxy-Authorization");
    for v in values.into_iter().filter(|v| !ours(v)) {
        edits.append_header("Proxy-Authorization", v);
    }
}

/// Subscribes to the change channel and hands each message to `forget` until it returns
/// false (`Ok`) or the connection fails (`Err`).
fn listen(
    client: &redis::Client,
    forget: &impl Fn(Option<String>) -> bool,
) -> redis::RedisResult<()> {
    let mut con = client.get_connection()?;
    let mut ps = con.as_pubsub();
    ps.subscribe(CHANGES_CHANNEL)?;
    // Changes made while we were not listening are unknown: forget everything once.
    if !forget(None) {
        return Ok(());
    }
    loop {
        let msg = ps.get_message()?;
        let aor: String = msg.get_payload()?;
        if !forget(Some(aor)) {
            return Ok(());
        }
    }
}

/// Opens the store `[store]` names: Redis when `url` is written, else SQLite in `path`.
pub fn open_store(
    store: &StoreSettings,
) -> anyhow::Result<(Box<dyn Store + Send>, Option<redis::Client>)> {
    match &store.url {
        Some(url) => {
            let r = RedisStore::open(url).with_context(|| format!("connecting to {url}"))?;
            let client = r.client().clone();
            Ok((Box::new(r), Some(client)))
        }
        None => {
            let db = SqliteStore::open(&store.path)
                .with_context(|| format!("opening the store in {}", store.path.display()))?;
            Ok((Box::new(db), None))
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
