//! Which worker's socket the kernel hands a UDP datagram to.
//!
//! Each worker binds its own socket to the listening address with `SO_REUSEPORT`, and by
//! default the kernel picks one by a hash of the source address *and port*. The worker that
//! receives a request screens it, flood limit included, before handing it to the worker
//! that owns its call; so a source that sends from many ports had its requests counted in
//! several workers, each against the whole limit: with N workers it could send N times the
//! configured `flood_rate`.
//!
//! A classic BPF program on the socket group (`SO_ATTACH_REUSEPORT_CBPF`, Linux 4.5) makes
//! the kernel pick by the source address alone for requests, so every request of one
//! address is screened by one worker, as with a single one. IPv6 sources are picked by
//! their /64 (one site's addresses share a worker). Responses, which no flood limit
//! counts, keep the kernel's address-and-port hash: the program returns no index for them,
//! so the replies of the targets on one host still spread over the workers.
//!
//! The program is checked by the kernel when attached; if it is refused (an old kernel, a
//! sandbox without BPF) the proxy runs on with the kernel's default, and says so.

use std::io;
use std::os::fd::AsFd;

use nix::libc::{sock_filter, sock_fprog};
use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): class | size or operation |
// mode or source.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const ALU_RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU_MUL_K: u16 = 0x24; // BPF_ALU | BPF_MUL | BPF_K
const ALU_MOD_K: u16 = 0x94; // BPF_ALU | BPF_MOD | BPF_K
const ALU_XOR_X: u16 = 0xac; // BPF_ALU | BPF_XOR | BPF_X
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const MISC_TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
const RET_A: u16 = 0x16; // BPF_RET | BPF_A
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `SKF_NET_OFF`: loads at this offset and above read the network (IP) header, where the
/// program's own offset 0 is the first byte of the UDP payload.
const NET: u32 = 0xfff0_0000;

/// "SIP/" as the first four bytes: a response's status line.
const RESPONSE: u32 = u32::from_be_bytes(*b"SIP/");

/// Fibonacci hashing's multiplier: the address's bits mixed into the high half.
const MIX: u32 = 0x9e37_79b1;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The program for a group of `workers` sockets (see the module documentation). A
/// datagram too short to read four bytes from ends the program with index 0.
pub(crate) fn program(workers: u32) -> Vec<sock_filter> {
    vec![
        /* 0 */ op(LD_W_ABS, 0, 0, 0),
        /* 1 */ op(JMP_JEQ_K, 13, 0, RESPONSE), // a response: to 15
        /* 2 */ op(LD_B_ABS, 0, 0, NET), // IP version and header length
        /* 3 */ op(ALU_RSH_K, 0, 0, 4),
        /* 4 */ op(JMP_JEQ_K, 2, 0, 6), // IPv6: to 7
        /* 5 */ op(LD_W_ABS, 0, 0, NET + 12), // IPv4 source address
        /* 6 */ op(JMP_JA, 0, 0, 4), // to 11
        /* 7 */ op(LD_W_ABS, 0, 0, NET + 8), // IPv6 source, first half of the /64
        /* 8 */ op(MISC_TAX, 0, 0, 0),
        /* 9 */ op(LD_W_ABS, 0, 0, NET + 12), // second half
        /* 10 */ op(ALU_XOR_X, 0, 0, 0),
        /* 11 */ op(ALU_MUL_K, 0, 0, MIX),
        /* 12 */ op(ALU_RSH_K, 0, 0, 16),
        /* 13 */ op(ALU_MOD_K, 0, 0, workers.max(1)),
        /* 14 */ op(RET_A, 0, 0, 0),
        /* 15 */ op(RET_K, 0, 0, u32::MAX), // no such socket: the kernel's own hash
    ]
}

/// Attaches [`program`] to the `SO_REUSEPORT` group `socket` belongs to. The group's
/// sockets are numbered in the order they were bound, which is the workers' order.
pub(crate) fn attach(socket: &impl AsFd, workers: usize) -> io::Result<()> {
    let workers = u32::try_from(workers).unwrap_or(u32::MAX);
    let mut filter = program(workers);
    let fprog = sock_fprog {
        len: u16::try_from(filter.len()).unwrap_or(u16::MAX),
        filter: filter.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `filter` outlives it.
    setsockopt(socket, AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}

/// The worker the program picks for a request from `ip` (the same arithmetic), for tests.
#[cfg(test)]
pub(crate) fn worker_of(ip: std::net::IpAddr, workers: u32) -> u32 {
    let a = match ip {
        std::net::IpAddr::V4(v4) => u32::from(v4),
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4)
        }
    };
    (a.wrapping_mul(MIX) >> 16) % workers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inbound, NetConfig, Transports};
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::time::Duration;

    /// What each worker's socket received: (worker, source) for every datagram.
    async fn spread(
        workers: usize,
        listen: &str,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> Vec<(usize, SocketAddr)> {
        let cfg = NetConfig {
            listen: vec![listen.parse().unwrap()],
            workers,
            ..NetConfig::default()
        };
        let (t0, _rx0, shares) = Transports::bind_workers(cfg).await.unwrap();
        let proxy = t0.local_addr(rollover_txn::Transport::Udp).unwrap();
        let mut handles = vec![t0];
        let mut queues = Vec::new(); // kept open for the test's length
        for share in shares {
            let (t, rx) = share.start().unwrap();
            handles.push(t);
            queues.push(rx);
        }
        let mut inputs: Vec<_> = handles.iter().map(Transports::claim_udp).collect();
        let mut senders: BTreeMap<SocketAddr, UdpSocket> = BTreeMap::new();
        for (from, bytes) in datagrams {
            let s = senders
                .entry(*from)
                .or_insert_with(|| UdpSocket::bind(from).unwrap());
            s.send_to(bytes, proxy).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        for (w, udp) in inputs.iter_mut().enumerate() {
            while tokio::time::timeout(Duration::from_millis(50), udp.readable())
                .await
                .is_ok()
            {
                udp.fill();
                while let Some((event, _)) = udp.take() {
                    if let Inbound::Message { source, .. } = event {
                        got.push((w, source.addr));
                    }
                }
            }
        }
        for h in &handles {
            h.shutdown();
        }
        got
    }

    const REQUEST: &[u8] = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n";
    const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\r\n";

    /// Requests from one address land on one worker whatever their source port (the one
    /// `worker_of` names, so the group's order is the workers'); different addresses use
    /// every worker.
    #[tokio::test]
    async fn requests_from_one_address_reach_one_worker_whatever_the_port() {
        for workers in [2usize, 3] {
            let mut datagrams = Vec::new();
            for host in 1..=12u8 {
                let ip = IpAddr::from([127, 0, 0, host]);
                for _ in 0..6 {
                    datagrams.push((SocketAddr::new(ip, free_port(ip)), REQUEST));
                }
            }
            let got = spread(workers, "udp:127.0.0.1:0", &datagrams).await;
            assert_eq!(
                got.len(),
                datagrams.len(),
                "{workers} workers: all received"
            );
            let mut by_ip: BTreeMap<IpAddr, BTreeSet<usize>> = BTreeMap::new();
            for (w, src) in &got {
                by_ip.entry(src.ip()).or_default().insert(*w);
            }
            for (ip, ws) in &by_ip {
                let want = worker_of(*ip, workers as u32) as usize;
                assert_eq!(
                    ws.iter().copied().collect::<Vec<_>>(),
                    [want],
                    "{workers} workers: requests from {ip}"
                );
            }
            let used: BTreeSet<usize> = got.iter().map(|(w, _)| *w).collect();
            assert_eq!(used.len(), workers, "{workers} workers: {by_ip:?}");
        }
    }

    /// Over IPv6 the program reads the IPv6 header: every request from ::1, whatever its
    /// port, reaches the worker its /64 picks.
    #[tokio::test]
    async fn requests_over_ipv6_reach_the_worker_of_their_64() {
        let ip: IpAddr = "::1".parse().unwrap();
        if UdpSocket::bind(SocketAddr::new(ip, 0)).is_err() {
            eprintln!("no IPv6 loopback: skipped");
            return;
        }
        for workers in [2usize, 3] {
            let datagrams: Vec<_> = (0..12)
                .map(|_| (SocketAddr::new(ip, free_port(ip)), REQUEST))
                .collect();
            let got = spread(workers, "udp:[::1]:0", &datagrams).await;
            assert_eq!(got.len(), 12);
            let want = worker_of(ip, workers as u32) as usize;
            assert!(
                got.iter().all(|(w, _)| *w == want),
                "{workers} workers: {got:?}"
            );
        }
    }

    /// Responses keep the kernel's hash of address and port: those of one host, from many
    /// ports, reach more than one worker.
    #[tokio::test]
    async fn responses_from_one_address_still_spread_by_port() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let datagrams: Vec<_> = (0..32)
            .map(|_| (SocketAddr::new(ip, free_port(ip)), RESPONSE))
            .collect();
        let got = spread(2, "udp:127.0.0.1:0", &datagrams).await;
        assert_eq!(got.len(), 32);
        let used: BTreeSet<usize> = got.iter().map(|(w, _)| *w).collect();
        assert_eq!(used.len(), 2, "all 32 ports' responses on one worker");
    }

    /// A port free on `ip`.
    fn free_port(ip: IpAddr) -> u16 {
        UdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn the_arithmetic_spreads_addresses_and_keeps_a_v6_site_together() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            worker_of(v6("2001:db8:1:2::1"), 8),
            worker_of(v6("2001:db8:1:2:ffff::9"), 8)
        );
        let workers: BTreeSet<u32> = (0..=255u8)
            .map(|h| worker_of(IpAddr::from([192, 0, 2, h]), 4))
            .collect();
        assert_eq!(workers.len(), 4);
    }
}
