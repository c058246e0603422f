//! Forwarding mechanics (RFC 3261 §16.4, §16.6, §16.11): our addresses, branch ids and loop
//! detection, Route pre-processing, and the edits applied to what we relay.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use rollover_sip::{HeaderName, Host, Message, ParseError, SipUri, Uri, Via};
use rollover_txn::{Peer, Transport};

use crate::secret::Secret;
use rollover_failover::default_port;

/// Every branch we create starts with this, so our own Vias can be told apart.
const BRANCH_PREFIX: &str = "z9hG4bKrl";

/// Our listening addresses and the secret our Route entries and branches are signed with.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    addrs: Vec<(Transport, SocketAddr)>,
    secret: Secret,
    /// Per transport: the start of our Via value and of our Record-Route entry, written
    /// once rather than formatted for every request.
    prefixes: Vec<(Transport, Prefixes)>,
}

#[derive(Debug, Clone)]
struct Prefixes {
    /// `SIP/2.0/UDP host:port;branch=`
    via: String,
    /// `<sip:host:port;transport=tcp;lr;tk=`
    record_route: String,
}

impl Prefixes {
    fn new(t: Transport, sent_by: SocketAddr) -> Prefixes {
        let param = if t == Transport::Udp {
            String::new()
        } else {
            format!(";transport={}", t.as_str().to_ascii_lowercase())
        };
        Prefixes {
            via: format!("SIP/2.0/{t} {sent_by};branch="),
            record_route: format!("<sip:{sent_by}{param};lr;{TOKEN_PARAM}="),
        }
    }
}

/// What Route pre-processing found (RFC 3261 §16.4, with only our own entries trusted).
#[derive(Debug)]
pub(crate) struct Routed {
    /// The request with our own entries removed (and a strict router's Request-URI
    /// restored); `None` when nothing was removed (the request as it came, not copied).
    pub request: Option<Message>,
    /// At least one entry was ours, its token valid: the request follows a route set we
    /// recorded.
    pub ours: bool,
    /// Route entries left that we did not issue (a preloaded route).
    pub foreign: usize,
}

/// The URI parameter carrying our Record-Route token.
const TOKEN_PARAM: &str = "tk";

impl Local {
    pub fn new(addrs: &[(Transport, SocketAddr)], secret: Secret) -> Local {
        let mut local = Local {
            addrs: addrs.to_vec(),
            secret,
            prefixes: Vec::new(),
        };
        for t in addrs.iter().map(|(t, _)| *t) {
            if local.prefixes.iter().all(|(have, _)| *have != t) {
                let prefixes = Prefixes::new(t, local.for_transport(t));
                local.prefixes.push((t, prefixes));
            }
        }
        local
    }

    /// The prefixes for `transport`: written at start for the transports we listen on,
    /// made now for another one.
    fn prefixes(&self, transport: Transport) -> std::borrow::Cow<'_, Prefixes> {
        match self.prefixes.iter().find(|(t, _)| *t == transport) {
            Some((_, p)) => std::borrow::Cow::Borrowed(p),
            None => {
                std::borrow::Cow::Owned(Prefixes::new(transport, self.for_transport(transport)))
            }
        }
    }

    /// Our Via value over `transport` with `branch`.
    pub fn via(&self, transport: Transport, branch: &str) -> String {
        let p = self.prefixes(transport);
        let mut v = String::with_capacity(p.via.len() + branch.len());
        v.push_str(&p.via);
        v.push_str(branch);
        v
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The address for our Via and Record-Route on a transport.
    pub fn for_transport(&self, t: Transport) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(lt, _)| *lt == t)
            .or(self.addrs.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    fn is_us(&self, host: &Host<'_>, port: Option<u16>, transport: Transport) -> bool {
        let ip: IpAddr = match host {
            Host::V4(ip) => (*ip).into(),
            Host::V6(ip) => (*ip).into(),
            Host::Domain(d) => match d.parse() {
                Ok(ip) => ip,
                Err(_) => return false,
            },
        };
        let port = port.unwrap_or(default_port(transport));
        self.addrs
            .iter()
            .any(|(_, a)| a.port() == port && (a.ip() == ip || a.ip().is_unspecified()))
    }

    /// Whether an address is one of ours (sending there would loop back).
    pub fn is_local_addr(&self, addr: SocketAddr) -> bool {
        self.addrs.iter().any(|(_, a)| {
            a.port() == addr.port()
                && (a.ip() == addr.ip() || (a.ip().is_unspecified() && addr.ip().is_loopback()))
        })
    }

    /// Whether a Via names us and carries a branch of our shape (loop detection; anyone
    /// can write one, so it proves nothing on its own: see [`Local::via_is_signed`]).
    pub fn is_ours(&self, via: &Via<'_>) -> bool {
        let t = Transport::from_token(via.transport).unwrap_or(Transport::Udp);
        self.is_us(&via.host, via.port, t)
            && via.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
    }

    /// Whether the top Via of a response is one we wrote for a request relayed to
    /// `upstream` in this Call-ID: its branch's MAC checks out.
    pub fn via_is_signed(&self, via: &Via<'_>, call_id: &str, upstream: &Peer) -> bool {
        let Some((head, mac)) = via
            .branch()
            .filter(|_| self.is_ours(via))
            .and_then(|b| b.rsplit_once('.'))
        else {
            return false;
        };
        self.secret
            .branch_mac_ok(mac, head, call_id, Some(upstream))
    }

    fn uri_is_us(&self, uri: &SipUri<'_>) -> bool {
        // `from_token` ignores case: the parameter is read as written, not lowered first.
        let t = uri
            .transport_param()
            .and_then(Transport::from_token)
            .unwrap_or(if uri.secure {
                Transport::Tls
            } else {
                Transport::Udp
            });
        uri.user.is_none() && self.is_us(&uri.host, uri.port, t)
    }

    /// Whether the Request-URI names this proxy itself (no user part, our address).
    pub fn request_uri_is_us(&self, req: &Message) -> bool {
        // Ours has no user part, and the URI parser ends a user part at the first '@'
        // anywhere: a Request-URI holding one (nearly every request) is not us, unparsed.
        if req.request_uri_str().is_some_and(|u| u.contains('@')) {
            return false;
        }
        matches!(req.request_uri(), Some(Ok(Uri::Sip(u))) if self.uri_is_us(&u))
    }

    /// Whether a Route (or strict-routed Request-URI) entry is one we recorded for this
    /// request's dialog: our address, and a token that checks out for its Call-ID and tags.
    pub fn entry_is_ours(&self, uri: &str, req: &Message) -> bool {
        // Every entry we write carries `tk=`: one without it (most Request-URIs) is not
        // ours, and costs no URI parse.
        let b = uri.as_bytes();
        let has_token = memchr::memchr_iter(b'=', b).any(|i| {
            i.checked_sub(TOKEN_PARAM.len())
                .and_then(|from| b.get(from..i))
                .is_some_and(|name| name.eq_ignore_ascii_case(TOKEN_PARAM.as_bytes()))
        });
        if !has_token {
            return false;
        }
        match Uri::parse(uri) {
            Ok(u) => self.parsed_entry_is_ours(&u, req),
            Err(_) => false,
        }
    }

    /// [`Local::entry_is_ours`] for an entry already parsed (a Route value's URI).
    fn parsed_entry_is_ours(&self, uri: &Uri<'_>, req: &Message) -> bool {
        let Uri::Sip(u) = uri else {
            return false;
        };
        let Some(Some(token)) = u.params.get(TOKEN_PARAM) else {
            return false;
        };
        let call_id = req.call_id().unwrap_or_default();
        self.uri_is_us(u)
            && self.secret.route_token_ok(
                token,
                call_id,
                Some(req.from_tag().unwrap_or_default()),
                req.to_tag(),
            )
    }

    /// Whether the request's top Route entry is one of ours (the cheap check the front
    /// door makes before any state exists).
    pub fn top_route_is_ours(&self, req: &Message) -> bool {
        let top = req.routes().next().and_then(Result::ok);
        match top {
            Some(r) => self.parsed_entry_is_ours(&r.uri, req),
            None => matches!(req.request_uri_str(), Some(u) if self.entry_is_ours(u, req)),
        }
    }

    /// The Record-Route value for a request we forward over `transport`.
    pub fn record_route(&self, req: &Message, transport: Transport) -> String {
        let token = self.secret.route_token(
            req.call_id().unwrap_or_default(),
            req.from_tag().unwrap_or_default(),
        );
        let p = self.prefixes(transport);
        let mut rr = String::with_capacity(p.record_route.len() + token.len() + 1);
        rr.push_str(&p.record_route);
        rr.push_str(&token);
        rr.push('>');
        rr
    }

    /// §16.3 item 4: the request carries one of our Vias whose branch hash equals this
    /// request's: it has been here before with the same routing inputs (a loop, not a spiral).
    pub fn is_loop(&self, req: &Message) -> bool {
        let mut needle = String::with_capacity(BRANCH_PREFIX.len() + 8);
        needle.push_str(BRANCH_PREFIX);
        push_hex(&mut needle, loop_hash(req).into(), 8);
        let hash = needle
            .as_bytes()
            .get(BRANCH_PREFIX.len()..)
            .unwrap_or_default();
        // A branch is a slice of its Via's text: when no Via line holds our prefix and this
        // hash, none parses to a match (a first INVITE costs no Via parse).
        if !req
            .headers_named(HeaderName::Via)
            .any(|h| memchr::memmem::find(req.value_bytes(h), needle.as_bytes()).is_some())
        {
            return false;
        }
        req.vias().filter_map(Result::ok).any(|v| {
            self.is_ours(&v)
                && v.branch()
                    .and_then(|b| {
                        b.as_bytes()
                            .get(BRANCH_PREFIX.len()..BRANCH_PREFIX.len() + 8)
                    })
                    .is_some_and(|h| h == hash)
        })
    }

    /// When all §16.4 does to this request is remove one entry of ours from the top of the
    /// Route set (the usual in-dialog request: the Request-URI is not ours, the next entry
    /// is not ours either), the URI it then goes to: the next Route entry, else the
    /// Request-URI. A request relayed statelessly can then drop that entry in the same edit
    /// that adds our Via, instead of being copied once for each.
    pub fn single_own_route_then(&self, req: &Message) -> Option<String> {
        if matches!(req.request_uri_str(), Some(u) if self.entry_is_ours(u, req)) {
            return None;
        }
        let mut entries = req.routes();
        let first = entries.next()?.ok()?;
        if !self.parsed_entry_is_ours(&first.uri, req) {
            return None;
        }
        match entries.next() {
            None => req.request_uri_str().map(str::to_owned),
            Some(Ok(next)) if !self.parsed_entry_is_ours(&next.uri, req) => {
                Some(next.uri_str.to_owned())
            }
            Some(_) => None,
        }
    }

    /// §16.4, trusting only what we issued: a Request-URI that is our own signed entry came
    /// from a strict router (the real one is restored from the last Route); signed entries
    /// of ours on top of the Route set are removed. Anything else is left and counted as
    /// foreign: the caller decides whether to honour it.
    pub fn preprocess_route(&self, req: &Message) -> Result<Routed, ParseError> {
        let entries: Vec<_> = req.routes().filter_map(Result::ok).collect();
        let ruri_ours = matches!(req.request_uri_str(), Some(u) if self.entry_is_ours(u, req));
        let routes = || entries.iter().map(|r| r.uri_str);
        if ruri_ours && !entries.is_empty() {
            let routes: Vec<&str> = routes().collect();
            let (last, rest) = routes.split_last().unwrap_or((&"", &[]));
            let mut e = req.edit();
            e.set_request_uri(last).remove_all(HeaderName::Route);
            if !rest.is_empty() {
                let joined = rest
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect::<Vec<_>>()
                    .join(", ");
                e.add_header("Route", &joined);
            }
            return Ok(Routed {
                request: Some(e.finish_message()?),
                ours: true,
                foreign: rest.len(),
            });
        }
        // Ours on top, possibly twice (one entry per transport when they differ, RFC 5658).
        let popped = entries
            .iter()
            .take_while(|r| self.parsed_entry_is_ours(&r.uri, req))
            .count();
        let foreign = entries.len() - popped;
        if popped == 0 {
            return Ok(Routed {
                request: None,
                ours: false,
                foreign,
            });
        }
        let request = if popped == 1 {
            req.edit().pop_route().finish_message()?
        } else {
            // Both entries of a double Record-Route (RFC 5658): rebuild the Route set from
            // what remains (one edit cannot pop the same line twice).
            let mut e = req.edit();
            e.remove_all(HeaderName::Route);
            let rest: Vec<String> = routes().skip(popped).map(|r| format!("<{r}>")).collect();
            if !rest.is_empty() {
                e.add_header("Route", &rest.join(", "));
            }
            e.finish_message()?
        };
        Ok(Routed {
            request: Some(request),
            ours: true,
            foreign,
        })
    }
}

/// The ACK and BYE with which the proxy itself ends a dialog a late 2xx set up
/// (`late_answer = "hangup"`): sent as the caller would, to the 2xx's Contact along its
/// route set (our own entries left out). Returns the first hop and the two requests.
pub(crate) fn hangup(
    invite: &Message,
    resp: &Message,
    transport: Transport,
    local: &Local,
    ids: &mut Ids,
) -> Option<(String, Bytes, Message)> {
    let contact = resp.contacts().next()?.ok()?.uri_str.to_owned();
    // An entry that does not decode spoils the whole route set: no hang-up along it.
    let routes: Vec<String> = resp
        .record_routes()
        .map(|r| r.map(|r| r.uri_str.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .ok()?
        .into_iter()
        .filter(|r| !local.entry_is_ours(r, resp))
        .collect();
    let routes: Vec<String> = routes.into_iter().rev().collect();
    let hop = routes.first().cloned().unwrap_or_else(|| contact.clone());
    let from =
        String::from_utf8_lossy(invite.value_bytes(invite.header(HeaderName::From)?)).into_owned();
    let to = String::from_utf8_lossy(resp.value_bytes(resp.header(HeaderName::To)?)).into_owned();
    let call_id = invite.call_id().ok()?;
    let seq = invite.cseq().ok()?.seq;
    let build = |method: rollover_sip::Method, seq: u32, branch: String| {
        let mut b = rollover_sip::RequestBuilder::new(method, &contact)
            .via(&local.via(transport, &branch))
            .from(&from)
            .to(&to)
            .call_id(call_id)
            .cseq(seq);
        for r in &routes {
            b = b.header("Route", &format!("<{r}>"));
        }
        b.build().ok()
    };
    let ack = build(rollover_sip::Method::Ack, seq, ids.plain_branch())?;
    let bye = build(
        rollover_sip::Method::Bye,
        seq.wrapping_add(1),
        ids.plain_branch(),
    )?;
    Some((hop, ack, Message::parse(bye).ok()?))
}

/// Removes every Route header: a preloaded route from a source we do not trust.
pub(crate) fn strip_routes(req: &Message) -> Result<Message, ParseError> {
    req.edit().remove_all(HeaderName::Route).finish_message()
}

/// Appends `v` in lowercase hex, zero-padded to at least `min_digits`, as
/// `{v:0min_digits$x}` writes it (branches and tags are made for every request; the
/// formatting machinery costs several times this).
pub(crate) fn push_hex(out: &mut String, v: u64, min_digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - v.leading_zeros() as usize / 4).max(min_digits).max(1);
    for i in (0..digits).rev() {
        let nibble = v.checked_shr(4 * i as u32).unwrap_or(0) & 0xf;
        out.push(char::from(
            DIGITS.get(nibble as usize).copied().unwrap_or(b'0'),
        ));
    }
}

/// The hasher for values that must come out the same for a retransmission and need no
/// secret: a request's loop hash, the branch of a stateless ACK, a stateless reply's tag.
/// Fixed seeds (anyone can compute these, as with SipHash's zero keys before), a fraction
/// of SipHash's cost.
pub(crate) fn fixed_hasher() -> ahash::AHasher {
    use std::hash::BuildHasher;
    static SEEDS: ahash::RandomState = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    SEEDS.build_hasher()
}

/// Hash of what makes a request the same request at this hop (§16.6 step 8).
pub(crate) fn loop_hash(req: &Message) -> u32 {
    let mut h = fixed_hasher();
    req.request_uri_str().hash(&mut h);
    req.from_tag().hash(&mut h);
    req.to_tag().hash(&mut h);
    req.call_id().ok().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    (h.finish() & 0xffff_ffff) as u32
}

/// Branch ids and tags from a seeded generator (SplitMix64): reproducible in tests,
/// distinct across processes when seeded from the clock by the driver.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    state: u64,
    counter: u64,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids {
            state: seed,
            counter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A branch: our prefix, the loop hash, a unique part, and a MAC over them, the
    /// Call-ID and the upstream hop (see [`Local::via_is_signed`]).
    pub fn branch(
        &mut self,
        loop_hash: u32,
        secret: &Secret,
        call_id: &str,
        upstream: Option<&Peer>,
    ) -> String {
        self.counter += 1;
        let (n, r) = (self.counter, self.next() & 0xff_ffff);
        let mut branch = String::with_capacity(64);
        // BRANCH_PREFIX, the loop hash in 8 hex digits, '.', the counter, 6 random digits.
        branch.push_str(BRANCH_PREFIX);
        push_hex(&mut branch, loop_hash.into(), 8);
        branch.push('.');
        push_hex(&mut branch, n, 1);
        push_hex(&mut branch, r, 6);
        let mac = secret.branch_mac(&branch, call_id, upstream);
        branch.push('.');
        branch.push_str(&mac);
        branch
    }

    /// A branch for a request the proxy sends as a user agent (no loop hash, no MAC: no
    /// response to it is ever relayed).
    pub fn plain_branch(&mut self) -> String {
        self.counter += 1;
        let (n, r) = (self.counter, self.next() & 0xff_ffff);
        format!("z9hG4bKrlu{n:x}{r:06x}")
    }

    pub fn tag(&mut self) -> String {
        let mut tag = String::with_capacity(12);
        push_hex(&mut tag, self.next() & 0xffff_ffff_ffff, 12);
        tag
    }
}

/// The request for one branch (§16.6): Request-URI (unless routing by Route), Max-Forwards
/// minus one, our Via, and our Record-Route when asked.
/// With `record_route = Some(inbound)`, the transport the request came in on: when it
/// differs from the outgoing one, two Record-Route entries are written (RFC 5658), the
/// one facing the caller below the one facing the callee, so each side reaches us over its
/// own transport. `loop_hash` is [`loop_hash`] of `orig` (made once per request, not per
/// branch).
pub(crate) fn request(
    orig: &Message,
    loop_hash: u32,
    request_uri: Option<&str>,
    transport: Transport,
    record_route: Option<Transport>,
    local: &Local,
    ids: &mut Ids,
) -> Option<(Message, String)> {
    let upstream = orig.top_via().ok().and_then(|v| via_destination(&v));
    let branch = ids.branch(
        loop_hash,
        local.secret(),
        orig.call_id().unwrap_or_default(),
        upstream.as_ref(),
    );
    let mut e = orig.edit();
    if let Some(uri) = request_uri {
        e.set_request_uri(uri);
    }
    e.decrement_max_forwards().ok()?;
    e.push_via(&local.via(transport, &branch));
    if let Some(inbound) = record_route {
        let outbound = local.record_route(orig, transport);
        if inbound == transport {
            e.push_record_route(&outbound);
        } else {
            // One line, the entry facing the callee first.
            let facing_caller = local.record_route(orig, inbound);
            e.push_record_route(&format!("{outbound}, {facing_caller}"));
        }
    }
    Some((e.finish_message().ok()?, branch))
}

/// A response relayed upstream: our Via removed (§16.7 step 3).
pub(crate) fn response(resp: &Message) -> Bytes {
    resp.edit().pop_via().finish()
}

/// A request forwarded statelessly (the ACK for a 2xx): the branch is a hash of the request
/// so a retransmission gets the same one (§16.11). With `pop_route`, the top Route entry
/// (ours, see [`Local::single_own_route_then`]) is removed in the same edit.
pub(crate) fn stateless_request(
    req: &Message,
    pop_route: bool,
    transport: Transport,
    local: &Local,
) -> Option<Bytes> {
    let mut h = fixed_hasher();
    req.call_id().ok().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    req.from_tag().hash(&mut h);
    req.to_tag().hash(&mut h);
    req.request_uri_str().hash(&mut h);
    req.top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned))
        .hash(&mut h);
    let mut branch = String::with_capacity(BRANCH_PREFIX.len() + 17);
    branch.push_str(BRANCH_PREFIX);
    branch.push('a');
    push_hex(&mut branch, h.finish(), 16);
    let mut e = req.edit();
    if pop_route {
        e.pop_route();
    }
    e.decrement_max_forwards().ok()?;
    e.push_via(&local.via(transport, &branch));
    Some(e.finish())
}

/// Where a response goes for a Via (§18.2.2): `received`/`rport` when present, else the
/// sent-by. Only IP addresses are used.
pub(crate) fn via_destination(via: &Via<'_>) -> Option<Peer> {
    let transport = Transport::from_token(via.transport)?;
    let (received, rport) = via.received_and_rport();
    let ip: IpAddr = match received {
        Some(r) => r.parse().ok()?,
        None => match via.host {
            Host::V4(ip) => ip.into(),
            Host::V6(ip) => ip.into(),
            Host::Domain(d) => d.parse().ok()?,
        },
    };
    let port = rport
        .flatten()
        .or(via.port)
        .unwrap_or(default_port(transport));
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn push_hex_writes_what_format_writes() {
        for v in [
            0,
            1,
            0xf,
            0x10,
            0xdead_beef,
            0x0123_4567,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            for width in [0, 1, 6, 8, 12, 16, 20] {
                let mut out = String::from("x");
                super::push_hex(&mut out, v, width);
                assert_eq!(out, format!("x{v:0width$x}"), "{v} {width}");
            }
        }
    }
}
