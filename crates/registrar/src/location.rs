//! The location service: the registrar's rules over a store, with every address-of-record
//! looked up once cached, so routing a call to a registered user does not touch the store.

use std::collections::HashMap;

use bytes::Bytes;
use rollover_failover::Target;
use rollover_sip::{Message, StatusCode};
use rollover_txn::Peer;
use tracing::{debug, warn};

use crate::binding::Binding;
use crate::rules::{aor_of_register, ok_response, register, Rules};
use crate::store::{Store, StoreError};

/// How many addresses-of-record the cache holds before it starts over (a bound against
/// callers trying many unknown users).
const CACHE_LIMIT: usize = 100_000;

/// Registrations and look-ups over a store.
#[derive(Debug)]
pub struct Location<S> {
    rules: Rules,
    store: S,
    cache: HashMap<String, Vec<Binding>>,
}

impl<S: Store> Location<S> {
    /// The location service with these rules over `store`.
    pub fn new(rules: Rules, store: S) -> Location<S> {
        Location {
            rules,
            store,
            cache: HashMap::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The store (users are read from it directly: `rollover user remove` takes effect at
    /// once).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Processes a REGISTER for one of our domains from `source` at `now` (seconds since
    /// the epoch) and returns the response to send. The bindings are stored before this
    /// returns a 200.
    pub fn handle_register(&mut self, now: u64, req: &Message, source: &Peer) -> Bytes {
        let aor = match aor_of_register(&self.rules, req) {
            Ok(a) => a,
            Err(e) => {
                debug!(%source, "REGISTER refused: {e}");
                return e.response(req);
            }
        };
        let current = match self.bindings(&aor) {
            Ok(b) => b,
            Err(e) => return store_failed(req, &e),
        };
        match register(&self.rules, now, &aor, req, source, &current) {
            Ok(next) => {
                if next != current {
                    if let Err(e) = self.store.save(now, &aor, &next) {
                        // What was cached may now differ from the store: read it again.
                        self.cache.remove(&aor);
                        return store_failed(req, &e);
                    }
                    debug!(aor, bindings = next.len(), %source, "registered");
                    self.cache_insert(aor, next.clone());
                }
                ok_response(req, &next, now)
            }
            Err(e) => {
                debug!(aor, %source, "REGISTER refused: {e}");
                e.response(req)
            }
        }
    }

    /// Every binding of `aor` (expired ones may be among them), from the cache when it
    /// was looked up before.
    pub fn bindings(&mut self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        if let Some(b) = self.cache.get(aor) {
            return Ok(b.clone());
        }
        let b = self.store.load(aor)?;
        self.cache_insert(aor.to_owned(), b.clone());
        Ok(b)
    }

    /// The targets of `aor` at `now`: one group per q value, highest first, the
    /// contacts of a group in the order they registered. Expired contacts are left out.
    pub fn targets(&mut self, aor: &str, now: u64) -> Result<Vec<Vec<Target>>, StoreError> {
        Ok(q_groups(&self.bindings(aor)?, now))
    }

    /// Forgets the cached bindings of `aor` (another node changed them).
    pub fn invalidate(&mut self, aor: &str) {
        self.cache.remove(aor);
    }

    /// Forgets every cached binding.
    pub fn invalidate_all(&mut self) {
        self.cache.clear();
    }

    /// Deletes expired bindings from the store and the cache.
    pub fn purge(&mut self, now: u64) -> Result<usize, StoreError> {
        self.cache.retain(|_, b| {
            b.retain(|x| x.is_alive(now));
            !b.is_empty()
        });
        self.store.purge(now)
    }

    fn cache_insert(&mut self, aor: String, bindings: Vec<Binding>) {
        if self.cache.len() >= CACHE_LIMIT && !self.cache.contains_key(&aor) {
            self.cache.clear();
        }
        self.cache.insert(aor, bindings);
    }
}

fn store_failed(req: &Message, e: &StoreError) -> Bytes {
    warn!("REGISTER answered 500: the store failed: {e}");
    req.reply(StatusCode::SERVER_INTERNAL_ERROR)
        .header("Retry-After", "5")
        .build()
}

/// The live bindings as target groups: q descending, each q one parallel group.
pub fn q_groups(bindings: &[Binding], now: u64) -> Vec<Vec<Target>> {
    let mut live: Vec<&Binding> = bindings.iter().filter(|b| b.is_alive(now)).collect();
    live.sort_by_key(|b| std::cmp::Reverse(b.q)); // stable: registration order within a q
    let mut groups: Vec<(u16, Vec<Target>)> = Vec::new();
    for b in live {
        let Ok(t) = Target::parse(&b.contact) else {
            debug!(
                contact = b.contact,
                "a registered contact that cannot be called"
            );
            continue;
        };
        match groups.last_mut() {
            Some((q, g)) if *q == b.q => g.push(t),
            _ => groups.push((b.q, vec![t])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}
