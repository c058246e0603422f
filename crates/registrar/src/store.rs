//! Where bindings are kept: the [`Store`] interface, and the embedded SQLite store.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::auth::User;
use crate::binding::{flow_text, parse_flow, Binding};

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be made.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis refused an operation or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection to the store could be made.
    #[error("not connected")]
    NotConnected,
}

/// A place that keeps the bindings of every address-of-record. `save` is durable when it
/// returns: the registrar answers 200 only after it.
pub trait Store {
    /// Every binding of `aor`, expired ones included.
    fn load(&mut self, aor: &str) -> Result<Vec<Binding>, StoreError>;
    /// Replaces the bindings of `aor` with `bindings`, at once (`now` in seconds since the
    /// epoch, for a store that expires keys by itself).
    fn save(&mut self, now: u64, aor: &str, bindings: &[Binding]) -> Result<(), StoreError>;
    /// Deletes the bindings expired at `now`; returns how many.
    fn purge(&mut self, now: u64) -> Result<usize, StoreError>;
    /// The user `username` of `realm`.
    fn user(&mut self, username: &str, realm: &str) -> Result<Option<User>, StoreError>;
    /// Adds a user, or replaces their password hashes.
    fn put_user(&mut self, user: &User) -> Result<(), StoreError>;
    /// Removes a user; false when there was none.
    fn remove_user(&mut self, username: &str, realm: &str) -> Result<bool, StoreError>;
    /// Every user, by realm then name.
    fn users(&mut self) -> Result<Vec<User>, StoreError>;
    /// Records that a digest answer used count `nc` of `nonce` (kept `ttl` seconds, the
    /// nonce's remaining life); false when that count or a higher one was recorded already.
    /// A store shared by several nodes keeps the counts for all of them, so a request
    /// replayed to another node is refused there too; a store only this process uses
    /// records nothing (the verifier's own counts cover it).
    fn claim_nonce(&mut self, nonce: &str, nc: u32, ttl: u64) -> Result<bool, StoreError> {
        let _ = (nonce, nc, ttl);
        Ok(true)
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn load(&mut self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        (**self).load(aor)
    }
    fn save(&mut self, now: u64, aor: &str, bindings: &[Binding]) -> Result<(), StoreError> {
        (**self).save(now, aor, bindings)
    }
    fn purge(&mut self, now: u64) -> Result<usize, StoreError> {
        (**self).purge(now)
    }
    fn user(&mut self, username: &str, realm: &str) -> Result<Option<User>, StoreError> {
        (**self).user(username, realm)
    }
    fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        (**self).put_user(user)
    }
    fn remove_user(&mut self, username: &str, realm: &str) -> Result<bool, StoreError> {
        (**self).remove_user(username, realm)
    }
    fn claim_nonce(&mut self, nonce: &str, nc: u32, ttl: u64) -> Result<bool, StoreError> {
        (**self).claim_nonce(nonce, nc, ttl)
    }
    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        (**self).users()
    }
}

/// Bindings in an SQLite file (`rollover.sqlite` in the data directory), written ahead
/// (WAL): a committed registration survives the process being killed.
#[derive(Debug)]
pub struct SqliteStore {
    db: Connection,
}

/// The file name in the data directory.
pub const SQLITE_FILE: &str = "rollover.sqlite";

impl SqliteStore {
    /// Opens (or makes) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let db = Connection::open(dir.join(SQLITE_FILE))?;
        Self::init(db)
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<SqliteStore, StoreError> {
        // WAL with synchronous=NORMAL: a commit is in the log before it returns, so a killed
        // process loses nothing (a power cut may lose the last commits).
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(2))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS bindings (
                aor TEXT NOT NULL,
                contact TEXT NOT NULL,
                q INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                call_id TEXT NOT NULL,
                cseq INTEGER NOT NULL,
                path TEXT NOT NULL,
                received TEXT,
                PRIMARY KEY (aor, contact)
            );
            CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (expires_at);
            CREATE TABLE IF NOT EXISTS users (
                username TEXT NOT NULL,
                realm TEXT NOT NULL,
                ha1_md5 TEXT NOT NULL,
                ha1_sha256 TEXT NOT NULL,
                PRIMARY KEY (username, realm)
            );",
        )?;
        Ok(SqliteStore { db })
    }
}

impl Store for SqliteStore {
    fn load(&mut self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        let mut st = self.db.prepare_cached(
            "SELECT contact, q, expires_at, call_id, cseq, path, received
             FROM bindings WHERE aor = ?1 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![aor], |r| {
            let path: String = r.get(5)?;
            let received: Option<String> = r.get(6)?;
            Ok(Binding {
                aor: aor.to_owned(),
                contact: r.get(0)?,
                q: r.get(1)?,
                expires_at: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                call_id: r.get(3)?,
                cseq: r.get(4)?,
                path: path
                    .split('\n')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                received: received.as_deref().and_then(parse_flow),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn save(&mut self, _now: u64, aor: &str, bindings: &[Binding]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM bindings WHERE aor = ?1", params![aor])?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO bindings
                 (aor, contact, q, expires_at, call_id, cseq, path, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for b in bindings {
                st.execute(params![
                    aor,
                    b.contact,
                    b.q,
                    i64::try_from(b.expires_at).unwrap_or(i64::MAX),
                    b.call_id,
                    b.cseq,
                    b.path.join("\n"),
                    b.received.as_ref().map(flow_text),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn purge(&mut self, now: u64) -> Result<usize, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        Ok(self
            .db
            .execute("DELETE FROM bindings WHERE expires_at <= ?1", params![now])?)
    }

    fn user(&mut self, username: &str, realm: &str) -> Result<Option<User>, StoreError> {
        let mut st = self.db.prepare_cached(
            "SELECT ha1_md5, ha1_sha256 FROM users WHERE username = ?1 AND realm = ?2",
        )?;
        let mut rows = st.query_map(params![username, realm], |r| {
            Ok(User {
                username: username.to_owned(),
                realm: realm.to_owned(),
                ha1_md5: r.get(0)?,
                ha1_sha256: r.get(1)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO users (username, realm, ha1_md5, ha1_sha256)
             VALUES (?1, ?2, ?3, ?4)",
            params![user.username, user.realm, user.ha1_md5, user.ha1_sha256],
        )?;
        Ok(())
    }

    fn remove_user(&mut self, username: &str, realm: &str) -> Result<bool, StoreError> {
        let n = self.db.execute(
            "DELETE FROM users WHERE username = ?1 AND realm = ?2",
            params![username, realm],
        )?;
        Ok(n > 0)
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        let mut st = self.db.prepare_cached(
            "SELECT username, realm, ha1_md5, ha1_sha256 FROM users ORDER BY realm, username",
        )?;
        let rows = st.query_map([], |r| {
            Ok(User {
                username: r.get(0)?,
                realm: r.get(1)?,
                ha1_md5: r.get(2)?,
                ha1_sha256: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
