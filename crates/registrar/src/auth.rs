//! Digest authentication of requests (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and SHA-256
//! with `qop=auth`, without IO or clock.
//!
//! Nonces are stateless: the time they were made and an HMAC over it and the realm, so any
//! node holding the secret can check one, and a restart forgets nothing that matters.
//! What is kept: the highest nonce count seen for each nonce still valid (a replayed
//! request is challenged again; [`Digest::check_shared`] also claims each count where
//! every node sees it, a shared store), and the wrong answers per source address (after
//! `max_failures` in a row the source gets 403 until `block_for` has passed).
//!
//! ```text
//!   request ─▶ Digest::check(now, req, kind, realm, source, users)
//!               ├─ Verdict::Ok(user)        relay / register
//!               ├─ Verdict::Challenge{stale} ─▶ Digest::challenge ─▶ 401 / 407
//!               └─ Verdict::Forbidden        ─▶ 403 (blocked source)
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use bytes::Bytes;
use md5::Md5;
use ring::hmac;
use rollover_sip::{Auth, HeaderName, Message, StatusCode};
use sha2::{Digest as _, Sha256};
use tracing::debug;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5` (RFC 2617).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The name in challenges.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses a name (case-insensitive); `None` for one we do not do.
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hash(self, text: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(text.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(text.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user and the hashes of their password (`H(username:realm:password)`), never the
/// password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (`alice`).
    pub username: String,
    /// The realm, the user's domain (`example.com`).
    pub realm: String,
    /// HA1 with MD5.
    pub ha1_md5: String,
    /// HA1 with SHA-256.
    pub ha1_sha256: String,
}

impl User {
    /// The user with the hashes of `password`.
    pub fn new(username: &str, realm: &str, password: &str) -> User {
        let a1 = format!("{username}:{realm}:{password}");
        User {
            username: username.to_owned(),
            realm: realm.to_owned(),
            ha1_md5: Algorithm::Md5.hash(&a1),
            ha1_sha256: Algorithm::Sha256.hash(&a1),
        }
    }

    fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// The limits of digest authentication, from `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// How long a nonce is good for, in seconds; then `stale=true`.
    pub nonce_ttl: u64,
    /// Wrong answers in a row from one source before it is blocked.
    pub max_failures: u32,
    /// How long a blocked source gets 403, in seconds.
    pub block_for: u64,
    /// The algorithms offered, preferred first (one challenge each, RFC 8760 §2.4).
    pub algorithms: Vec<Algorithm>,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            nonce_ttl: 300,
            max_failures: 5,
            block_for: 300,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }
}

/// Which challenge a request gets: 401 from a registrar, 407 from a proxy (§22.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `WWW-Authenticate` / `Authorization`, 401.
    Registrar,
    /// `Proxy-Authenticate` / `Proxy-Authorization`, 407.
    Proxy,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right: the request is from this user.
    Ok(User),
    /// No usable credentials, a wrong answer, a replay or an expired nonce: challenge
    /// (with `stale=true` when only the nonce was too old).
    Challenge {
        /// The nonce expired but the answer was right: the phone retries without asking
        /// its user (RFC 7616 §3.3).
        stale: bool,
    },
    /// The source gave too many wrong answers: 403 until its block ends.
    Forbidden,
}

/// How many nonce counts and failing sources are remembered at most.
const TABLE_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    nc: u32,
    until: u64,
    txn: u64,
}

/// A request's transaction (Call-ID, CSeq, top Via branch), hashed: a retransmission has
/// the same.
fn txn_key(req: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.call_id().ok().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    req.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: u64,
}

/// The digest verifier.
pub struct Digest {
    key: hmac::Key,
    settings: AuthSettings,
    /// Makes every nonce unique, even two in the same second for the same realm (a phone
    /// starts its nonce count at 1 on each).
    next_salt: u64,
    /// Per nonce: the highest count seen, the nonce's expiry, and the transaction that
    /// used that count (its retransmissions carry the same count and are no replay).
    counts: HashMap<String, Count>,
    /// The nonces in `counts` in the order they were first used, with their expiry:
    /// expired ones are dropped from the front as new ones come, at no cost per request.
    order: VecDeque<(u64, String)>,
    /// Nonces made before this time and not in `counts` were forgotten to keep the table
    /// bounded: their use gets `stale=true` (a fresh nonce), never acceptance, so
    /// forgetting a count never lets a replay through.
    floor: u64,
    /// Most nonce counts (and failing sources) remembered.
    limit: usize,
    failures: HashMap<IpAddr, Failures>,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("settings", &self.settings)
            .field("counts", &self.counts.len())
            .field("failures", &self.failures.len())
            .finish()
    }
}

impl Digest {
    /// A verifier whose nonces are signed with `secret`; `seed` starts the salt that
    /// makes each nonce unique (give each process a different one).
    pub fn new(secret: &[u8], settings: AuthSettings, seed: u64) -> Digest {
        Digest {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            settings,
            next_salt: seed,
            counts: HashMap::new(),
            order: VecDeque::new(),
            floor: 0,
            limit: TABLE_LIMIT,
            failures: HashMap::new(),
        }
    }

    /// The same with a smaller table, to test what happens when it is full.
    #[cfg(test)]
    pub(crate) fn with_limit(mut self, limit: usize) -> Digest {
        self.limit = limit;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// A new nonce made at `now` for `realm`: 16 hex digits of time, 16 of salt, 32 of
    /// HMAC over them and the realm.
    pub fn nonce(&mut self, now: u64, realm: &str) -> String {
        let salt = self.next_salt;
        self.next_salt = self.next_salt.wrapping_add(0x9e37_79b9_7f4a_7c15);
        format!("{now:016x}{salt:016x}{}", self.mac(now, salt, realm))
    }

    fn mac(&self, at: u64, salt: u64, realm: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"rollover digest nonce\0");
        ctx.update(&at.to_be_bytes());
        ctx.update(&salt.to_be_bytes());
        ctx.update(realm.as_bytes());
        hex(ctx.sign().as_ref().get(..16).unwrap_or_default())
    }

    /// When a nonce we made for `realm` was made; `None` for a forged or foreign one.
    fn nonce_time(&self, nonce: &str, realm: &str) -> Option<u64> {
        let (t, salt, mac) = (nonce.get(..16)?, nonce.get(16..32)?, nonce.get(32..)?);
        let at = u64::from_str_radix(t, 16).ok()?;
        let salt = u64::from_str_radix(salt, 16).ok()?;
        let want = self.mac(at, salt, realm);
        let same = want.len() == mac.len()
            && want
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then_some(at)
    }

    /// Whether `source` is blocked at `now`.
    pub fn is_blocked(&self, now: u64, source: IpAddr) -> bool {
        self.failures
            .get(&source)
            .is_some_and(|f| f.blocked_until > now)
    }

    /// Checks the credentials `req` carries for `realm` (RFC 3261 §22.4, RFC 7616 §3.4).
    /// `users` finds a user by name and realm. The nonce counts are this verifier's own.
    pub fn check(
        &mut self,
        now: u64,
        req: &Message,
        kind: Kind,
        realm: &str,
        source: IpAddr,
        users: impl FnOnce(&str, &str) -> Option<User>,
    ) -> Verdict {
        self.check_shared(now, req, kind, realm, source, users, |_, _, _| true)
    }

    /// [`Digest::check`], the nonce count also claimed where every node sharing the
    /// secret sees it: `claim(nonce, nc, ttl)` is asked once this verifier found the
    /// answer right and the count new (not for a retransmission), and returns false when
    /// another node saw that count or a higher one; the request is then a replay and is
    /// challenged again.
    #[allow(clippy::too_many_arguments)] // `check`'s, and the shared half of its state
    pub fn check_shared(
        &mut self,
        now: u64,
        req: &Message,
        kind: Kind,
        realm: &str,
        source: IpAddr,
        users: impl FnOnce(&str, &str) -> Option<User>,
        claim: impl FnOnce(&str, u32, u64) -> bool,
    ) -> Verdict {
        if self.is_blocked(now, source) {
            return Verdict::Forbidden;
        }
        let header = match kind {
            Kind::Registrar => HeaderName::Authorization,
            Kind::Proxy => HeaderName::ProxyAuthorization,
        };
        let creds = req.auths(header).filter_map(Result::ok).find(|a| {
            a.scheme.eq_ignore_ascii_case("Digest")
                && a.param("realm")
                    .is_some_and(|r| r.eq_ignore_ascii_case(realm))
        });
        let Some(creds) = creds else {
            debug!(%source, realm, "no credentials for the realm: challenge");
            return Verdict::Challenge { stale: false };
        };
        let Some(answer) = Answer::of(&creds) else {
            debug!(%source, "credentials without qop=auth, a field or a known algorithm: challenge");
            return Verdict::Challenge { stale: false };
        };
        let Some(made) = self.nonce_time(&answer.nonce, realm) else {
            // Not a nonce of ours (or of another secret): a fresh challenge.
            debug!(%source, nonce = answer.nonce, "not a nonce of ours: challenge");
            return Verdict::Challenge { stale: false };
        };
        let method = req.method().map_or("", |m| m.as_str());
        let user = users(&answer.username, realm);
        let right = user.as_ref().is_some_and(|u| {
            let ha2 = answer.alg.hash(&format!("{method}:{}", answer.uri));
            let want = answer.alg.hash(&format!(
                "{}:{}:{}:{}:auth:{ha2}",
                u.ha1(answer.alg),
                answer.nonce,
                answer.nc_text,
                answer.cnonce
            ));
            want.eq_ignore_ascii_case(&answer.response)
        });
        if !right {
            debug!(%source, username = answer.username, "wrong digest answer");
            return self.failed(now, source);
        }
        let expires = made.saturating_add(self.settings.nonce_ttl);
        if expires <= now || made > now.saturating_add(60) {
            return Verdict::Challenge { stale: true };
        }
        // RFC 7616 §3.4: a nonce count not above the last one seen is a replay, unless it
        // is the same request again (a retransmission over UDP).
        let txn = txn_key(req);
        let mut retransmission = false;
        if let Some(last) = self.counts.get(&answer.nonce) {
            retransmission = answer.nc == last.nc && txn == last.txn;
            if answer.nc <= last.nc && !retransmission {
                debug!(%source, nc = answer.nc, "nonce count not above {}: a replay", last.nc);
                return Verdict::Challenge { stale: false };
            }
        }
        let known = self.counts.contains_key(&answer.nonce);
        if !known && made < self.floor {
            // Its count was forgotten (the table was full): a fresh nonce, not a guess.
            return Verdict::Challenge { stale: true };
        }
        if !retransmission && !claim(&answer.nonce, answer.nc, expires.saturating_sub(now)) {
            debug!(%source, nc = answer.nc, "nonce count already used on another node: a replay");
            return Verdict::Challenge { stale: false };
        }
        if !known {
            self.remember(now, &answer.nonce, expires);
        }
        self.counts.insert(
            answer.nonce.clone(),
            Count {
                nc: answer.nc,
                until: expires,
                txn,
            },
        );
        self.failures.remove(&source);
        user.map_or(Verdict::Challenge { stale: false }, Verdict::Ok)
    }

    /// Makes room for a nonce first used now: drops the expired ones from the front, then,
    /// when the table is still full, forgets the oldest live one and raises the floor.
    fn remember(&mut self, now: u64, nonce: &str, expires: u64) {
        while let Some((until, _)) = self.order.front() {
            let full = self.counts.len() >= self.limit;
            if *until > now && !full {
                break;
            }
            let Some((until, old)) = self.order.pop_front() else {
                break;
            };
            if self.counts.get(&old).is_some_and(|c| c.until == until) {
                self.counts.remove(&old);
                if until > now {
                    let made = until.saturating_sub(self.settings.nonce_ttl);
                    self.floor = self.floor.max(made.saturating_add(1));
                }
            }
        }
        self.order.push_back((expires, nonce.to_owned()));
    }

    fn failed(&mut self, now: u64, source: IpAddr) -> Verdict {
        if self.failures.len() >= self.limit && !self.failures.contains_key(&source) {
            self.failures.retain(|_, f| f.blocked_until > now);
            if self.failures.len() >= self.limit {
                // As many sources blocked as the table holds: this one is not counted
                // (scanning the table on every wrong answer would be the attack).
                return Verdict::Challenge { stale: false };
            }
        }
        let f = self.failures.entry(source).or_insert(Failures {
            count: 0,
            blocked_until: 0,
        });
        f.count += 1;
        if f.count >= self.settings.max_failures {
            f.count = 0;
            f.blocked_until = now.saturating_add(self.settings.block_for);
            tracing::warn!(
                %source,
                "{} wrong digest answers in a row: 403 for {} s",
                self.settings.max_failures,
                self.settings.block_for
            );
            return Verdict::Forbidden;
        }
        Verdict::Challenge { stale: false }
    }

    /// Forgets nonce counts of expired nonces and blocks that ended.
    pub fn purge(&mut self, now: u64) {
        self.counts.retain(|_, c| c.until > now);
        self.order.retain(|(until, _)| *until > now);
        self.failures
            .retain(|_, f| f.blocked_until > now || f.count > 0);
    }

    /// The 401 or 407 for `req`: one challenge per algorithm offered, `qop="auth"`.
    pub fn challenge(
        &mut self,
        now: u64,
        req: &Message,
        kind: Kind,
        realm: &str,
        stale: bool,
    ) -> Bytes {
        let (code, name) = match kind {
            Kind::Registrar => (StatusCode::UNAUTHORIZED, "WWW-Authenticate"),
            Kind::Proxy => (StatusCode::PROXY_AUTHENTICATION_REQUIRED, name_proxy()),
        };
        let nonce = self.nonce(now, realm);
        let values: Vec<String> = self
            .settings
            .algorithms
            .iter()
            .map(|a| {
                let mut v = format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm={}",
                    a.as_str()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect();
        let mut b = req.reply(code).to_tag(&crate::rules::reply_tag(req));
        for v in &values {
            b = b.header(name, v);
        }
        b.build()
    }
}

fn name_proxy() -> &'static str {
    "Proxy-Authenticate"
}

/// The 400 for a request whose `header` (From, To) is read for a decision but does not
/// decode: refused, never let through unchecked.
pub fn bad_address(req: &Message, header: &str) -> Bytes {
    req.response(400, &format!("Bad {header} URI"))
        .to_tag(&crate::rules::reply_tag(req))
        .build()
}

/// The 403 for a blocked source or a user registering someone else's address.
pub fn forbidden(req: &Message) -> Bytes {
    req.reply(StatusCode::FORBIDDEN)
        .to_tag(&crate::rules::reply_tag(req))
        .build()
}

/// The fields of a digest answer we need.
struct Answer {
    username: String,
    nonce: String,
    uri: String,
    response: String,
    alg: Algorithm,
    cnonce: String,
    nc_text: String,
    nc: u32,
}

impl Answer {
    /// The answer's fields; `None` when one is missing, the algorithm is not ours or the
    /// qop is not `auth` (without it a replay could not be told).
    fn of(a: &Auth<'_>) -> Option<Answer> {
        let alg = match a.param("algorithm") {
            None => Algorithm::Md5,
            Some(s) => Algorithm::parse(&s)?,
        };
        if !a.param("qop")?.eq_ignore_ascii_case("auth") {
            return None;
        }
        let nc_text = a.param("nc")?.into_owned();
        let nc = u32::from_str_radix(&nc_text, 16).ok()?;
        Some(Answer {
            username: a.param("username")?.into_owned(),
            nonce: a.param("nonce")?.into_owned(),
            uri: a.param("uri")?.into_owned(),
            response: a.param("response")?.into_owned(),
            alg,
            cnonce: a.param("cnonce")?.into_owned(),
            nc_text,
            nc,
        })
    }
}
