//! The Via header (RFC 3261 §20.42): its value parsed, the top one of a message found, and
//! the note a message keeps of where the top one's parts are.

use crate::message::{At, HostAt, Message, ViaSpans, NO_AT};
use crate::params::Params;
use crate::scan;
use crate::uri::{host_class, parse_hostport, Host, HOST_DIGIT, HOST_DOT};

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name and version, normally `SIP` and `2.0`.
    pub protocol: (&'a str, &'a str),
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or any token).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by port, when written.
    pub port: Option<u16>,
    /// The sent-by text as written (`host[:port]`).
    pub sent_by: &'a str,
    /// The via-params.
    pub params: Params<'a>,
    /// The first branch parameter's value, found while the parameters were checked.
    branch: Option<&'a str>,
    /// The first received parameter's value, found likewise.
    received: Option<&'a str>,
    /// The first rport parameter, found and read likewise.
    rport: Option<Option<u16>>,
}

impl<'a> Via<'a> {
    /// Parses one Via value. LWS is allowed around `/` and `;` (RFC 4475 §3.1.1.1).
    pub fn parse(s: &'a str) -> Option<Via<'a>> {
        Via::parse_plain(s).or_else(|| Via::parse_general(s))
    }

    /// The common shape in one pass: `SIP/2.0/transport SP host[:port]` and parameters
    /// without white space or quotes. Anything else returns `None` and goes to
    /// [`Via::parse_general`], which decides; when this succeeds it finds exactly what the
    /// general parser finds (`headers::tests::plain_matches_general`).
    pub(crate) fn parse_plain(s: &'a str) -> Option<Via<'a>> {
        let b = s.as_bytes();
        // "SIP/2.0/" with the letters in any case, as one word compare.
        let head = u64::from_le_bytes(*b.first_chunk::<8>()?);
        if head | 0x20_2020 != u64::from_le_bytes(*b"sip/2.0/") {
            return None;
        }
        let rest = b.get(8..)?;
        let t_len = rest.iter().position(|&c| !scan::is_token_char(c))?;
        if t_len == 0 || rest.get(t_len) != Some(&b' ') {
            return None;
        }
        let host_start = 8 + t_len + 1;
        let after_host = b.get(host_start..)?;
        let mut seen = 0u8;
        let mut host_len = after_host.len();
        for (i, &c) in after_host.iter().enumerate() {
            let class = host_class(c);
            if class == 0 {
                host_len = i;
                break;
            }
            seen |= class;
        }
        if seen == 0 || matches!(after_host.first(), Some(b'.' | b'-')) {
            return None;
        }
        let host_str = s.get(host_start..host_start + host_len)?;
        let host = if seen & !(HOST_DIGIT | HOST_DOT) == 0 && seen & HOST_DOT != 0 {
            scan::parse_ipv4(host_str).map_or(Host::Domain(host_str), Host::V4)
        } else {
            Host::Domain(host_str)
        };
        let mut at = host_start + host_len;
        let mut port = None;
        if b.get(at) == Some(&b':') {
            let digits = b
                .get(at + 1..)?
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            let p = scan::parse_decimal(s.get(at + 1..at + 1 + digits)?, u64::from(u16::MAX))?;
            port = Some(u16::try_from(p).ok()?);
            at += 1 + digits;
        }
        let sent_by = s.get(host_start..at)?;
        let params = match b.get(at) {
            None => "",
            Some(b';') => s.get(at + 1..)?,
            Some(_) => return None,
        };
        let mut seen = ViaParams::default();
        // One walk: each element is a non-empty run of plain bytes, optionally `=` and
        // another such run, then `;` or the end.
        let pb = params.as_bytes();
        let run = |from: usize| {
            pb.get(from..)
                .unwrap_or_default()
                .iter()
                .position(|&c| !crate::params::plain_char(c))
                .map_or(pb.len(), |n| from + n)
        };
        let mut at = 0;
        while !pb.is_empty() {
            let name_end = run(at);
            if name_end == at {
                return None;
            }
            let (value, end) = if pb.get(name_end) == Some(&b'=') {
                let value_end = run(name_end + 1);
                if value_end == name_end + 1 {
                    return None;
                }
                (Some(params.get(name_end + 1..value_end)?), value_end)
            } else {
                (None, name_end)
            };
            let name = params.get(at..name_end)?;
            if !seen.param(name, value) {
                return None;
            }
            match pb.get(end) {
                None => break,
                Some(b';') => at = end + 1,
                Some(_) => return None,
            }
        }
        Some(Via {
            protocol: (s.get(..3)?, s.get(4..7)?),
            transport: s.get(8..8 + t_len)?,
            host,
            port,
            sent_by,
            params: Params::new(params),
            branch: seen.branch.flatten(),
            received: seen.received.flatten(),
            rport: seen.rport,
        })
    }

    /// Any Via value the grammar allows, LWS and quoted parameter values included.
    pub(crate) fn parse_general(s: &'a str) -> Option<Via<'a>> {
        // Nearly every Via starts "SIP/2.0/": take that without searching for the slashes.
        let (protocol, rest) = match (s.get(..8), s.get(..3), s.get(4..7), s.get(8..)) {
            (Some(p), Some(name), Some(version), Some(rest))
                if p.eq_ignore_ascii_case("SIP/2.0/") =>
            {
                ((name, version), scan::trim_lws(rest))
            }
            _ => Via::parse_protocol(s)?,
        };
        let t_end = rest
            .bytes()
            .position(|c| !scan::is_token_char(c))
            .unwrap_or(rest.len());
        let transport = rest.get(..t_end)?;
        let rest = rest.get(t_end..)?;
        if transport.is_empty() || !rest.bytes().next().is_some_and(scan::is_lws) {
            return None;
        }
        let rest = scan::trim_lws(rest);
        let (sent_by, params) = match scan::find_byte(rest, b';') {
            Some(i) => (scan::trim_lws(rest.get(..i)?), rest.get(i + 1..)?),
            None => (rest, ""),
        };
        let (host, port) = parse_hostport(sent_by).ok()?;
        let params = Params::new(params);
        // One walk of the list: every element well formed, the first rport (the one
        // `rport()` reads) empty or a port number, and the first branch kept for `branch()`.
        let mut seen = ViaParams::default();
        for (name, value) in params.iter() {
            if !crate::params::pair_ok(name, value) {
                return None;
            }
            if !seen.param(name, value) {
                return None;
            }
        }
        Some(Via {
            protocol,
            transport,
            host,
            port,
            sent_by,
            params,
            branch: seen.branch.flatten(),
            received: seen.received.flatten(),
            rport: seen.rport,
        })
    }

    /// `protocol-name SLASH protocol-version SLASH` with LWS around the slashes; returns
    /// the name and version and the trimmed rest.
    fn parse_protocol(s: &'a str) -> Option<((&'a str, &'a str), &'a str)> {
        let slash = scan::find_byte(s, b'/')?;
        let name = scan::trim_lws(s.get(..slash)?);
        let s = s.get(slash + 1..)?;
        let slash = scan::find_byte(s, b'/')?;
        let version = scan::trim_lws(s.get(..slash)?);
        let rest = scan::trim_lws(s.get(slash + 1..)?);
        if !scan::is_token(name.as_bytes()) || !scan::is_token(version.as_bytes()) {
            return None;
        }
        Some(((name, version), rest))
    }

    /// The branch parameter (the first one, when there are several).
    pub fn branch(&self) -> Option<&'a str> {
        self.branch
    }

    /// Whether the branch carries the RFC 3261 magic cookie (else RFC 2543 matching applies).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(has_magic_cookie)
    }

    /// The `received` parameter (the first one).
    pub fn received(&self) -> Option<&'a str> {
        self.received
    }

    /// `None`: no rport; `Some(None)`: rport asked for; `Some(Some(p))`: filled in (RFC 3581).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }

    /// [`Via::received`] and [`Via::rport`]: where a response goes (RFC 3261 §18.2.2,
    /// RFC 3581) needs both. Both were noted when the parameters were checked.
    pub fn received_and_rport(&self) -> (Option<&'a str>, Option<Option<u16>>) {
        (self.received, self.rport)
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|t| t.parse().ok())
    }
}

/// Whether a branch carries the RFC 3261 magic cookie and something after it.
pub fn has_magic_cookie(branch: &str) -> bool {
    branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE)
}

/// What both Via parsers note while they walk the parameters: the first branch, received
/// and rport, kept for `branch()`, `received()` and `rport()` (every response routed and
/// every request stamped asks for them).
#[derive(Default)]
struct ViaParams<'a> {
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<u16>>,
}

impl<'a> ViaParams<'a> {
    /// Notes one parameter; `false` when it makes the Via invalid (an rport that is
    /// neither empty nor a port number).
    fn param(&mut self, name: &str, value: Option<&'a str>) -> bool {
        if self.branch.is_none() && name.eq_ignore_ascii_case("branch") {
            self.branch = Some(value);
        } else if self.rport.is_none() && name.eq_ignore_ascii_case("rport") {
            let port = match value {
                None => None,
                Some(v) => match v.parse::<u16>() {
                    Ok(p) => Some(p),
                    Err(_) => return false,
                },
            };
            self.rport = Some(port);
        } else if self.received.is_none() && name.eq_ignore_ascii_case("received") {
            self.received = Some(value);
        }
        true
    }
}

/// The first value of a Via field's value: what `vias().next()` yields, without the
/// iterator machinery. Its end is the first comma unless a quote or `<` comes before that
/// comma (a value without either cannot hold a comma of its own), so a list is parsed
/// once, its first value only.
pub(crate) fn top_via_of(v: &str) -> Option<Via<'_>> {
    Via::parse(first_via_value(v))
}

/// The first value of a Via field's value, trimmed (see [`top_via_of`]).
pub(crate) fn first_via_value(v: &str) -> &str {
    // One pass, a word at a time, to whichever comes first.
    let first = match scan::find_any_from(v.as_bytes(), 0, [b',', b'"', b'<']) {
        None => v,
        Some(i) if v.as_bytes().get(i) == Some(&b',') => v.get(..i).unwrap_or(v),
        Some(_) => scan::split_top_level(v, b',').next().unwrap_or(v),
    };
    scan::trim_lws(first)
}

/// Where `inner` lies inside `outer` (it must be a sub-slice of it).
fn at(outer: &str, inner: &str) -> Option<At> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

fn slice(v: &str, (start, end): At) -> Option<&str> {
    v.get(usize::from(start)..usize::from(end))
}

/// [`at`] of a value that may be absent, [`NO_AT`] for none (a value noted is never
/// empty, so it never reads as none).
fn at_or_none(outer: &str, inner: Option<&str>) -> Option<At> {
    match inner {
        Some(s) => at(outer, s).filter(|&(start, end)| start < end),
        None => Some(NO_AT),
    }
}

/// [`slice`] of a place that may be [`NO_AT`].
fn slice_or_none(v: &str, place: At) -> Option<Option<&str>> {
    match place {
        NO_AT => Some(None),
        p => slice(v, p).map(Some),
    }
}

/// The host of a sent-by (`[v6]:port`, `host:port` or `host`).
fn host_text(sent_by: &str) -> &str {
    match sent_by.strip_prefix('[') {
        Some(rest) => rest
            .find(']')
            .and_then(|i| sent_by.get(..i + 2))
            .unwrap_or(sent_by),
        None => sent_by.split(':').next().unwrap_or(sent_by),
    }
}

impl ViaSpans {
    pub(crate) fn of(via: &Via<'_>, v: &str, header: usize) -> Option<ViaSpans> {
        Some(ViaSpans {
            header: u16::try_from(header).ok()?,
            protocol: {
                let ((a, b), (c, d)) = (at(v, via.protocol.0)?, at(v, via.protocol.1)?);
                let byte = |x: u16| u8::try_from(x).ok();
                [byte(a)?, byte(b)?, byte(c)?, byte(d)?]
            },
            transport: at(v, via.transport)?,
            host: match via.host {
                Host::Domain(d) => HostAt::Domain(at(v, d)?),
                Host::V4(ip) => HostAt::V4(ip.octets()),
                Host::V6(_) => HostAt::V6(at(v, host_text(via.sent_by))?),
            },
            port: via.port,
            sent_by: at(v, via.sent_by)?,
            // No parameters may be an empty text from anywhere: any empty range will do.
            params: match via.params.as_str() {
                "" => (0, 0),
                p => at(v, p)?,
            },
            branch: at_or_none(v, via.branch)?,
            received: at_or_none(v, via.received)?,
            rport: via.rport,
        })
    }

    /// The header value the note's places are in.
    fn value<'m>(&self, m: &'m Message) -> Option<&'m str> {
        m.value_str(m.headers.get(self.header as usize)?).ok()
    }

    /// The branch and the sent-by alone, without rebuilding the rest.
    pub(crate) fn branch_and_sent_by<'m>(
        &self,
        m: &'m Message,
    ) -> Option<(Option<&'m str>, &'m str)> {
        let v = self.value(m)?;
        Some((slice_or_none(v, self.branch)?, slice(v, self.sent_by)?))
    }

    pub(crate) fn rebuild<'m>(&self, m: &'m Message) -> Option<Via<'m>> {
        let v = self.value(m)?;
        Some(Via {
            protocol: {
                let [a, b, c, d] = self.protocol.map(u16::from);
                (slice(v, (a, b))?, slice(v, (c, d))?)
            },
            transport: slice(v, self.transport)?,
            host: match self.host {
                HostAt::Domain(d) => Host::Domain(slice(v, d)?),
                HostAt::V4(ip) => Host::V4(ip.into()),
                HostAt::V6(text) => Host::parse(slice(v, text)?).ok()?,
            },
            port: self.port,
            sent_by: slice(v, self.sent_by)?,
            params: Params::new(slice(v, self.params)?),
            branch: slice_or_none(v, self.branch)?,
            received: slice_or_none(v, self.received)?,
            rport: self.rport,
        })
    }
}
