//! The network around one proxy core: callers, the proxy and scripted targets in virtual
//! time. Every message to the proxy goes through the live server's [`FrontDoor`] (parse,
//! validate, stateless refusals, Via stamping, flood limit, admission), then its
//! transaction layer; everything the proxy sends is recorded with its destination and
//! crosses a [`Link`] (latency, loss) to a scripted caller, a scripted target, or nobody
//! (a test playing that end itself reads [`Net::sent`] and answers with [`Net::recv`]).
//!
//! Time jumps from event to deadline: [`Net::step`] delivers the next message or fires the
//! next timer, [`Net::drive`] runs until the network is quiet or a time limit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_proxy::{Decision, Proxy, ProxyConfig, Resolver, RoutePolicy};
use rollover_sip::{HeaderName, Message, Method, RequestBuilder};
use rollover_txn::{
    Config, FrontDoor, Peer, Transmit, Transport, TransportError, TxnLayer, TxnRef,
};

use crate::link::{Link, Rng};
use crate::targets::{Reception, Targets};
use crate::world::World;

/// The proxy's address in a network built by [`Net::with_policy`] and [`run`].
pub const PROXY: &str = "192.0.2.1:5060";

/// The caller's address in [`run`] and [`invite_to`].
pub const CALLER: &str = "198.51.100.1:5060";

/// `"192.0.2.1:5060"` as an address (panics on a typo: for tests).
#[allow(clippy::expect_used)]
pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// A UDP peer at `s`.
pub fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

/// Maps every host name to a stable documentation address (192.0.2.10 to 192.0.2.209), so
/// names need no DNS. (The proxy sends to an IP address in a URI as written, without asking
/// a resolver; in a simulation nothing is sent anyway.)
#[derive(Debug, Clone, Copy, Default)]
pub struct SimResolver;

impl Resolver for SimResolver {
    fn resolve(&self, host: &str, port: u16, _: Transport) -> Option<SocketAddr> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        host.hash(&mut h);
        let last = 10 + (h.finish() % 200) as u8;
        Some(SocketAddr::from(([192, 0, 2, last], port)))
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Time since the network started.
    pub at: Duration,
    /// What happened.
    pub text: String,
}

/// What a network did, as `rollover simulate` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything, in order.
    pub timeline: Vec<Line>,
    /// The final status the (first) caller received, if any.
    pub final_status: Option<u16>,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// Response contexts and transactions still held when the run ended (0 once every
    /// timer has run: nothing is kept forever).
    pub leftover: (usize, usize),
}

impl Outcome {
    /// The timeline as text, one line each: `  12.500s  text`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.timeline {
            let _ = writeln!(out, "{:>9.3}s  {}", l.at.as_secs_f64(), l.text);
        }
        out
    }
}

/// A scripted caller (UAC): it sent one request, ACKs the finals to it and may CANCEL it.
#[derive(Debug)]
struct Caller {
    peer: Peer,
    request: Option<Message>,
    final_status: Option<u16>,
}

/// Something on its way.
#[derive(Debug)]
enum Event {
    /// A message for the proxy, from `from`.
    ToProxy { from: Peer, bytes: Bytes },
    /// A message the proxy sent to `to`.
    FromProxy {
        to: Peer,
        msg: Message,
        txn: Option<TxnRef>,
    },
    /// A caller CANCELs its request.
    Cancel(usize),
}

/// The network. See the module docs.
pub struct Net<P> {
    /// The proxy core under test.
    pub proxy: Proxy<P>,
    /// Its transaction layer.
    pub txn: TxnLayer,
    door: FrontDoor,
    local: Vec<(Transport, SocketAddr)>,
    /// When the network started.
    pub start: Instant,
    /// The virtual clock.
    pub now: Instant,
    /// Everything the proxy sent, with its destination, in order (lost ones too).
    pub sent: Vec<(Peer, Message)>,
    /// The transaction each of those was sent by, if any.
    pub refs: Vec<Option<TxnRef>>,
    /// When each of those was sent.
    pub sent_at: Vec<Instant>,
    /// How many messages the links lost.
    pub lost: usize,
    targets: Option<Targets>,
    callers: Vec<Caller>,
    links: HashMap<IpAddr, Link>,
    default_link: Link,
    rng: Rng,
    agenda: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    ready: VecDeque<Event>,
    lines: Vec<(Instant, String)>,
    decisions: Vec<Decision>,
}

impl<P> std::fmt::Debug for Net<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("now", &(self.now - self.start))
            .field("sent", &self.sent.len())
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl<P: RoutePolicy> Net<P> {
    /// A proxy at [`PROXY`] (UDP and TCP) asking `policy`, with `cfg` otherwise.
    pub fn with_policy(cfg: ProxyConfig, policy: P, resolver: Box<dyn Resolver + Send>) -> Net<P> {
        let local = addr(PROXY);
        let cfg = ProxyConfig {
            local: vec![(Transport::Udp, local), (Transport::Tcp, local)],
            ..cfg
        };
        Net::from_config(cfg, policy, resolver)
    }

    /// A proxy with exactly these settings (its own addresses, secret, `[security]`).
    pub fn from_config(cfg: ProxyConfig, policy: P, resolver: Box<dyn Resolver + Send>) -> Net<P> {
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; all later times are virtual
        let now = Instant::now();
        Net {
            local: cfg.local.clone(),
            proxy: Proxy::new(cfg, policy, resolver),
            txn: TxnLayer::new(Config::default()),
            door: FrontDoor::new(rollover_sip::Limits::default()),
            start: now,
            now,
            sent: Vec::new(),
            refs: Vec::new(),
            sent_at: Vec::new(),
            lost: 0,
            targets: None,
            callers: Vec::new(),
            links: HashMap::new(),
            default_link: Link::default(),
            rng: Rng::new(1),
            agenda: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            ready: VecDeque::new(),
            lines: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Every address that is not a caller answers as `world` says (without it, nobody
    /// answers: the test plays the other ends).
    pub fn answer_with(&mut self, world: &World) -> &mut Self {
        self.targets = Some(Targets::new(world));
        self
    }

    /// The seed of the generator that draws losses (1 unless set).
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.rng = Rng::new(seed);
        self
    }

    /// The link between the proxy and every address of `ip`.
    pub fn link(&mut self, ip: IpAddr, link: Link) -> &mut Self {
        self.links.insert(ip, link);
        self
    }

    /// The link to every address without its own.
    pub fn default_link(&mut self, link: Link) -> &mut Self {
        self.default_link = link;
        self
    }

    fn link_to(&self, ip: IpAddr) -> Link {
        self.links.get(&ip).copied().unwrap_or(self.default_link)
    }

    /// Time since the network started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A scripted caller at `from` sends `bytes` (a request) to the proxy; it will ACK the
    /// finals it receives. Returns the caller's index.
    pub fn call(&mut self, from: Peer, bytes: Bytes) -> usize {
        let first_line = bytes
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        self.lines.push((
            self.now,
            format!("caller → {}", String::from_utf8_lossy(first_line)),
        ));
        self.callers.push(Caller {
            peer: from,
            request: Message::parse(bytes.clone()).ok(),
            final_status: None,
        });
        self.send(from, bytes);
        self.callers.len() - 1
    }

    /// Caller `caller` CANCELs its request `after` from now, unless it has a final by then.
    pub fn cancel_after(&mut self, caller: usize, after: Duration) {
        let at = self.now + after;
        self.schedule(at, Event::Cancel(caller));
    }

    /// The first final status caller `caller` received.
    pub fn final_status(&self, caller: usize) -> Option<u16> {
        self.callers.get(caller).and_then(|c| c.final_status)
    }

    /// `from` sends `bytes` to the proxy over its link; nothing runs yet.
    pub fn send(&mut self, from: Peer, bytes: Bytes) {
        let link = self.link_to(from.addr.ip());
        if from.transport == Transport::Udp && self.rng.chance(link.loss) {
            self.lost += 1;
            self.lines
                .push((self.now, format!("  ✗ lost on the way from {}", from.addr)));
            return;
        }
        let ev = Event::ToProxy { from, bytes };
        if link.latency.is_zero() {
            self.ready.push_back(ev);
        } else {
            let at = self.now + link.latency;
            self.schedule(at, ev);
        }
    }

    /// Receives `text` (lines ending in `\n`) from `from`, and runs what is due now.
    pub fn recv(&mut self, from: Peer, text: &str) {
        self.recv_bytes(from, text.replace('\n', "\r\n").into());
    }

    /// Receives `bytes` from `from`, and runs what is due now.
    pub fn recv_bytes(&mut self, from: Peer, bytes: Bytes) {
        self.send(from, bytes);
        self.settle();
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.agenda.push(Reverse((at, self.seq)));
    }

    /// Runs everything that happens without time passing: transaction events into the
    /// proxy, its transmits onto the links, messages without latency to their ends.
    pub fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.txn.poll_event() {
                busy = true;
                self.proxy.handle_txn_event(self.now, ev, &mut self.txn);
            }
            while let Some((_, _, d)) = self.proxy.poll_decision() {
                busy = true;
                if !matches!(d, Decision::Trying { .. }) {
                    self.lines.push((self.now, format!("  {d}")));
                }
                self.decisions.push(d);
            }
            while let Some(t) = self.txn.poll_transmit() {
                busy = true;
                self.transmit(t);
            }
            while let Some(ev) = self.ready.pop_front() {
                busy = true;
                self.deliver(ev);
            }
            if !busy {
                return;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let Ok(msg) = Message::parse(t.bytes) else {
            return;
        };
        self.sent.push((t.dest, msg.clone()));
        self.refs.push(t.txn);
        self.sent_at.push(self.now);
        let link = self.link_to(t.dest.addr.ip());
        if t.dest.transport == Transport::Udp && self.rng.chance(link.loss) {
            self.lost += 1;
            let line = String::from_utf8_lossy(msg.start_line_bytes()).into_owned();
            self.lines.push((
                self.now,
                format!("  ✗ lost on the way to {}: {line}", t.dest.addr),
            ));
            return;
        }
        let ev = Event::FromProxy {
            to: t.dest,
            msg,
            txn: t.txn,
        };
        if link.latency.is_zero() {
            self.ready.push_back(ev);
        } else {
            let at = self.now + link.latency;
            self.schedule(at, ev);
        }
    }

    fn deliver(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::ToProxy { from, bytes } => {
                self.door
                    .handle(now, &mut self.proxy, &mut self.txn, from, bytes, 0);
            }
            Event::FromProxy { to, msg, txn } => {
                if let Some(i) = self.callers.iter().position(|c| c.peer == to) {
                    self.at_caller(i, &msg);
                } else if self.targets.is_some() {
                    let local = self.proxy_peer(to.transport).unwrap_or(to);
                    let Some(targets) = &mut self.targets else {
                        return;
                    };
                    let r = targets.receive(now, to, local, &msg);
                    self.lines.append(&mut targets.lines);
                    if let (Reception::Unreachable, Some(txn)) = (r, txn) {
                        self.txn
                            .handle_transport_error(txn, TransportError::Refused);
                    }
                }
            }
            Event::Cancel(i) => {
                let Some(c) = self.callers.get(i) else { return };
                if c.final_status.is_some() {
                    return;
                }
                let peer = c.peer;
                if let Some(cancel) = c.request.as_ref().and_then(|r| r.cancel(None).ok()) {
                    self.lines.push((now, "caller → CANCEL".to_owned()));
                    self.send(peer, cancel);
                }
            }
        }
    }

    /// The proxy's own address for `transport`.
    fn proxy_peer(&self, transport: Transport) -> Option<Peer> {
        let (transport, addr) = self
            .local
            .iter()
            .find(|(t, _)| *t == transport)
            .or(self.local.first())
            .copied()?;
        Some(Peer { transport, addr })
    }

    fn at_caller(&mut self, i: usize, msg: &Message) {
        self.lines.push((
            self.now,
            format!(
                "caller ← {}",
                String::from_utf8_lossy(msg.start_line_bytes())
            ),
        ));
        let for_invite = msg.cseq().is_ok_and(|c| c.method == Method::Invite);
        let Some(code) = msg.status().filter(|c| *c >= 200 && for_invite) else {
            return;
        };
        let Some(c) = self.callers.get_mut(i) else {
            return;
        };
        c.final_status.get_or_insert(code);
        let peer = c.peer;
        if let Some(ack) = c.request.as_ref().and_then(|r| caller_ack(r, msg, peer)) {
            self.send(peer, ack);
        }
    }

    /// When the next message arrives or timer fires, if anything is left to happen.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        [
            self.agenda.peek().map(|Reverse((t, _))| *t),
            self.targets.as_ref().and_then(Targets::next_due),
            self.txn.poll_timeout(),
            self.proxy.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Delivers the next message or fires the next deadline (moving the clock to it), then
    /// runs what follows at that instant. The time it ran at, or `None` when nothing is
    /// left to happen.
    pub fn step(&mut self) -> Option<Instant> {
        self.pump();
        let next = self.next_deadline()?;
        self.now = self.now.max(next);
        if self.agenda.peek().is_some_and(|Reverse((t, _))| *t == next) {
            if let Some(Reverse((_, id))) = self.agenda.pop() {
                if let Some(ev) = self.events.remove(&id) {
                    self.deliver(ev);
                }
            }
        } else if self.targets.as_ref().and_then(Targets::next_due) == Some(next) {
            if let Some(targets) = &mut self.targets {
                let reply = targets.fire_next(self.now);
                self.lines.append(&mut targets.lines);
                if let Some(r) = reply {
                    self.send(r.from, r.message.as_bytes().clone());
                }
            }
        } else {
            self.txn.handle_timeout(self.now);
            self.proxy.handle_timeout(self.now, &mut self.txn);
        }
        self.pump();
        Some(self.now)
    }

    /// Runs what is due now (no time passes).
    pub fn settle(&mut self) {
        let now = self.now;
        self.drive(now);
    }

    /// Steps until nothing is left to happen (true) or the next thing would happen after
    /// `until` (false); the clock stays at the last thing that happened.
    pub fn drive(&mut self, until: Instant) -> bool {
        loop {
            self.pump();
            match self.next_deadline() {
                None => return true,
                Some(t) if t > until => return false,
                Some(_) => {
                    self.step();
                }
            }
        }
    }

    /// Lets `d` of virtual time pass, delivering and firing everything on the way.
    pub fn run(&mut self, d: Duration) {
        let until = self.now + d;
        self.drive(until);
        self.now = until;
    }

    /// Everything the proxy sent to the IP address of `a`.
    pub fn sent_to(&self, a: &str) -> Vec<&Message> {
        let a = addr(a);
        self.sent
            .iter()
            .filter(|(p, _)| p.addr.ip() == a.ip())
            .map(|(_, m)| m)
            .collect()
    }

    /// The status codes of the responses the proxy sent to the IP address of `a`.
    pub fn statuses_to(&self, a: &str) -> Vec<u16> {
        self.sent_to(a).iter().filter_map(|m| m.status()).collect()
    }

    /// Notes a line on the timeline at the current time.
    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push((self.now, text.into()));
    }

    /// The timeline so far, the first caller's final, every decision and what is still held.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            timeline: self
                .lines
                .iter()
                .map(|(at, text)| Line {
                    at: *at - self.start,
                    text: text.clone(),
                })
                .collect(),
            final_status: self.final_status(0),
            decisions: self.decisions.clone(),
            leftover: (self.proxy.calls(), self.txn.len()),
        }
    }
}

/// Runs `request` through a proxy with `router` against `world`, for at most `limit` of
/// virtual time.
pub fn run<R: RoutePolicy>(
    router: R,
    request: &Message,
    world: &World,
    limit: Duration,
) -> Outcome {
    let local = addr(PROXY);
    let cfg = ProxyConfig {
        local: vec![
            (Transport::Udp, local),
            (Transport::Tcp, local),
            (Transport::Tls, SocketAddr::from(([192, 0, 2, 1], 5061))),
        ],
        ..ProxyConfig::default()
    };
    run_from(
        cfg,
        router,
        request.as_bytes().clone(),
        udp(CALLER),
        world,
        limit,
    )
}

/// Like [`run`], with the proxy's own settings (its addresses, secret and `[security]`)
/// and the request's bytes arriving from `caller`: they take the live proxy's path through
/// the same [`FrontDoor`], so a malformed or forged request is answered as the server
/// answers it. What `rollover simulate` and `rollover route` print.
pub fn run_from<R: RoutePolicy>(
    cfg: ProxyConfig,
    router: R,
    bytes: Bytes,
    caller: Peer,
    world: &World,
    limit: Duration,
) -> Outcome {
    let cfg = ProxyConfig {
        keep_decisions: true,
        ..cfg
    };
    let mut net = Net::from_config(cfg, router, Box::new(SimResolver));
    net.answer_with(world);
    let c = net.call(caller, bytes);
    if let Some(at) = world.caller_cancel() {
        net.cancel_after(c, at);
    }
    let until = net.start + limit;
    if !net.drive(until) {
        net.now = until;
        net.note("simulation time limit reached");
    }
    net.outcome()
}

/// What the caller sends after a final: the ACK (same branch for a non-2xx, §17.1.1.3; a
/// new one for a 2xx, §13.2.2.4).
fn caller_ack(invite: &Message, resp: &Message, caller: Peer) -> Option<Bytes> {
    let code = resp.status()?;
    if code >= 300 {
        return invite.ack_for(resp).ok();
    }
    let target = resp
        .contacts()
        .next()
        .and_then(Result::ok)
        .map(|c| c.uri_str.to_owned())
        .or_else(|| invite.request_uri_str().map(str::to_owned))?;
    let mut b = RequestBuilder::new(Method::Ack, &target)
        .via(&format!(
            "SIP/2.0/{} {};branch=z9hG4bK-caller-ack",
            caller.transport, caller.addr
        ))
        .from(&String::from_utf8_lossy(
            invite.value_bytes(invite.header(HeaderName::From)?),
        ))
        .to(&String::from_utf8_lossy(
            resp.value_bytes(resp.header(HeaderName::To)?),
        ))
        .call_id(invite.call_id().ok()?)
        .cseq(invite.cseq().ok()?.seq);
    let rr: Vec<String> = resp
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| format!("<{}>", r.uri_str))
        .collect();
    for r in rr.iter().rev() {
        b = b.header("Route", r);
    }
    b.build().ok()
}

/// A minimal INVITE from [`CALLER`] to `uri`, for simulations given a URI, not a file.
pub fn invite_to(uri: &str) -> Option<Message> {
    let b = RequestBuilder::new(Method::Invite, uri)
        .via(&format!("SIP/2.0/UDP {CALLER};branch=z9hG4bK-caller-1"))
        .from("<sip:caller@example.com>;tag=caller")
        .to(&format!("<{uri}>"))
        .call_id("simulated-call@example.com")
        .cseq(1)
        .header("Contact", &format!("<sip:caller@{CALLER}>"))
        .build()
        .ok()?;
    Message::parse(b).ok()
}
