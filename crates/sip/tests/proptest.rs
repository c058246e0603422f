//! Property tests for the parser, the framer and the forwarding editor.
//!
//! - **Round trip.** Requests are generated from a model (methods incl. extension tokens,
//!   SIP URIs, 1–4 Vias, From/To with quoted or token display names and tags, Contacts,
//!   Routes, extension headers, a body), written out with random spellings (compact forms,
//!   random name case, folded lines, bare LF, space before the colon, shuffled header
//!   order), parsed, and every field read back must equal the model. Forwarding edits are
//!   then applied and the result parsed again.
//! - **No panics.** Arbitrary bytes and SIP-flavoured byte soup go through `Message::parse`,
//!   `validate()`, every typed accessor, the editor and the builders.
//! - **Framing.** A stream split at arbitrary points frames exactly like the stream fed whole.
//! - **Mutation.** Valid messages with bytes flipped, inserted, deleted or duplicated.
//!
//! Case counts are kept modest for CI; raise them with `PROPTEST_CASES=10000`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::prelude::*;
use rollover_sip::{
    DisplayName, Frame, HeaderName, Host, Limits, Message, Method, StreamFramer, Uri,
};

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum GenHost {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl GenHost {
    fn text(&self) -> String {
        match self {
            GenHost::Domain(d) => d.clone(),
            GenHost::V4(ip) => ip.to_string(),
            GenHost::V6(ip) => format!("[{ip}]"),
        }
    }

    fn check(&self, h: &Host<'_>) {
        match (self, h) {
            (GenHost::Domain(a), Host::Domain(b)) => assert_eq!(a, b),
            (GenHost::V4(a), Host::V4(b)) => assert_eq!(a, b),
            (GenHost::V6(a), Host::V6(b)) => assert_eq!(a, b),
            (a, b) => panic!("host {a:?} read back as {b:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct GenUri {
    secure: bool,
    user: Option<String>,
    host: GenHost,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
}

impl GenUri {
    fn text(&self) -> String {
        let mut s = String::from(if self.secure { "sips:" } else { "sip:" });
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host.text());
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }

    fn check(&self, u: &Uri<'_>) {
        let Uri::Sip(u) = u else {
            panic!("{} read back as {u:?}", self.text())
        };
        assert_eq!(u.secure, self.secure);
        assert_eq!(u.user, self.user.as_deref());
        self.host.check(&u.host);
        assert_eq!(u.port, self.port);
        let params: Vec<(String, Option<String>)> = u
            .params
            .iter()
            .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)))
            .collect();
        assert_eq!(params, self.params);
        assert_eq!(u.headers, None);
    }
}

#[derive(Debug, Clone)]
enum GenDisplay {
    /// Raw text, written as a quoted string; `escape_all` escapes every ASCII character.
    Quoted { raw: String, escape_all: bool },
    /// Tokens separated by one space.
    Tokens(Vec<String>),
}

impl GenDisplay {
    fn wire(&self) -> String {
        match self {
            GenDisplay::Quoted { raw, escape_all } => {
                let mut s = String::from('"');
                for c in raw.chars() {
                    if c == '"' || c == '\\' || (*escape_all && c.is_ascii()) {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
                s
            }
            GenDisplay::Tokens(t) => t.join(" "),
        }
    }

    fn text(&self) -> String {
        match self {
            GenDisplay::Quoted { raw, .. } => raw.clone(),
            GenDisplay::Tokens(t) => t.join(" "),
        }
    }
}

#[derive(Debug, Clone)]
struct GenAddr {
    display: Option<GenDisplay>,
    uri: GenUri,
    /// `<uri>` rather than a bare addr-spec (forced when the form needs it).
    bracketed: bool,
    /// No space between the display name and `<` (RFC 4475 §3.1.1.6).
    tight: bool,
    params: Vec<(String, String)>,
}

impl GenAddr {
    fn bracketed(&self) -> bool {
        self.bracketed || self.display.is_some() || !self.uri.params.is_empty()
    }

    /// The wire text; `fold` puts a line break between the display name and `<`.
    fn wire(&self, fold: &str) -> String {
        let mut s = String::new();
        if let Some(d) = &self.display {
            s.push_str(&d.wire());
            if !fold.is_empty() {
                s.push_str(fold);
            } else if !self.tight {
                s.push(' ');
            }
        }
        if self.bracketed() {
            s.push('<');
            s.push_str(&self.uri.text());
            s.push('>');
        } else {
            s.push_str(&self.uri.text());
        }
        for (n, v) in &self.params {
            s.push_str(&format!(";{n}={v}"));
        }
        s
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn check(&self, a: &rollover_sip::NameAddr<'_>) {
        assert_eq!(
            a.display.map(|d| d.text().into_owned()),
            self.display.as_ref().map(GenDisplay::text)
        );
        match (&self.display, a.display) {
            (Some(GenDisplay::Quoted { .. }), Some(DisplayName::Quoted(_)))
            | (Some(GenDisplay::Tokens(_)), Some(DisplayName::Tokens(_)))
            | (None, None) => {}
            (g, p) => panic!("display {g:?} read back as {p:?}"),
        }
        assert_eq!(a.uri_str, self.uri.text());
        assert_eq!(a.bracketed, self.bracketed());
        self.uri.check(&a.uri);
        assert_eq!(a.tag(), self.param("tag"));
        let params: Vec<(String, String)> = a
            .params
            .iter()
            .map(|(n, v)| (n.to_owned(), v.unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(params, self.params);
    }
}

#[derive(Debug, Clone)]
struct GenVia {
    transport: String,
    host: GenHost,
    port: Option<u16>,
    branch: String,
    rport: bool,
    received: Option<Ipv4Addr>,
    /// `SIP / 2.0 / UDP host ; branch=…` (RFC 4475 §3.1.1.1).
    spaced: bool,
}

impl GenVia {
    fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host.text()),
            None => self.host.text(),
        }
    }

    fn wire(&self) -> String {
        let mut s = if self.spaced {
            format!(
                "SIP / 2.0 / {} {} ; branch = {}",
                self.transport,
                self.sent_by(),
                self.branch
            )
        } else {
            format!(
                "SIP/2.0/{} {};branch={}",
                self.transport,
                self.sent_by(),
                self.branch
            )
        };
        if self.rport {
            s.push_str(";rport");
        }
        if let Some(r) = self.received {
            s.push_str(&format!(";received={r}"));
        }
        s
    }

    fn check(&self, v: &rollover_sip::Via<'_>) {
        assert_eq!(v.protocol, ("SIP", "2.0"));
        assert_eq!(v.transport, self.transport);
        self.host.check(&v.host);
        assert_eq!(v.port, self.port);
        assert_eq!(v.sent_by, self.sent_by());
        assert_eq!(v.branch(), Some(self.branch.as_str()));
        assert!(v.has_magic_cookie());
        assert_eq!(v.rport(), self.rport.then_some(None));
        assert_eq!(
            v.received(),
            self.received.map(|r| r.to_string()).as_deref()
        );
    }
}

/// How a generated message is spelled on the wire; every choice is a free variation.
#[derive(Debug, Clone)]
struct Style {
    /// Bare LF line ends instead of CRLF.
    lf_only: bool,
    /// CRLFs before the start line (RFC 3261 §7.5).
    leading_crlf: usize,
    /// Per header line, bit i: use the compact form when there is one.
    compact: u64,
    /// Per header line, bit i: fold the value onto a continuation line.
    fold: u64,
    /// Per header line, bit i: white space between the name and the colon.
    space_before_colon: u64,
    /// Per header line, bit i: random case for the name (else canonical case).
    odd_case: u64,
    /// Seed for the random name case.
    case_seed: u64,
    /// Continuation lines start with HTAB rather than SP.
    tab_fold: bool,
    /// Order of the header blocks.
    order: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GenRequest {
    method: String,
    ruri: GenUri,
    vias: Vec<GenVia>,
    /// Per Via after the first: on the same header line as the previous one.
    via_joined: Vec<bool>,
    from: GenAddr,
    to: GenAddr,
    call_id: String,
    cseq: u32,
    max_forwards: Option<u8>,
    contacts: Vec<GenAddr>,
    contacts_joined: bool,
    routes: Vec<GenUri>,
    extra: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    content_length: bool,
    style: Style,
}

const BLOCKS: usize = 10;

impl GenRequest {
    fn eol(&self) -> &'static str {
        if self.style.lf_only {
            "\n"
        } else {
            "\r\n"
        }
    }

    fn fold_str(&self) -> String {
        format!(
            "{}{}",
            self.eol(),
            if self.style.tab_fold { "\t" } else { " " }
        )
    }

    /// Writes the message; returns its bytes and the header names in wire order.
    fn render(&self) -> (Vec<u8>, Vec<String>) {
        let eol = self.eol();
        let fold = self.fold_str();
        let mut blocks: Vec<Vec<Line>> = vec![Vec::new(); BLOCKS];
        for (i, v) in self.vias.iter().enumerate() {
            let joined = i > 0 && self.via_joined.get(i - 1).copied().unwrap_or(false);
            if let (true, Some(last)) = (joined, blocks[0].last_mut()) {
                let sep = if self.style.fold >> (i + 40) & 1 == 1 {
                    format!(",{fold}")
                } else {
                    ", ".to_owned()
                };
                last.value.push_str(&sep);
                last.value.push_str(&v.wire());
            } else {
                blocks[0].push(Line::known("Via", Some('v'), v.wire()));
            }
        }
        if let Some(mf) = self.max_forwards {
            blocks[1].push(Line::known("Max-Forwards", None, mf.to_string()));
        }
        let addr_fold = if self.style.fold >> 50 & 1 == 1 {
            fold.as_str()
        } else {
            ""
        };
        blocks[2].push(Line::known("From", Some('f'), self.from.wire(addr_fold)));
        blocks[3].push(Line::known("To", Some('t'), self.to.wire("")));
        blocks[4].push(Line::known("Call-ID", Some('i'), self.call_id.clone()));
        let cseq_sep = if self.style.fold >> 51 & 1 == 1 {
            fold.as_str()
        } else {
            " "
        };
        let cseq = format!("{}{cseq_sep}{}", self.cseq, self.method);
        blocks[5].push(Line::known("CSeq", None, cseq));
        if self.contacts_joined && !self.contacts.is_empty() {
            let all: Vec<String> = self.contacts.iter().map(|c| c.wire("")).collect();
            blocks[6].push(Line::known("Contact", Some('m'), all.join(" ,  ")));
        } else {
            for c in &self.contacts {
                blocks[6].push(Line::known("Contact", Some('m'), c.wire("")));
            }
        }
        if !self.routes.is_empty() {
            let all: Vec<String> = self
                .routes
                .iter()
                .map(|r| format!("<{}>", r.text()))
                .collect();
            blocks[7].push(Line::known("Route", None, all.join(",")));
        }
        for (n, v) in &self.extra {
            blocks[8].push(Line {
                name: Name::Extension(n.clone()),
                value: v.clone(),
            });
        }
        let ct = "application/octet-stream".to_owned();
        match (&self.body, self.content_length) {
            (Some(b), cl) => {
                blocks[9].push(Line::known("Content-Type", Some('c'), ct));
                if cl {
                    blocks[9].push(Line::known(
                        "Content-Length",
                        Some('l'),
                        b.len().to_string(),
                    ));
                }
            }
            (None, true) => blocks[9].push(Line::known("Content-Length", Some('l'), "0".into())),
            (None, false) => {}
        }

        let mut out = Vec::new();
        for _ in 0..self.style.leading_crlf {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!("{} {} SIP/2.0{eol}", self.method, self.ruri.text()).as_bytes(),
        );
        let mut names = Vec::new();
        let lines = self.style.order.iter().flat_map(|&b| &blocks[b]);
        for (i, line) in lines.enumerate() {
            let bit = |mask: u64| mask >> (i % 40) & 1 == 1;
            let name = match &line.name {
                Name::Extension(n) => n.clone(),
                Name::Known(canonical, compact) => {
                    let name = match compact {
                        Some(c) if bit(self.style.compact) => c.to_string(),
                        _ => (*canonical).to_owned(),
                    };
                    if bit(self.style.odd_case) {
                        odd_case(&name, self.style.case_seed.rotate_left(i as u32))
                    } else {
                        name
                    }
                }
            };
            out.extend_from_slice(name.as_bytes());
            if bit(self.style.space_before_colon) {
                out.push(b' ');
            }
            out.push(b':');
            if bit(self.style.fold) {
                out.extend_from_slice(fold.as_bytes());
            } else {
                out.push(b' ');
            }
            out.extend_from_slice(line.value.as_bytes());
            out.extend_from_slice(eol.as_bytes());
            names.push(name);
        }
        out.extend_from_slice(eol.as_bytes());
        if let Some(b) = &self.body {
            out.extend_from_slice(b);
        }
        (out, names)
    }

    /// Checks every field of a parsed message against the model.
    fn check(&self, m: &Message, names: &[String]) {
        if let Err(e) = m.validate() {
            panic!("generated request does not validate: {e}");
        }
        assert!(m.is_request());
        assert_eq!(m.method().unwrap().as_str(), self.method);
        assert_eq!(m.request_uri_str(), Some(self.ruri.text().as_str()));
        self.ruri.check(&m.request_uri().unwrap().unwrap());
        let wire_names: Vec<&str> = m.headers().iter().map(|h| m.name_str(h)).collect();
        assert_eq!(wire_names, names);
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), self.vias.len());
        for (g, v) in self.vias.iter().zip(&vias) {
            g.check(v);
        }
        assert_eq!(m.top_via().unwrap(), vias[0]);
        self.from.check(&m.from_header().unwrap());
        self.to.check(&m.to_header().unwrap());
        assert_eq!(m.from_tag(), self.from.param("tag"));
        assert_eq!(m.to_tag(), self.to.param("tag"));
        assert_eq!(m.call_id().unwrap(), self.call_id);
        let cseq = m.cseq().unwrap();
        assert_eq!(cseq.seq, self.cseq);
        assert_eq!(cseq.method.as_str(), self.method);
        assert_eq!(m.max_forwards().unwrap(), self.max_forwards);
        let contacts: Vec<_> = m.contacts().map(Result::unwrap).collect();
        assert_eq!(contacts.len(), self.contacts.len());
        for (g, c) in self.contacts.iter().zip(&contacts) {
            g.check(c);
            assert_eq!(c.q(), g.param("q").and_then(rollover_sip::parse_qvalue));
            assert_eq!(c.expires(), g.param("expires").map(|e| e.parse().unwrap()));
        }
        let routes: Vec<String> = m.routes().map(|r| r.unwrap().uri_str.to_owned()).collect();
        let want: Vec<String> = self.routes.iter().map(GenUri::text).collect();
        assert_eq!(routes, want);
        for (n, v) in &self.extra {
            let h = m.headers_by_name(n).next().unwrap();
            assert_eq!(h.name, HeaderName::Other);
            assert_eq!(m.value_str(h).unwrap(), v);
            assert_eq!(m.value_unfolded(h), v.as_str());
        }
        let body = self.body.clone().unwrap_or_default();
        assert_eq!(m.body(), &body[..]);
        assert_eq!(
            m.content_length(),
            self.content_length.then_some(body.len())
        );
    }
}

/// A header name as the model knows it.
#[derive(Debug, Clone)]
enum Name {
    /// Canonical spelling and compact form.
    Known(&'static str, Option<char>),
    /// An extension header, written as generated.
    Extension(String),
}

#[derive(Debug, Clone)]
struct Line {
    name: Name,
    value: String,
}

impl Line {
    fn known(canonical: &'static str, compact: Option<char>, value: String) -> Line {
        Line {
            name: Name::Known(canonical, compact),
            value,
        }
    }
}

fn odd_case(name: &str, seed: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if seed >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "[a-zA-Z0-9.!%*_+`'~-]{1,12}";

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "REGISTER",
            "OPTIONS",
            "INFO",
            "UPDATE",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "REFER",
            "MESSAGE",
            "PUBLISH",
        ])
        .prop_map(str::to_owned),
        // Extension methods: any token (RFC 4475 §3.1.1.2 has `!interesting-Method0123456789_*+`.%indeed'~`).
        TOKEN.prop_filter("not a known method", |t| matches!(
            Method::from_token(t),
            Method::Other(_)
        )),
    ]
}

fn host() -> impl Strategy<Value = GenHost> {
    prop_oneof![
        3 => "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}".prop_map(GenHost::Domain),
        1 => any::<[u8; 4]>().prop_map(|b| GenHost::V4(Ipv4Addr::from(b))),
        1 => any::<[u16; 8]>().prop_map(|s| GenHost::V6(Ipv6Addr::from(s))),
    ]
}

fn uri() -> impl Strategy<Value = GenUri> {
    let user = prop::option::of(
        "([a-zA-Z0-9_.!~*'()&=+$-]|%[0-9A-Fa-f]{2}){1,12}"
            .prop_filter("no @", |u| !u.contains('@')),
    );
    let params = prop::collection::vec(
        (
            "[a-z][a-z0-9-]{0,8}",
            prop::option::of("[a-zA-Z0-9._~-]{1,8}"),
        ),
        0..3,
    )
    .prop_map(dedupe);
    (
        any::<bool>(),
        user,
        host(),
        prop::option::of(any::<u16>()),
        params,
    )
        .prop_map(|(secure, user, host, port, params)| GenUri {
            secure,
            user,
            host,
            port,
            params,
        })
}

fn dedupe<V>(v: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
        .collect()
}

fn display() -> impl Strategy<Value = GenDisplay> {
    prop_oneof![
        ("[ -~é中]{0,16}", any::<bool>())
            .prop_map(|(raw, escape_all)| GenDisplay::Quoted { raw, escape_all }),
        prop::collection::vec(TOKEN, 1..4).prop_map(GenDisplay::Tokens),
    ]
}

fn addr(tag: Option<bool>) -> impl Strategy<Value = GenAddr> {
    let tag = match tag {
        Some(true) => Just(true).boxed(),
        Some(false) => Just(false).boxed(),
        None => any::<bool>().boxed(),
    };
    (
        prop::option::of(display()),
        uri(),
        any::<bool>(),
        any::<bool>(),
        tag,
        TOKEN,
    )
        .prop_map(|(display, uri, bracketed, tight, tag, tag_value)| GenAddr {
            display,
            uri,
            bracketed,
            tight,
            params: if tag {
                vec![("tag".into(), tag_value)]
            } else {
                vec![]
            },
        })
}

fn contact() -> impl Strategy<Value = GenAddr> {
    (
        addr(Some(false)),
        prop::option::of(0u16..=1000),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(mut a, q, expires)| {
            if let Some(q) = q {
                let q = if q == 1000 {
                    "1".to_owned()
                } else {
                    format!("0.{q:03}")
                };
                a.params.push(("q".into(), q));
            }
            if let Some(e) = expires {
                a.params.push(("expires".into(), e.to_string()));
            }
            a
        })
}

fn via() -> impl Strategy<Value = GenVia> {
    (
        prop_oneof![
            prop::sample::select(vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"])
                .prop_map(str::to_owned),
            "[A-Za-z][A-Za-z0-9-]{0,6}",
        ],
        host(),
        prop::option::of(any::<u16>()),
        "[a-zA-Z0-9.!%*_+`'~-]{1,16}",
        any::<bool>(),
        prop::option::of(any::<[u8; 4]>()),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(transport, host, port, branch, rport, received, spaced)| GenVia {
                transport,
                host,
                port,
                branch: format!("z9hG4bK{branch}"),
                rport,
                received: received.map(Ipv4Addr::from),
                spaced,
            },
        )
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::bool::weighted(0.15),
        0usize..3,
        any::<u64>(),
        any::<u64>().prop_map(|f| f & f.rotate_left(7)), // fold about a quarter of the lines
        any::<u64>().prop_map(|f| f & f.rotate_left(3) & f.rotate_left(11)),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        Just((0..BLOCKS).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(
            |(
                lf_only,
                leading_crlf,
                compact,
                fold,
                space_before_colon,
                odd,
                case_seed,
                tab_fold,
                order,
            )| {
                Style {
                    lf_only,
                    leading_crlf,
                    compact,
                    fold,
                    space_before_colon,
                    odd_case: odd,
                    case_seed,
                    tab_fold,
                    order,
                }
            },
        )
}

fn request() -> impl Strategy<Value = GenRequest> {
    let routing = (
        method(),
        uri(),
        prop::collection::vec(via(), 1..=4),
        prop::collection::vec(any::<bool>(), 3),
        addr(Some(true)),
        addr(None),
    );
    let dialog = (
        "[a-zA-Z0-9.!%*_+~-]{1,20}(@[a-z0-9.]{1,10})?",
        0u32..(1 << 31),
        prop::option::of(any::<u8>()),
        prop::collection::vec(contact(), 0..3),
        any::<bool>(),
        prop::collection::vec(uri(), 0..3),
    );
    let rest = (
        prop::collection::vec(("X-[A-Za-z0-9]{1,8}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4)
            .prop_map(dedupe),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        prop::bool::weighted(0.8),
        style(),
    );
    (routing, dialog, rest).prop_map(
        |(
            (method, ruri, vias, via_joined, from, to),
            (call_id, cseq, max_forwards, contacts, contacts_joined, routes),
            (extra, body, content_length, style),
        )| GenRequest {
            method,
            ruri,
            vias,
            via_joined,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            contacts,
            contacts_joined,
            routes,
            extra,
            body,
            content_length,
            style,
        },
    )
}

/// A request that carries Content-Length, as a stream transport requires.
fn stream_request() -> impl Strategy<Value = GenRequest> {
    request().prop_map(|mut r| {
        r.content_length = true;
        r
    })
}

/// Byte soup made of SIP fragments, far likelier than uniform bytes to reach deep code.
fn sip_soup() -> impl Strategy<Value = Vec<u8>> {
    const FRAGMENTS: &[u8] = b"INVITE |SIP/2.0| SIP/2.0\r\n|SIP/2.0 200 OK\r\n|sip:|sips:|tel:+1|a@b|<|>|\"|\\|\r\n|\n|\r\n |\r\n\t|\r\n\r\n| |\t|:|;|,|=|?|%|%4|%41|[|]|::1|1.2.3.4|:5060|Via: |v:|SIP/2.0/UDP h|;branch=|z9hG4bK|;rport|;received=|;ttl=|;maddr=|f: |From:|t: |To:|i: |Call-ID:|CSeq: |1 INVITE|m: |Contact: *|Max-Forwards: |70|999999999999|l: |Content-Length: |0|Route: |Record-Route: |;lr|;tag=|;q=|0.5|1.000|;expires=|Expires: |Reason: SIP;cause=|Retry-After: |(c)|WWW-Authenticate: Digest |realm=\"r\"|\x00|\xff|\xc3\xa9";
    let fragments: Vec<&'static [u8]> = FRAGMENTS.split(|&c| c == b'|').collect();
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(fragments).prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ],
        0..48,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (
                any::<usize>(),
                prop::sample::select(b"\r\n \t:;,<>\"\\%@=0\x00\xff".to_vec())
            )
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
            any::<usize>().prop_map(Mutation::Truncate),
        ],
        1..8,
    )
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let len = b.len().max(1);
        match *m {
            Mutation::Flip(i, x) => {
                if let Some(c) = b.get_mut(i % len) {
                    *c ^= x;
                }
            }
            Mutation::Insert(i, x) => b.insert(i % (b.len() + 1), x),
            Mutation::Delete(i) => {
                if !b.is_empty() {
                    b.remove(i % len);
                }
            }
            Mutation::Duplicate(i, n) => {
                let start = i % len;
                let end = (start + n).min(b.len());
                if start < end {
                    let piece = b[start..end].to_vec();
                    b.splice(end..end, piece);
                }
            }
            Mutation::Truncate(i) => b.truncate(i % len),
        }
    }
    b
}

// ---------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------

/// Parses whatever `bytes` are and, when they parse, calls everything on the message.
fn parse_and_exercise(bytes: &[u8]) {
    match Message::parse(bytes.to_vec()) {
        Ok(m) => exercise(&m),
        Err(e) => {
            let _ = (e.status(), e.reason_phrase());
            let _ = rollover_sip::Located(&e, bytes).to_string();
        }
    }
}

fn exercise(m: &Message) {
    let _ = m.validate();
    let _ = (
        m.method(),
        m.request_uri_str(),
        m.status(),
        m.reason_phrase(),
    );
    let _ = (
        m.start_line_bytes(),
        m.body(),
        m.body_bytes(),
        m.content_length(),
    );
    let _ = format!("{m:?}");
    if let Some(Ok(u)) = m.request_uri() {
        let _ = (u.scheme(), u.to_string());
        if let Some(s) = u.as_sip() {
            let _ = (s.user_decoded(), s.transport(), s.lr(), s.maddr());
            assert!(s.equivalent(s));
        }
    }
    for h in m.headers() {
        let _ = (
            m.name_str(h),
            m.value_str(h),
            m.value_unfolded(h),
            h.offset(),
        );
    }
    for name in [
        HeaderName::Via,
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::Allow,
        HeaderName::Supported,
        HeaderName::WwwAuthenticate,
        HeaderName::Authorization,
        HeaderName::Other,
    ] {
        let _ = m.values(name).count();
        let _ = m.tokens(name).count();
        for a in m.auths(name).flatten() {
            let _ = a.params().count();
            let _ = a.param("realm");
        }
    }
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.expires(),
        m.top_via(),
    );
    let _ = (
        m.from_tag(),
        m.to_tag(),
        m.contact_is_star(),
        m.retry_after(),
    );
    for a in [m.from_header(), m.to_header()].into_iter().flatten() {
        let _ = (a.display.map(|d| d.text()), a.tag(), a.q(), a.expires());
    }
    for v in m.vias().flatten() {
        let _ = (
            v.branch(),
            v.has_magic_cookie(),
            v.received(),
            v.rport(),
            v.ttl(),
        );
    }
    for a in m
        .contacts()
        .chain(m.routes())
        .chain(m.record_routes())
        .flatten()
    {
        let _ = (a.display.map(|d| d.text()), a.tag(), a.q(), a.expires());
    }
    let _ = m.reasons().count();

    assert_eq!(m.edit().finish(), *m.as_bytes());
    let mut ed = m.edit();
    ed.set_request_uri("sip:x@192.0.2.1")
        .push_via("SIP/2.0/UDP p.invalid;branch=z9hG4bKp")
        .pop_via()
        .pop_route()
        .push_record_route("<sip:p.invalid;lr>")
        .add_header("X-A", "b");
    let _ = ed.decrement_max_forwards();
    if let Some(h) = m.headers().first().copied() {
        ed.replace_value(&h, "v");
    }
    ed.remove_all(HeaderName::Contact)
        .set_body(Some("text/plain"), Bytes::from_static(b"x"));
    let _ = Message::parse(ed.finish()).map(|f| f.validate());

    let resp = m
        .response(480, "Later")
        .to_tag("t")
        .copy_record_route()
        .build();
    if let Ok(r) = Message::parse(resp) {
        let _ = r.validate();
        let _ = m.ack_for(&r);
    }
    let _ = m.cancel(Some("SIP;cause=487"));
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Message(Bytes),
    Ping,
    Error(rollover_sip::ErrorKind),
}

/// Feeds `chunks` to a framer, draining after each; stops at the first error.
fn frame<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Out>, usize) {
    let mut f = StreamFramer::new(Limits::default());
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => out.push(Out::Message(m.as_bytes().clone())),
                Ok(Some(Frame::Ping)) => out.push(Out::Ping),
                Ok(None) => break,
                Err(e) => {
                    out.push(Out::Error(e.kind));
                    return (out, f.buffered());
                }
            }
        }
    }
    (out, f.buffered())
}

/// Splits `data` at the given points (taken modulo its length, sorted).
fn split_at_points<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([data.len()]) {
        chunks.push(&data[prev..c]);
        prev = c;
    }
    chunks
}

fn assert_same_framing(data: &[u8], points: &[usize]) {
    let (whole, left_whole) = frame([data]);
    let (split, left_split) = frame(split_at_points(data, points));
    assert_eq!(whole, split);
    if !matches!(whole.last(), Some(Out::Error(_))) {
        assert_eq!(left_whole, left_split);
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// `default_cases` cases, or `PROPTEST_CASES` when set (for long runs outside CI).
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated requests parse back to exactly what was generated.
    #[test]
    fn generated_requests_round_trip(req in request()) {
        let (bytes, names) = req.render();
        let m = Message::parse(bytes.clone()).unwrap_or_else(|e| {
            panic!("{e}: {:?}", String::from_utf8_lossy(&bytes))
        });
        req.check(&m, &names);
        exercise(&m);
    }

    /// Forwarding edits apply, and everything else reads back unchanged.
    #[test]
    fn forwarding_edits_round_trip(req in request(), new_via in via(), new_uri in uri()) {
        let (bytes, _) = req.render();
        let m = Message::parse(bytes).unwrap();
        let out = m
            .edit()
            .push_via(&new_via.wire())
            .set_request_uri(&new_uri.text())
            .decrement_max_forwards()
            .unwrap()
            .pop_via()
            .finish();
        let f = Message::parse(out.clone()).unwrap_or_else(|e| {
            panic!("{e}: {:?}", String::from_utf8_lossy(&out))
        });
        f.validate().unwrap();
        assert_eq!(f.request_uri_str(), Some(new_uri.text().as_str()));
        new_uri.check(&f.request_uri().unwrap().unwrap());
        let vias: Vec<_> = f.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), req.vias.len());
        new_via.check(&vias[0]);
        for (g, v) in req.vias.iter().skip(1).zip(vias.iter().skip(1)) {
            g.check(v);
        }
        assert_eq!(
            f.max_forwards().unwrap(),
            Some(req.max_forwards.map_or(70, |v| v.saturating_sub(1)))
        );
        req.from.check(&f.from_header().unwrap());
        req.to.check(&f.to_header().unwrap());
        assert_eq!(f.call_id().unwrap(), req.call_id);
        assert_eq!(f.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(f.contacts().count(), req.contacts.len());
        assert_eq!(f.routes().count(), req.routes.len());
        assert_eq!(f.body(), m.body());

        // A second hop: pop the Via the first hop pushed; the original tail remains.
        let g = Message::parse(f.edit().pop_via().finish()).unwrap();
        let tail: Vec<_> = g.vias().map(Result::unwrap).collect();
        assert_eq!(tail.len(), req.vias.len() - 1);
        for (gv, v) in req.vias.iter().skip(1).zip(&tail) {
            gv.check(v);
        }

        // The response to the forwarded request echoes it (RFC 3261 §8.2.6.2).
        let r = Message::parse(f.response(200, "OK").to_tag("answer").build()).unwrap();
        r.validate().unwrap();
        assert_eq!(r.vias().count(), vias.len());
        assert_eq!(r.call_id().unwrap(), req.call_id);
        assert_eq!(r.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(r.from_tag(), req.from.param("tag"));
        assert_eq!(r.to_tag(), Some(req.to.param("tag").unwrap_or("answer")));
    }

    /// Several generated messages and keep-alives in one stream, split anywhere, frame back
    /// to exactly those messages.
    #[test]
    fn stream_of_generated_messages_frames_back(
        reqs in prop::collection::vec((stream_request(), 0usize..3), 1..4),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (r, pings) in &reqs {
            for _ in 0..*pings {
                stream.extend_from_slice(b"\r\n\r\n");
                want.push(Out::Ping);
            }
            let (bytes, _) = r.render();
            stream.extend_from_slice(&bytes);
            // The framer hands out the message without the leading CRLFs; those read as
            // a ping and pongs first.
            let skip = r.style.leading_crlf * 2;
            if r.style.leading_crlf >= 2 {
                want.push(Out::Ping);
            }
            want.push(Out::Message(Bytes::copy_from_slice(&bytes[skip..])));
        }
        let (got, left) = frame(split_at_points(&stream, &points));
        assert_eq!(got, want);
        assert_eq!(left, 0);
        assert_same_framing(&stream, &points);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Uniform random bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_exercise(&bytes);
    }

    /// SIP-flavoured byte soup never panics.
    #[test]
    fn sip_soup_never_panics(bytes in sip_soup()) {
        parse_and_exercise(&bytes);
    }

    /// Arbitrary bytes split at arbitrary points frame like the same bytes fed whole.
    #[test]
    fn arbitrary_stream_splits_frame_alike(
        bytes in prop_oneof![sip_soup(), prop::collection::vec(any::<u8>(), 0..512)],
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        assert_same_framing(&bytes, &points);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(frame(bytewise).0, frame([&bytes[..]]).0);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid messages with random damage never panic, as datagrams or as streams.
    #[test]
    fn mutated_messages_never_panic(
        req in request(),
        ms in mutations(),
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (bytes, _) = req.render();
        let damaged = mutate(bytes, &ms);
        parse_and_exercise(&damaged);
        assert_same_framing(&damaged, &points);
    }
}

/// Small limits are enforced with typed errors, never panics, on generated messages.
#[test]
fn tight_limits_fail_cleanly() {
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&(request(), 1usize..6), |(req, n)| {
            let (bytes, _) = req.render();
            let limits = Limits {
                max_message_size: 40 * n,
                max_headers: n,
                max_header_line: 10 * n,
                max_via: n / 2,
                max_route: n / 2,
            };
            if let Err(e) = Message::parse_with(bytes, &limits) {
                assert!(matches!(e.status(), 400 | 513), "{e}");
            }
            Ok(())
        })
        .unwrap();
}
