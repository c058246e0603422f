//! Parser and forwarding benchmarks: rollover-sip against rsip doing the same work.
//!
//! ```text
//! parse_read/invite   parse a ~900-byte INVITE with SDP, read top Via branch, Call-ID,
//!                     CSeq number and method, To tag
//! parse_read/200ok    the same for a 200 OK with SDP
//! forward/invite      parse, replace the Request-URI, push a Via, push a Record-Route,
//!                     decrement Max-Forwards, serialise to bytes
//! ```
//!
//! Each group runs both crates in the same process so the numbers share one machine state.
//! Results and how to reproduce them: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::TryFrom;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rollover_sip::{Message, Method};
use rsip::prelude::*;

#[path = "common/messages.rs"]
mod messages;
use messages::{INVITE, OK_200, SDP};

const TARGET: &str = "sip:bob@192.0.2.4:5060";
const OUR_VIA: &str = "SIP/2.0/UDP proxy.biloxi.com:5060;branch=z9hG4bK-p-1";
const OUR_RR: &str = "<sip:proxy.biloxi.com;lr>";

/// What both crates read from a message: top Via branch, Call-ID, CSeq, To tag.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    branch: String,
    call_id: String,
    cseq: u32,
    method: String,
    to_tag: Option<String>,
}

fn read_rollover(m: &Message) -> Read {
    let cseq = m.cseq().unwrap();
    Read {
        branch: m.top_via().unwrap().branch().unwrap().to_owned(),
        call_id: m.call_id().unwrap().to_owned(),
        cseq: cseq.seq,
        method: cseq.method.to_string(),
        to_tag: m.to_tag().map(str::to_owned),
    }
}

fn read_rsip(m: &rsip::SipMessage) -> Read {
    let cseq = m.cseq_header().unwrap().typed().unwrap();
    Read {
        branch: m
            .via_header()
            .unwrap()
            .typed()
            .unwrap()
            .branch()
            .unwrap()
            .to_string(),
        call_id: m.call_id_header().unwrap().value().to_owned(),
        cseq: cseq.seq,
        method: cseq.method.to_string(),
        to_tag: m.to_header().unwrap().tag().unwrap().map(|t| t.to_string()),
    }
}

/// The rollover-sip forwarding path.
fn forward_rollover(input: Bytes) -> Bytes {
    let m = Message::parse(input).unwrap();
    m.edit()
        .set_request_uri(TARGET)
        .push_via(OUR_VIA)
        .push_record_route(OUR_RR)
        .decrement_max_forwards()
        .unwrap()
        .finish()
}

/// The rsip forwarding path: the same four edits on its owned model, then `to_string`.
///
/// The new Request-URI is handed over already parsed (a clone), which spares rsip a URI
/// parse that rollover-sip does not do either.
fn forward_rsip(input: &[u8], target: &rsip::Uri) -> Vec<u8> {
    let msg = rsip::SipMessage::try_from(input).unwrap();
    let mut req = rsip::Request::try_from(msg).unwrap();
    req.uri = target.clone();
    let mut headers: Vec<rsip::Header> = std::mem::take(&mut req.headers).into();
    let at = headers
        .iter()
        .position(|h| matches!(h, rsip::Header::Via(_)))
        .unwrap_or(0);
    headers.insert(at, rsip::Header::Via(rsip::headers::Via::new(OUR_VIA)));
    let at = headers
        .iter()
        .position(|h| matches!(h, rsip::Header::RecordRoute(_)))
        .unwrap_or(0);
    headers.insert(
        at,
        rsip::Header::RecordRoute(rsip::headers::RecordRoute::new(OUR_RR)),
    );
    for h in &mut headers {
        if let rsip::Header::MaxForwards(mf) = h {
            let n = mf.num().unwrap().saturating_sub(1);
            *mf = rsip::headers::MaxForwards::from(n);
        }
    }
    req.headers = headers.into();
    req.into()
}

/// Checks, once and outside the timed loops, that both crates see the same fields and
/// produce equivalent forwarded requests; a benchmark of wrong work is worthless.
fn check_equivalence(target: &rsip::Uri) {
    for (input, tag) in [(INVITE, None), (OK_200, Some("a6c85cf"))] {
        let ours = Message::parse(Bytes::from_static(input)).unwrap();
        ours.validate().unwrap();
        assert_eq!(ours.body(), SDP);
        let theirs = rsip::SipMessage::try_from(input).unwrap();
        let r = read_rollover(&ours);
        assert_eq!(r, read_rsip(&theirs));
        assert_eq!(r.to_tag.as_deref(), tag);
        assert_eq!(r.method, "INVITE");
    }
    assert!(
        (850..=1000).contains(&INVITE.len()),
        "INVITE is {} bytes",
        INVITE.len()
    );

    for out in [
        forward_rollover(Bytes::from_static(INVITE)),
        Bytes::from(forward_rsip(INVITE, target)),
    ] {
        let f = Message::parse(out).unwrap();
        f.validate().unwrap();
        assert_eq!(f.method(), Some(&Method::Invite));
        assert_eq!(f.request_uri_str(), Some(TARGET));
        assert_eq!(f.max_forwards().unwrap(), Some(68));
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().sent_by.to_owned()).collect();
        assert_eq!(
            vias,
            [
                "proxy.biloxi.com:5060",
                "edge1.atlanta.com:5060",
                "192.0.2.55:5060"
            ]
        );
        let rrs: Vec<_> = f
            .record_routes()
            .map(|r| r.unwrap().uri_str.to_owned())
            .collect();
        assert_eq!(rrs, ["sip:proxy.biloxi.com;lr", "sip:edge1.atlanta.com;lr"]);
        assert_eq!(f.body(), SDP);
    }
}

fn parse_read(c: &mut Criterion) {
    for (name, input) in [("invite", INVITE), ("200ok", OK_200)] {
        let mut g = c.benchmark_group(format!("parse_read/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("rollover-sip", |b| {
            b.iter(|| {
                let m = Message::parse(Bytes::from_static(black_box(input))).unwrap();
                let via = m.top_via().unwrap();
                black_box(via.branch());
                black_box(m.call_id().unwrap());
                let cseq = m.cseq().unwrap();
                black_box(cseq.seq);
                black_box(&cseq.method);
                black_box(m.to_tag());
            });
        });
        g.bench_function("rsip", |b| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(input)).unwrap();
                let via = m.via_header().unwrap().typed().unwrap();
                black_box(via.branch());
                black_box(m.call_id_header().unwrap().value());
                let cseq = m.cseq_header().unwrap().typed().unwrap();
                black_box(cseq.seq);
                black_box(&cseq.method);
                black_box(m.to_header().unwrap().tag().unwrap());
            });
        });
        g.finish();
    }
}

fn check(_: &mut Criterion) {
    check_equivalence(&rsip::Uri::try_from(TARGET).unwrap());
}

fn forward(c: &mut Criterion) {
    let target = rsip::Uri::try_from(TARGET).unwrap();
    let mut g = c.benchmark_group("forward/invite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rollover-sip", |b| {
        b.iter(|| black_box(forward_rollover(Bytes::from_static(black_box(INVITE)))));
    });
    g.bench_function("rsip", |b| {
        b.iter(|| black_box(forward_rsip(black_box(INVITE), &target)));
    });
    g.finish();
}

criterion_group!(benches, check, parse_read, forward);
criterion_main!(benches);
