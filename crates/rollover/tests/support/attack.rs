//! What the attack and connection tests share: their SIPp callees and plans, and what they
//! read of the proxy process in /proc.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{sipp_callee, Dir, Proc};

/// CPU time (user + system) a process has used, in clock ticks (1/100 s on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which ends with ')': utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// How many files a process has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits (up to `limit`) until a process has `want` files open; how many it has.
pub fn wait_fds(pid: u32, want: usize, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    loop {
        let n = fd_count(pid);
        if n <= want || Instant::now() >= end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A callee SIPp on its own port running `scenario` for `calls` calls over `transport`
/// (`u1` or `t1`), with `extra` arguments.
pub fn callee(
    dir: &Dir,
    name: &str,
    scenario: &Path,
    calls: u32,
    transport: &str,
    extra: &[String],
) -> (Proc, u16) {
    sipp_callee(dir, name, scenario, calls, transport, "90s", extra)
}

pub fn answer_scenario(dir: &Dir, file: &str) -> PathBuf {
    dir.scenario(
        "uas_answer.xml",
        file,
        &[("RING_MS", "0"), ("ANSWER_MS", "20")],
    )
}

pub fn answered(dir: &Dir, hold_ms: &str) -> PathBuf {
    dir.scenario(
        "uac_answered.xml",
        "uac_answered.xml",
        &[("HOLD_MS", hold_ms)],
    )
}

/// `[server]` listening on UDP and TCP, with `extra` lines, then the rest.
pub fn config(server_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:{{{{PROXY}}}}\", \"tcp:{{{{PROXY}}}}\"]\n{server_extra}\n[failover]\nno_response_timeout = \"1s\"\nring_timeout = \"2s\"\n\n{rest}\n"
    )
}

/// The plan that routes only `sip:<digits>@…` to one target.
pub fn digits_plan(target: &str) -> String {
    format!(
        "[[route]]\nname = \"digits\"\nmatch.request_uri = '^sip:(\\d+)@'\ntargets = [\"sip:$1@{target}\"]\n"
    )
}
