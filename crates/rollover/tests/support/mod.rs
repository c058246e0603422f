//! The harness the real-binary tests share: free ports, temporary directories, processes
//! stopped by their PID, the proxy under test, SIPp callees and plain UDP peers.
//!
//! Each test file includes it with `mod support;`. Every process is bounded and stopped by
//! its PID; every wait has a deadline.
// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub mod attack;

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free port on 127.0.0.1 for both UDP and TCP, from a range that depends on the PID so
/// that test binaries running side by side seldom meet.
pub fn port() -> u16 {
    if NEXT_PORT.load(Ordering::SeqCst) == 0 {
        let base = 21000 + (std::process::id() % 400) as u16 * 50;
        let _ = NEXT_PORT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let p = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
}

/// Whether `program arg` runs; in CI its absence fails the test (scripts/test.sh installs
/// `package`).
pub fn available(program: &str, arg: &str, package: &str) -> bool {
    let ok = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "{program} is required in CI (scripts/test.sh installs {package})"
        );
        eprintln!("{program} not installed: skipping");
    }
    ok
}

pub fn sipp_available() -> bool {
    available("sipp", "-v", "sip-tester")
}

pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A test's temporary directory, named after the test binary and the test. Removed when
/// the test passes; kept when it failed, for a look at the logs and message traces.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "rollover-{}-{}-{name}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }

    pub fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.path(f)).unwrap_or_default()
    }

    /// A file from `tests/<from>/` with its `{{KEY}}` placeholders filled, written here.
    pub fn fill(&self, from: &str, template: &str, out: &str, vars: &[(&str, &str)]) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(from)
            .join(template);
        let mut text = std::fs::read_to_string(src).unwrap();
        for (k, v) in vars {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
        assert!(!text.contains("{{"), "unfilled placeholder in {template}");
        let p = self.path(out);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A scenario from `tests/sipp/` with `{{KEY}}` placeholders filled.
    pub fn scenario(&self, template: &str, out: &str, vars: &[(&str, &str)]) -> PathBuf {
        self.fill("sipp", template, out, vars)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (by PID) when dropped.
pub struct Proc {
    child: Child,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Proc {
    pub fn new(child: Child, name: &str) -> Proc {
        Proc {
            child,
            name: name.into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process by its PID and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself, up to `limit`; its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not finish within {limit:?}", self.name);
        None
    }
}

/// The binary under test: `ROLLOVER_BIN` (e.g. a release build, for the flood test's
/// figures) or the one cargo built with these tests.
pub fn binary() -> PathBuf {
    std::env::var_os("ROLLOVER_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_rollover").into(), PathBuf::from)
}

/// `rollover proxy` running in a test's directory (its secret file goes there), its
/// configuration in `rollover.toml`, its log in `proxy.log` and `proxy.err`.
pub struct Proxy {
    proc: Proc,
    log: PathBuf,
    config: PathBuf,
    pub port: u16,
}

impl Proxy {
    /// Starts `rollover proxy` with `config`, its `{{PROXY}}` replaced by 127.0.0.1:port,
    /// logging at info.
    pub fn start(dir: &Dir, config: &str) -> Proxy {
        Proxy::start_with(dir, port(), config, &[], "info")
    }

    /// Starts `rollover proxy` on `port` with `config` (`{{PROXY}}` is 127.0.0.1:`port`),
    /// the command-line arguments `args` and `RUST_LOG=log_level`; ready once it logs
    /// its listeners (all are bound by then).
    pub fn start_with(dir: &Dir, port: u16, config: &str, args: &[&str], log_level: &str) -> Proxy {
        let cfg = config.replace("{{PROXY}}", &format!("127.0.0.1:{port}"));
        let cfg_path = dir.path("rollover.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path("proxy.log");
        let child = Command::new(binary())
            .args(["proxy", "--config"])
            .arg(&cfg_path)
            .args(args)
            .current_dir(dir.root()) // its secret file goes there
            .env("NO_COLOR", "1")
            .env("RUST_LOG", log_level)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path("proxy.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let p = Proxy {
            proc: Proc::new(child, "rollover"),
            log,
            config: cfg_path,
            port,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if p.log_text().contains("listening on ") {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "proxy did not start: {}{}",
            p.log_text(),
            dir.read("proxy.err")
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its configuration file (rewritten before a SIGHUP, say).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Waits (up to `limit`) until the log holds `needle`; panics with the log if not.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {needle:?} in the log:\n{}", self.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Resident set size in kB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// Sends `sig` (`-HUP`, `-TERM`…) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit by itself, up to `limit`; its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        self.proc.wait(limit)
    }

    /// Kills it with SIGKILL (by its PID): no drain, no clean exit.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }
}

/// VmRSS of a process in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// SIPp with `args`, on 127.0.0.1, its errors in `<name>.err`.
pub fn sipp(dir: &Dir, name: &str, args: &[String]) -> Proc {
    let child = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-i", "127.0.0.1", "-trace_err", "-error_file"])
        .arg(dir.path(&format!("{name}.err")))
        .current_dir(dir.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    Proc::new(child, name)
}

/// A caller SIPp calling `service` through 127.0.0.1:`to` from its own port, for `calls`
/// calls at `rate` per second over `transport` (`u1` or `t1`), giving up after `timeout`,
/// with `extra` arguments.
pub struct Caller<'a> {
    pub scenario: &'a Path,
    pub service: &'a str,
    pub calls: u32,
    pub rate: u32,
    pub transport: &'a str,
    pub timeout: &'a str,
    pub extra: &'a [String],
}

impl Caller<'_> {
    pub fn start(&self, dir: &Dir, name: &str, to: u16) -> Proc {
        let mut args = strings(&["-sf", &self.scenario.display().to_string()]);
        args.extend(strings(&[
            &format!("127.0.0.1:{to}"),
            "-s",
            self.service,
            "-p",
            &port().to_string(),
            "-m",
            &self.calls.to_string(),
            "-r",
            &self.rate.to_string(),
            "-t",
            self.transport,
            "-timeout",
            self.timeout,
            "-timeout_error",
        ]));
        args.extend_from_slice(self.extra);
        sipp(dir, name, &args)
    }

    /// Runs to the end, up to `limit`; the exit code (0: every call succeeded).
    pub fn run(&self, dir: &Dir, name: &str, to: u16, limit: Duration) -> Option<i32> {
        let mut p = self.start(dir, name, to);
        let code = p.wait(limit);
        if code != Some(0) {
            eprintln!(
                "{name} exit {code:?}; errors:\n{}",
                dir.read(&format!("{name}.err"))
            );
        }
        code
    }
}

/// A callee SIPp on its own port running `scenario` for `calls` calls over `transport`
/// (`u1` or `t1`), giving up after `timeout`, with `extra` arguments.
pub fn sipp_callee(
    dir: &Dir,
    name: &str,
    scenario: &Path,
    calls: u32,
    transport: &str,
    timeout: &str,
    extra: &[String],
) -> (Proc, u16) {
    let p = port();
    let mut args = strings(&["-sf", &scenario.display().to_string()]);
    args.extend(strings(&[
        "-p",
        &p.to_string(),
        "-m",
        &calls.to_string(),
        "-t",
        transport,
        "-timeout",
        timeout,
    ]));
    args.extend_from_slice(extra);
    let proc_ = sipp(dir, name, &args);
    if transport == "t1" {
        wait_listening(p);
    }
    (proc_, p)
}

/// Waits (bounded) until a TCP listener accepts on 127.0.0.1:`port`: a SIPp callee over
/// TCP must be up before a call is sent to it, or the connection is refused.
pub fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP socket on 127.0.0.1 whose reads give up after 3 s.
pub fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(3000)))
        .unwrap();
    s
}

/// The next datagram on `s` as text; panics when none arrives in time.
pub fn recv(s: &UdpSocket) -> String {
    let mut buf = [0u8; 8192];
    let (n, _) = s.recv_from(&mut buf).expect("expected a message");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The next message on `s` that starts with `prefix` (others skipped), within 3 s.
pub fn recv_starting(s: &UdpSocket, prefix: &str) -> String {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let m = recv(s);
        if m.starts_with(prefix) {
            return m;
        }
    }
    panic!("no {prefix:?}");
}

/// The next message on `s` that satisfies `want` (others, like retransmissions, skipped),
/// within 5 s, and where it came from.
pub fn recv_where(s: &UdpSocket, want: impl Fn(&str) -> bool) -> (String, SocketAddr) {
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&m) {
                return (m, from);
            }
        }
    }
    panic!("nothing wanted arrived");
}

/// Nothing (but what `skip` accepts) arrives within `d`; else the first such message.
pub fn quiet(s: &UdpSocket, d: Duration, skip: impl Fn(&str) -> bool) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let end = Instant::now() + d;
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !skip(&m) {
                s.set_read_timeout(Some(Duration::from_millis(3000)))
                    .unwrap();
                return Some(m);
            }
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(3000)))
        .unwrap();
    None
}

/// The value of header `name` in `msg`; panics when it has none.
pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// The sum over workers of a counter in the last `stats:` line naming it that each worker
/// logged (`routed=3 … worker=1`).
pub fn stats_total(log: &str, counter: &str) -> u64 {
    let key = format!("{counter}=");
    let mut last = std::collections::HashMap::new();
    let named = |l: &&str| l.contains("stats: ") && l.contains(&format!(" {key}"));
    for line in log.lines().filter(named) {
        let value = |k: &str| {
            line.split(k)
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_alphanumeric()).next())
                .map(str::to_owned)
        };
        let n = value(&key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let worker = value("worker=").unwrap_or_default();
        last.insert(worker, n);
    }
    last.values().sum()
}

/// Sends SIGUSR1 and waits until the workers' `stats:` lines add up to `want` for
/// `counter`.
pub fn wait_stats(p: &Proxy, counter: &str, want: u64) {
    p.signal("-USR1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = stats_total(&p.log_text(), counter);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats: {counter} adds up to {got}, not {want}:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
