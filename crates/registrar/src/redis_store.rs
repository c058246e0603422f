//! Bindings and users in Redis, shared by several proxy nodes. Every change is published
//! on [`CHANGES_CHANNEL`] (the address-of-record), so each node drops its cached copy.
//!
//! Keys: `rollover:aor:<aor>` holds the bindings of one address-of-record (one line per
//! binding) and expires with the last of them; `rollover:user:<realm>:<user>` holds a
//! user's two HA1 hashes.

use std::time::{Duration, Instant};

use redis::{Client, Commands, Connection};

use crate::auth::User;
use crate::binding::{flow_text, parse_flow, Binding};
use crate::store::{Store, StoreError};

/// The channel every binding change is published on; the message is the address-of-record.
pub const CHANGES_CHANNEL: &str = "rollover:bindings";

const AOR_PREFIX: &str = "rollover:aor:";
const USER_PREFIX: &str = "rollover:user:";

/// How long one Redis command may take before the store reports it failed. The store is
/// called from the proxy's driver thread: a server that hangs must not stall it for long.
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// After a failed connection attempt, how long commands fail at once instead of waiting
/// for another timeout.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A Redis store (`redis://127.0.0.1:6379/0`). A command that fails on a broken connection
/// is retried once on a new one (the server restarted); when no connection can be made,
/// commands fail at once for a second.
pub struct RedisStore {
    client: Client,
    con: Option<Connection>,
    down_until: Option<Instant>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connected", &self.con.is_some())
            .field("down_until", &self.down_until)
            .finish()
    }
}

impl RedisStore {
    /// Connects to `url`.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        let client = Client::open(url)?;
        let mut s = RedisStore {
            client,
            con: None,
            down_until: None,
        };
        s.connection()?;
        Ok(s)
    }

    /// The client, for a subscriber to [`CHANGES_CHANNEL`] on a connection of its own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    // The store is the IO edge: it reads the clock for its own back-off, never for SIP.
    #[allow(clippy::disallowed_methods)]
    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.con.is_none() {
            let now = Instant::now();
            if self.down_until.is_some_and(|t| now < t) {
                return Err(StoreError::NotConnected);
            }
            let con = match self.client.get_connection_with_timeout(IO_TIMEOUT) {
                Ok(c) => c,
                Err(e) => {
                    self.down_until = Some(now + RETRY_AFTER);
                    return Err(e.into());
                }
            };
            self.down_until = None;
            con.set_read_timeout(Some(IO_TIMEOUT))?;
            con.set_write_timeout(Some(IO_TIMEOUT))?;
            self.con = Some(con);
        }
        match self.con.as_mut() {
            Some(c) => Ok(c),
            None => Err(StoreError::NotConnected),
        }
    }

    /// Runs `f` on the connection; on an I/O error, once more on a new connection.
    fn with<T>(
        &mut self,
        f: impl Fn(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        match f(self.connection()?) {
            Ok(v) => Ok(v),
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                self.con = None;
                Ok(f(self.connection()?)?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// One binding as a line: tab-separated fields (none can hold a tab or a newline).
fn encode(b: &Binding) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        b.contact,
        b.q,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.path.join("\u{1f}"),
        b.received
            .as_ref()
            .map_or_else(|| "-".to_owned(), flow_text)
    )
}

fn decode(aor: &str, line: &str) -> Option<Binding> {
    let mut f = line.split('\t');
    let contact = f.next()?.to_owned();
    let q = f.next()?.parse().ok()?;
    let expires_at = f.next()?.parse().ok()?;
    let call_id = f.next()?.to_owned();
    let cseq = f.next()?.parse().ok()?;
    let path = f
        .next()?
        .split('\u{1f}')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let received = parse_flow(f.next()?);
    Some(Binding {
        aor: aor.to_owned(),
        contact,
        q,
        expires_at,
        call_id,
        cseq,
        path,
        received,
    })
}

/// Where a nonce's highest count is kept (`rollover:nonce:<nonce>`), for as long as the
/// nonce is good.
const NONCE_PREFIX: &str = "rollover:nonce:";

/// Sets the count in `KEYS[1]` to `ARGV[1]` (for `ARGV[2]` seconds) when it is higher than
/// the one there; 1 when it was, 0 when not. One script, so two nodes claiming the same
/// count at once cannot both win.
const CLAIM_NONCE: &str = "local c = tonumber(redis.call('GET', KEYS[1]) or '0') \
if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end \
return 0";

impl Store for RedisStore {
    fn load(&mut self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        let key = format!("{AOR_PREFIX}{aor}");
        let v: Option<String> = self.with(|c| c.get(&key))?;
        Ok(v.unwrap_or_default()
            .lines()
            .filter_map(|l| decode(aor, l))
            .collect())
    }

    fn save(&mut self, now: u64, aor: &str, bindings: &[Binding]) -> Result<(), StoreError> {
        let key = format!("{AOR_PREFIX}{aor}");
        let value: Vec<String> = bindings.iter().map(encode).collect();
        let value = value.join("\n");
        // The key lives as long as its last binding (relative: the Redis server's clock
        // need not agree with ours).
        let ttl = bindings
            .iter()
            .map(|b| b.remaining(now))
            .max()
            .unwrap_or(0)
            .max(1);
        self.with(|c| {
            let mut p = redis::pipe();
            p.atomic();
            if bindings.is_empty() {
                p.del(&key).ignore();
            } else {
                p.set(&key, &value).ignore();
                p.expire(&key, ttl as i64).ignore();
            }
            p.publish(CHANGES_CHANNEL, aor).ignore();
            p.query::<()>(c)
        })
    }

    fn claim_nonce(&mut self, nonce: &str, nc: u32, ttl: u64) -> Result<bool, StoreError> {
        let key = format!("{NONCE_PREFIX}{nonce}");
        let won: i64 = self.with(|c| {
            redis::cmd("EVAL")
                .arg(CLAIM_NONCE)
                .arg(1)
                .arg(&key)
                .arg(nc)
                .arg(ttl.max(1))
                .query(c)
        })?;
        Ok(won == 1)
    }

    fn purge(&mut self, _now: u64) -> Result<usize, StoreError> {
        // Each key expires with its last binding (EXPIRE); expired bindings inside a key
        // are never returned as targets and go with the next change.
        Ok(0)
    }

    fn user(&mut self, username: &str, realm: &str) -> Result<Option<User>, StoreError> {
        let key = format!("{USER_PREFIX}{realm}:{username}");
        let v: Option<String> = self.with(|c| c.get(&key))?;
        Ok(v.and_then(|v| user_of(username, realm, &v)))
    }

    fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        let key = format!("{USER_PREFIX}{}:{}", user.realm, user.username);
        let value = format!("{} {}", user.ha1_md5, user.ha1_sha256);
        self.with(|c| c.set::<_, _, ()>(&key, &value))
    }

    fn remove_user(&mut self, username: &str, realm: &str) -> Result<bool, StoreError> {
        let key = format!("{USER_PREFIX}{realm}:{username}");
        let n: u64 = self.with(|c| c.del(&key))?;
        Ok(n > 0)
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        let pattern = format!("{USER_PREFIX}*");
        let keys: Vec<String> = self.with(|c| {
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            // SCAN until the cursor comes back to 0; bounded by the key count.
            for _ in 0..1_000_000 {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query(c)?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            Ok(keys)
        })?;
        let mut out = Vec::new();
        for k in keys {
            let Some((realm, name)) = k.strip_prefix(USER_PREFIX).and_then(|r| r.split_once(':'))
            else {
                continue;
            };
            if let Some(u) = self.user(name, realm)? {
                out.push(u);
            }
        }
        out.sort_by(|a, b| (&a.realm, &a.username).cmp(&(&b.realm, &b.username)));
        Ok(out)
    }
}

fn user_of(username: &str, realm: &str, v: &str) -> Option<User> {
    let (md5, sha256) = v.split_once(' ')?;
    Some(User {
        username: username.to_owned(),
        realm: realm.to_owned(),
        ha1_md5: md5.to_owned(),
        ha1_sha256: sha256.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_round_trip_as_lines() {
        let b = Binding {
            aor: "sip:alice@example.com".into(),
            contact: "sip:alice@127.0.0.1:5070;transport=tcp".into(),
            q: 500,
            expires_at: 123,
            call_id: "c@h".into(),
            cseq: 7,
            path: vec!["<sip:a;lr>".into(), "<sip:b;lr>".into()],
            received: parse_flow("TCP 127.0.0.1:5070"),
        };
        assert_eq!(decode(&b.aor, &encode(&b)), Some(b.clone()));
        let none = Binding {
            path: vec![],
            received: None,
            ..b
        };
        assert_eq!(decode(&none.aor, &encode(&none)), Some(none.clone()));
    }
}
