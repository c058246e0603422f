//! The registrar's processing of a REGISTER (RFC 3261 §10.3), as a pure function: the
//! bindings an address-of-record has now and the request in, the bindings it must have
//! after (or the refusal) out. The caller stores the new set durably, then answers.
//!
//! ```text
//!  REGISTER ──▶ aor_of_register (steps 1, 5) ──▶ store.load(aor)
//!           ──▶ register(rules, now, aor, req, source, current) (steps 2, 6, 7)
//!           ──▶ Ok(new set) ──▶ store.save ──▶ ok_response (step 8)
//!           └─▶ Err(Refusal) ──▶ Refusal::response
//! ```
//!
//! Step 3 (authentication) and step 4 (authorisation) belong to the caller.

use bytes::Bytes;
use rollover_sip::{HeaderName, Message, StatusCode, Uri};
use rollover_txn::Peer;

use crate::binding::{aor_domain, aor_key, Binding, QValue};

/// The registrar's limits, from `[registrar]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The domains registered here (lower case); the proxy's own addresses count too.
    pub domains: Vec<String>,
    /// The shortest registration accepted (`423 Interval Too Brief` below it).
    pub min_expires: u32,
    /// The longest registration granted: longer requests are shortened to it.
    pub max_expires: u32,
    /// The duration of a registration that names none.
    pub default_expires: u32,
    /// How many contacts one address-of-record may have.
    pub max_contacts: usize,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            domains: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

impl Rules {
    /// Whether `host` is one of our domains.
    pub fn is_local_domain(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }
}

/// Why a REGISTER is refused; each maps to the response it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Malformed for a registrar (a bad Contact, `*` with other contacts or a non-zero
    /// expiry, no Call-ID or CSeq): 400.
    #[error("bad REGISTER: {0}")]
    Malformed(&'static str),
    /// The To header names no address-of-record of ours: 404 (§10.3 step 5).
    #[error("no such address-of-record here")]
    UnknownAor,
    /// Require names extensions we lack: 420 with Unsupported (§10.3 step 2).
    #[error("unsupported extensions: {0}")]
    Unsupported(String),
    /// A contact asks for less than the minimum: 423 with Min-Expires (§10.3 step 7).
    #[error("expiry below the minimum of {0} s")]
    TooBrief(u32),
    /// Same Call-ID as a binding, but a CSeq not above it: a reordered or replayed
    /// request, refused with 400 (§10.3 step 7: "the request fails").
    #[error("CSeq not above the binding's for the same Call-ID")]
    OutOfOrder,
    /// The address-of-record would have more contacts than allowed: 403.
    #[error("more than {0} contacts for one address-of-record")]
    TooManyContacts(usize),
}

impl Refusal {
    /// The status and reason phrase.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Malformed(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
            Refusal::UnknownAor => (StatusCode::NOT_FOUND, "Not Found"),
            Refusal::Unsupported(_) => (StatusCode::BAD_EXTENSION, "Bad Extension"),
            Refusal::TooBrief(_) => (StatusCode::INTERVAL_TOO_BRIEF, "Interval Too Brief"),
            Refusal::OutOfOrder => (StatusCode::BAD_REQUEST, "Out Of Order CSeq"),
            Refusal::TooManyContacts(_) => (StatusCode::FORBIDDEN, "Too Many Contacts"),
        }
    }

    /// The response to `req`.
    pub fn response(&self, req: &Message) -> Bytes {
        let (code, reason) = self.status();
        let mut b = req.response(code.as_u16(), reason).to_tag(&reply_tag(req));
        let min;
        match self {
            Refusal::TooBrief(m) => {
                min = m.to_string();
                b = b.header("Min-Expires", &min);
            }
            Refusal::Unsupported(tags) => b = b.header("Unsupported", tags),
            Refusal::TooManyContacts(n) => {
                min = format!("399 rollover \"at most {n} contacts per address-of-record\"");
                b = b.header("Warning", &min);
            }
            _ => {}
        }
        b.build()
    }
}

/// The address-of-record a REGISTER is for: the To URI (§10.3 step 5), which must be in
/// one of our domains.
pub fn aor_of_register(rules: &Rules, req: &Message) -> Result<String, Refusal> {
    let to = req
        .to_header()
        .map_err(|_| Refusal::Malformed("no readable To"))?;
    let aor = aor_key(&to.uri).ok_or(Refusal::UnknownAor)?;
    if !rules.is_local_domain(aor_domain(&aor)) {
        return Err(Refusal::UnknownAor);
    }
    Ok(aor)
}

/// The bindings `aor` has after `req` (RFC 3261 §10.3 steps 2, 6 and 7), all-or-nothing:
/// a refusal changes nothing. `current` may hold expired bindings; the result does not.
/// A request with the same Call-ID and CSeq as a binding's is a retransmission and leaves
/// that binding as it is.
pub fn register(
    rules: &Rules,
    now: u64,
    aor: &str,
    req: &Message,
    source: &Peer,
    current: &[Binding],
) -> Result<Vec<Binding>, Refusal> {
    // Step 2: Require. Path (RFC 3327) is the one extension a registrar here handles.
    let unsupported: Vec<&str> = req
        .tokens(HeaderName::Require)
        .filter(|t| !t.eq_ignore_ascii_case("path"))
        .collect();
    if !unsupported.is_empty() {
        return Err(Refusal::Unsupported(unsupported.join(", ")));
    }
    let call_id = req
        .call_id()
        .map_err(|_| Refusal::Malformed("no Call-ID"))?;
    let cseq = req.cseq().map_err(|_| Refusal::Malformed("no CSeq"))?.seq;
    let header_expires = req
        .expires()
        .map_err(|_| Refusal::Malformed("bad Expires"))?;
    let mut next: Vec<Binding> = current
        .iter()
        .filter(|b| b.is_alive(now))
        .cloned()
        .collect();
    // Step 6: `Contact: *` removes every binding, with `Expires: 0` and nothing else.
    if req.contact_is_star() {
        let others = req
            .values(HeaderName::Contact)
            .filter(|v| !v.as_ref().is_ok_and(|(_, v)| *v == "*"))
            .count();
        if others > 0 || header_expires != Some(0) {
            return Err(Refusal::Malformed(
                "Contact: * needs Expires: 0 and no other contact",
            ));
        }
        // Step 7: a binding with the same Call-ID goes only for a higher CSeq.
        if next.iter().any(|b| b.call_id == call_id && cseq <= b.cseq) {
            return Err(Refusal::OutOfOrder);
        }
        return Ok(Vec::new());
    }
    let path: Vec<String> = req
        .headers_by_name("Path")
        .filter_map(|h| req.value_str(h).ok())
        .flat_map(|v| rollover_sip::scan::split_top_level(v, b','))
        .map(|p| rollover_sip::scan::trim_lws(p).to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let mut contacts = Vec::new();
    for c in req.contacts() {
        let c = c.map_err(|_| Refusal::Malformed("unreadable Contact"))?;
        if c.params.get("q").is_some() && c.q().is_none() {
            return Err(Refusal::Malformed("bad q value"));
        }
        contacts.push(c);
    }
    // Step 7, first the whole request checked, so a refusal changes nothing.
    for c in &contacts {
        let expires = c
            .expires()
            .or(header_expires)
            .unwrap_or(rules.default_expires);
        if expires != 0 && expires < rules.min_expires {
            return Err(Refusal::TooBrief(rules.min_expires));
        }
    }
    for c in &contacts {
        let expires = c
            .expires()
            .or(header_expires)
            .unwrap_or(rules.default_expires)
            .min(rules.max_expires);
        let existing = next
            .iter()
            .position(|b| same_contact(&b.contact, c.uri_str, &c.uri));
        if let Some(i) = existing {
            if let Some(b) = next.get(i) {
                if b.call_id == call_id {
                    if cseq < b.cseq {
                        return Err(Refusal::OutOfOrder);
                    }
                    if cseq == b.cseq {
                        continue; // a retransmission: already applied
                    }
                }
            }
            next.remove(i);
        }
        if expires == 0 {
            continue;
        }
        next.push(Binding {
            aor: aor.to_owned(),
            contact: c.uri_str.to_owned(),
            q: c.q().unwrap_or(1000),
            expires_at: now + u64::from(expires),
            call_id: call_id.to_owned(),
            cseq,
            path: path.clone(),
            received: Some(*source),
        });
    }
    // Over the limit only by adding: a phone already over it (the limit was lowered) may
    // still refresh or remove.
    let alive_before = current.iter().filter(|b| b.is_alive(now)).count();
    if next.len() > rules.max_contacts && next.len() > alive_before {
        return Err(Refusal::TooManyContacts(rules.max_contacts));
    }
    Ok(next)
}

/// Whether a stored contact is the one a request names (§10.3 step 7: URI comparison
/// rules of §19.1.4 for SIP URIs, the text otherwise).
fn same_contact(stored: &str, text: &str, uri: &Uri<'_>) -> bool {
    match (Uri::parse(stored), uri.as_sip()) {
        (Ok(Uri::Sip(a)), Some(b)) => a.equivalent(b),
        _ => stored == text,
    }
}

/// The 200 OK (§10.3 step 8): every current binding with its remaining time; the Path
/// echoed when the phone said it supports it (RFC 3327 §5.3).
pub fn ok_response(req: &Message, bindings: &[Binding], now: u64) -> Bytes {
    let date = http_date(now);
    let mut b = req
        .reply(StatusCode::OK)
        .to_tag(&reply_tag(req))
        .header("Date", &date);
    let lines: Vec<String> = bindings
        .iter()
        .filter(|x| x.is_alive(now))
        .map(|x| {
            let mut s = format!("<{}>;expires={}", x.contact, x.remaining(now));
            if x.q != 1000 {
                s.push_str(&format!(";q={}", QValue(x.q)));
            }
            s
        })
        .collect();
    for l in &lines {
        b = b.header("Contact", l);
    }
    let path_ok = req
        .tokens(HeaderName::Supported)
        .any(|t| t.eq_ignore_ascii_case("path"));
    let paths: Vec<String> = if path_ok {
        req.headers_by_name("Path")
            .filter_map(|h| req.value_str(h).ok())
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    for p in &paths {
        b = b.header("Path", p);
    }
    b.build()
}

/// The To tag of a registrar response: the same for a retransmitted request.
/// `now` (seconds since the epoch) as an RFC 1123 date in GMT, for the 200's Date header
/// (§10.3 step 8: phones without a clock set theirs from it).
pub fn http_date(now: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = now / 86_400;
    let secs = now % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS.get((days % 7) as usize).copied().unwrap_or("Thu"),
        MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan"),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The start of the To tag of every response the registrar makes (its ACKs are dropped).
pub const REPLY_TAG_PREFIX: &str = "rg";

pub(crate) fn reply_tag(req: &Message) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.call_id().ok().hash(&mut h);
    req.from_tag().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    format!("{REPLY_TAG_PREFIX}{:012x}", h.finish() & 0xffff_ffff_ffff)
}
