//! The model requests are generated from, and how a model is written out.

use std::net::{Ipv4Addr, Ipv6Addr};

use rollover_sip::{DisplayName, HeaderName, Host, Message, Uri};

#[derive(Debug, Clone)]
pub enum GenHost {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl GenHost {
    pub fn text(&self) -> String {
        match self {
            GenHost::Domain(d) => d.clone(),
            GenHost::V4(ip) => ip.to_string(),
            GenHost::V6(ip) => format!("[{ip}]"),
        }
    }

    pub fn check(&self, h: &Host<'_>) {
        match (self, h) {
            (GenHost::Domain(a), Host::Domain(b)) => assert_eq!(a, b),
            (GenHost::V4(a), Host::V4(b)) => assert_eq!(a, b),
            (GenHost::V6(a), Host::V6(b)) => assert_eq!(a, b),
            (a, b) => panic!("host {a:?} read back as {b:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenUri {
    pub secure: bool,
    pub user: Option<String>,
    pub host: GenHost,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl GenUri {
    pub fn text(&self) -> String {
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

    pub fn check(&self, u: &Uri<'_>) {
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
pub enum GenDisplay {
    /// Raw text, written as a quoted string; `escape_all` escapes every ASCII character.
    Quoted { raw: String, escape_all: bool },
    /// Tokens separated by one space.
    Tokens(Vec<String>),
}

impl GenDisplay {
    pub fn wire(&self) -> String {
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

    pub fn text(&self) -> String {
        match self {
            GenDisplay::Quoted { raw, .. } => raw.clone(),
            GenDisplay::Tokens(t) => t.join(" "),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenAddr {
    pub display: Option<GenDisplay>,
    pub uri: GenUri,
    /// `<uri>` rather than a bare addr-spec (forced when the form needs it).
    pub bracketed: bool,
    /// No space between the display name and `<` (RFC 4475 §3.1.1.6).
    pub tight: bool,
    pub params: Vec<(String, String)>,
}

impl GenAddr {
    pub fn bracketed(&self) -> bool {
        self.bracketed || self.display.is_some() || !self.uri.params.is_empty()
    }

    /// The wire text; `fold` puts a line break between the display name and `<`.
    pub fn wire(&self, fold: &str) -> String {
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

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn check(&self, a: &rollover_sip::NameAddr<'_>) {
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
pub struct GenVia {
    pub transport: String,
    pub host: GenHost,
    pub port: Option<u16>,
    pub branch: String,
    pub rport: bool,
    pub received: Option<Ipv4Addr>,
    /// `SIP / 2.0 / UDP host ; branch=…` (RFC 4475 §3.1.1.1).
    pub spaced: bool,
}

impl GenVia {
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host.text()),
            None => self.host.text(),
        }
    }

    pub fn wire(&self) -> String {
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

    pub fn check(&self, v: &rollover_sip::Via<'_>) {
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
pub struct Style {
    /// Bare LF line ends instead of CRLF.
    pub lf_only: bool,
    /// CRLFs before the start line (RFC 3261 §7.5).
    pub leading_crlf: usize,
    /// Per header line, bit i: use the compact form when there is one.
    pub compact: u64,
    /// Per header line, bit i: fold the value onto a continuation line.
    pub fold: u64,
    /// Per header line, bit i: white space between the name and the colon.
    pub space_before_colon: u64,
    /// Per header line, bit i: random case for the name (else canonical case).
    pub odd_case: u64,
    /// Seed for the random name case.
    pub case_seed: u64,
    /// Continuation lines start with HTAB rather than SP.
    pub tab_fold: bool,
    /// Order of the header blocks.
    pub order: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct GenRequest {
    pub method: String,
    pub ruri: GenUri,
    pub vias: Vec<GenVia>,
    /// Per Via after the first: on the same header line as the previous one.
    pub via_joined: Vec<bool>,
    pub from: GenAddr,
    pub to: GenAddr,
    pub call_id: String,
    pub cseq: u32,
    pub max_forwards: Option<u8>,
    pub contacts: Vec<GenAddr>,
    pub contacts_joined: bool,
    pub routes: Vec<GenUri>,
    pub extra: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub content_length: bool,
    pub style: Style,
}

pub const BLOCKS: usize = 10;

impl GenRequest {
    pub fn eol(&self) -> &'static str {
        if self.style.lf_only {
            "\n"
        } else {
            "\r\n"
        }
    }

    pub fn fold_str(&self) -> String {
        format!(
            "{}{}",
            self.eol(),
            if self.style.tab_fold { "\t" } else { " " }
        )
    }

    /// Writes the message; returns its bytes and the header names in wire order.
    pub fn render(&self) -> (Vec<u8>, Vec<String>) {
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
    pub fn check(&self, m: &Message, names: &[String]) {
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
pub enum Name {
    /// Canonical spelling and compact form.
    Known(&'static str, Option<char>),
    /// An extension header, written as generated.
    Extension(String),
}

#[derive(Debug, Clone)]
pub struct Line {
    pub name: Name,
    pub value: String,
}

impl Line {
    pub fn known(canonical: &'static str, compact: Option<char>, value: String) -> Line {
        Line {
            name: Name::Known(canonical, compact),
            value,
        }
    }
}

pub fn odd_case(name: &str, seed: u64) -> String {
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
