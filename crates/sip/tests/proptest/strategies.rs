//! Proptest strategies: the model's parts, requests, byte soup and mutations.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rollover_sip::Method;

use super::model::*;

pub const TOKEN: &str = "[a-zA-Z0-9.!%*_+`'~-]{1,12}";

pub fn method() -> impl Strategy<Value = String> {
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

pub fn host() -> impl Strategy<Value = GenHost> {
    prop_oneof![
        3 => "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}".prop_map(GenHost::Domain),
        1 => any::<[u8; 4]>().prop_map(|b| GenHost::V4(Ipv4Addr::from(b))),
        1 => any::<[u16; 8]>().prop_map(|s| GenHost::V6(Ipv6Addr::from(s))),
    ]
}

pub fn uri() -> impl Strategy<Value = GenUri> {
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

pub fn dedupe<V>(v: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
        .collect()
}

pub fn display() -> impl Strategy<Value = GenDisplay> {
    prop_oneof![
        ("[ -~é中]{0,16}", any::<bool>())
            .prop_map(|(raw, escape_all)| GenDisplay::Quoted { raw, escape_all }),
        prop::collection::vec(TOKEN, 1..4).prop_map(GenDisplay::Tokens),
    ]
}

pub fn addr(tag: Option<bool>) -> impl Strategy<Value = GenAddr> {
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

pub fn contact() -> impl Strategy<Value = GenAddr> {
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

pub fn via() -> impl Strategy<Value = GenVia> {
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

pub fn style() -> impl Strategy<Value = Style> {
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

pub fn request() -> impl Strategy<Value = GenRequest> {
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
pub fn stream_request() -> impl Strategy<Value = GenRequest> {
    request().prop_map(|mut r| {
        r.content_length = true;
        r
    })
}

/// Byte soup made of SIP fragments, far likelier than uniform bytes to reach deep code.
pub fn sip_soup() -> impl Strategy<Value = Vec<u8>> {
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
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
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

pub fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
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
