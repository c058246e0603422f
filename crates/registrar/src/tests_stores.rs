//! The same store tests on SQLite and on a real Redis server (Debian's `redis-server`,
//! started on a loopback port and stopped by its PID; skipped when it is not installed,
//! except under `CI=true`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use rollover_sip::Message;
use rollover_txn::{Peer, Transport};

use crate::auth::User;
use crate::rules::Rules;
use crate::{Location, RedisStore, SqliteStore, Store};

const NOW: u64 = 1_000_000;

fn rules() -> Rules {
    Rules {
        domains: vec!["example.com".into()],
        ..Rules::default()
    }
}

fn reg(call_id: &str, cseq: u32, extra: &str) -> Message {
    let s = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}{cseq}\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

fn source() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5070".parse().unwrap(),
    }
}

/// The suite: `open` opens the store anew (a restart of the proxy).
fn suite(mut open: impl FnMut() -> Box<dyn Store>) {
    const AOR: &str = "sip:alice@example.com";
    {
        let mut loc = Location::new(rules(), open());
        let r = loc.handle_register(
            NOW,
            &reg(
                "c",
                1,
                "Contact: <sip:a@127.0.0.1:1>;q=0.5, <sip:b@127.0.0.1:2>;expires=60\r\nPath: <sip:edge.example.com;lr>\r\n",
            ),
            &source(),
        );
        assert_eq!(Message::parse(r).unwrap().status(), Some(200));
    }
    // Opened again: the bindings are there, as they were stored.
    let mut loc = Location::new(rules(), open());
    let b = loc.bindings(AOR).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].contact, "sip:a@127.0.0.1:1");
    assert_eq!(b[0].q, 500);
    assert_eq!(b[0].path, ["<sip:edge.example.com;lr>"]);
    assert_eq!(b[0].received, Some(source()));
    let groups = loc.targets(AOR, NOW).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0][0].uri, "sip:b@127.0.0.1:2");
    // Expired bindings are never targets, purged or not.
    loc.purge(NOW + 61).unwrap();
    assert_eq!(loc.targets(AOR, NOW + 61).unwrap().len(), 1);
    // Removing everything leaves nothing, in the store too.
    let r = loc.handle_register(NOW, &reg("c", 2, "Contact: *\r\nExpires: 0\r\n"), &source());
    assert_eq!(Message::parse(r).unwrap().status(), Some(200));
    assert!(open().load(AOR).unwrap().is_empty());
    // Users.
    let mut s = open();
    for u in s.users().unwrap() {
        s.remove_user(&u.username, &u.realm).unwrap();
    }
    let alice = User::new("alice", "example.com", "secret");
    s.put_user(&alice).unwrap();
    s.put_user(&User::new("bob", "example.com", "x")).unwrap();
    assert_eq!(open().user("alice", "example.com").unwrap(), Some(alice));
    assert_eq!(s.user("alice", "example.org").unwrap(), None);
    let names: Vec<String> = s.users().unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(s.remove_user("bob", "example.com").unwrap());
    assert!(!s.remove_user("bob", "example.com").unwrap());
    assert_eq!(s.users().unwrap().len(), 1);
}

#[test]
fn suite_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("rollover-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    suite(move || Box::new(SqliteStore::open(&d).unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn suite_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    suite(move || Box::new(RedisStore::open(&url).unwrap()));
}

#[test]
fn redis_publishes_every_change() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut store = RedisStore::open(&server.url()).unwrap();
    let mut sub = store.client().get_connection().unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut ps = sub.as_pubsub();
    ps.subscribe(crate::CHANGES_CHANNEL).unwrap();
    let mut loc = Location::new(rules(), store);
    loc.handle_register(
        NOW,
        &reg("c", 1, "Contact: <sip:a@127.0.0.1:1>\r\n"),
        &source(),
    );
    let msg = ps.get_message().unwrap();
    let aor: String = msg.get_payload().unwrap();
    assert_eq!(aor, "sip:alice@example.com");
    store = RedisStore::open(&server.url()).unwrap();
    assert_eq!(store.load("sip:alice@example.com").unwrap().len(), 1);
}

/// Nonce counts claimed through two connections (two nodes) on one Redis: each count is
/// won once, by whichever claims it first, and only upwards; the key goes with the nonce.
/// SQLite, used by one process, records none.
#[test]
fn redis_keeps_nonce_counts_for_every_node() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut a = RedisStore::open(&server.url()).unwrap();
    let mut b = RedisStore::open(&server.url()).unwrap();
    assert!(a.claim_nonce("n1", 1, 300).unwrap());
    assert!(
        !b.claim_nonce("n1", 1, 300).unwrap(),
        "the same count on another node"
    );
    assert!(!a.claim_nonce("n1", 1, 300).unwrap());
    assert!(b.claim_nonce("n1", 3, 300).unwrap());
    assert!(
        !a.claim_nonce("n1", 2, 300).unwrap(),
        "a count below the highest"
    );
    assert!(a.claim_nonce("n2", 1, 300).unwrap(), "another nonce");
    let ttl: i64 = redis::cmd("TTL")
        .arg("rollover:nonce:n1")
        .query(&mut server_connection(&a))
        .unwrap();
    assert!((1..=300).contains(&ttl), "{ttl}");
    let mut boxed: Box<dyn Store> = Box::new(b);
    assert!(
        !boxed.claim_nonce("n1", 3, 300).unwrap(),
        "through the box too"
    );
    let dir = std::env::temp_dir().join(format!("rollover-nonce-{}", std::process::id()));
    let mut sqlite = SqliteStore::open(&dir).unwrap();
    assert!(sqlite.claim_nonce("n1", 1, 300).unwrap());
    assert!(sqlite.claim_nonce("n1", 1, 300).unwrap());
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}

fn server_connection(store: &RedisStore) -> redis::Connection {
    store.client().get_connection().unwrap()
}

/// `redis-server` on a free loopback port, without persistence, killed by PID on drop.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one; `None` (skip) when it is not installed, except under `CI=true`. A port
    /// another test's server took meanwhile (it was free when picked) is given up for
    /// another: the connection that proves the server up must be to this one.
    pub(crate) fn start() -> Option<RedisServer> {
        for _ in 0..5 {
            match RedisServer::start_once()? {
                Ok(s) => return Some(s),
                Err(port) => eprintln!("redis-server could not take port {port}: another"),
            }
        }
        panic!("redis-server did not start");
    }

    fn start_once() -> Option<Result<RedisServer, u16>> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").is_err(),
                    "redis-server is required in CI (scripts/test.sh installs redis-server): {e}"
                );
                eprintln!("redis-server not installed: skipping");
                return None;
            }
        };
        let mut s = RedisServer { child, port };
        // Up to 5 s, in 20 ms steps; a server that exited (its port was taken) is no proof.
        for _ in 0..250 {
            if let Ok(Some(_)) = s.child.try_wait() {
                return Some(Err(port));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
                if let Ok(Some(_)) = s.child.try_wait() {
                    return Some(Err(port));
                }
                return Some(Ok(s));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_redis_that_went_away_fails_fast_and_comes_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let mut store = RedisStore::open(&url).unwrap();
    assert!(store.load("sip:a@example.com").unwrap().is_empty());
    drop(server);
    // Gone: an error (the connection broke, and no new one can be made)…
    assert!(store.load("sip:a@example.com").is_err());
    // …and at once while it stays down.
    assert!(matches!(
        store.load("sip:a@example.com"),
        Err(crate::StoreError::NotConnected)
    ));
}
