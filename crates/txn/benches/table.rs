//! Transaction table under 100 k concurrent transactions: insert, match, remove; and the
//! memory each transaction costs beyond its message bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs
)]

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rollover_sip::{Message, Method, RequestBuilder};
use rollover_txn::{Config, Event, Peer, ServerTxn, Transport, TxnLayer};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts heap bytes so the memory per transaction can be measured.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 100_000;

fn requests(method: Method) -> Vec<Message> {
    (0..N)
        .map(|i| {
            let b = RequestBuilder::new(method.clone(), "sip:bob@192.0.2.10")
                .via(&format!("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-{i:08}"))
                .from("<sip:alice@example.com>;tag=f1")
                .to("<sip:bob@example.com>")
                .call_id(&format!("call-{i}@example.com"))
                .cseq(1)
                .build()
                .unwrap();
            Message::parse(b).unwrap()
        })
        .collect()
}

fn peer() -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: "192.0.2.1:5060".parse().unwrap(),
    }
}

fn fill(layer: &mut TxnLayer, msgs: &[Message], now: Instant) -> Vec<ServerTxn> {
    let mut txns = Vec::with_capacity(msgs.len());
    for m in msgs {
        layer.handle_message(now, peer(), m.clone());
        while let Some(e) = layer.poll_event() {
            if let Event::Request { txn, .. } = e {
                txns.push(txn);
            }
        }
    }
    txns
}

/// Live heap bytes per transaction after 100 k requests were received and (for INVITE,
/// as the proxy does) answered with 100 Trying. Message bytes are shared with the caller
/// and not counted; the response bytes kept for retransmission are.
fn memory_report(method: Method, msgs: &[Message]) {
    let now = Instant::now();
    let trying: Vec<Bytes> = msgs
        .iter()
        .map(|m| m.response(100, "Trying").build())
        .collect();
    let region = Region::new(GLOBAL);
    let mut layer = TxnLayer::new(Config::default());
    let txns = fill(&mut layer, msgs, now);
    if method == Method::Invite {
        for (t, r) in txns.iter().zip(&trying) {
            layer.send_response(now, *t, r.clone()).unwrap();
        }
        while layer.poll_transmit().is_some() {}
    }
    let txns_bytes = txns.capacity() * std::mem::size_of::<ServerTxn>();
    let stats = region.change();
    let live =
        stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated;
    let per = (live as f64 - txns_bytes as f64) / N as f64;
    println!(
        "memory: {per:.0} bytes of state per {method} server transaction ({} live; message bytes are shared, not counted)",
        layer.len()
    );
    drop(layer);
}

fn bench(c: &mut Criterion) {
    let invites = requests(Method::Invite);
    let options = requests(Method::Options);
    memory_report(Method::Invite, &invites);
    memory_report(Method::Options, &options);

    let mut g = c.benchmark_group("txn_table");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("insert_100k", |b| {
        b.iter_batched(
            || TxnLayer::new(Config::default()),
            |mut layer| {
                fill(&mut layer, &options, Instant::now());
                layer
            },
            BatchSize::PerIteration,
        )
    });

    let now = Instant::now();
    let mut layer = TxnLayer::new(Config::default());
    let txns = fill(&mut layer, &options, now);
    g.bench_function("match_retransmission_100k_live", |b| {
        b.iter(|| {
            for m in &options {
                layer.handle_message(now, peer(), m.clone());
            }
            while layer.poll_event().is_some() {}
            while layer.poll_transmit().is_some() {}
        })
    });

    let ok: Vec<Bytes> = options
        .iter()
        .map(|m| m.response(200, "OK").build())
        .collect();
    g.bench_function("respond_and_remove_100k", |b| {
        b.iter_batched(
            || {
                let mut l = TxnLayer::new(Config::default());
                let t = fill(&mut l, &options, now);
                (l, t)
            },
            |(mut l, t)| {
                for (txn, resp) in t.iter().zip(&ok) {
                    l.send_response(now, *txn, resp.clone()).unwrap();
                }
                l.handle_timeout(now); // Timer J is zero on TCP: every transaction ends
                assert!(l.is_empty());
                while l.poll_event().is_some() {}
                while l.poll_transmit().is_some() {}
                l
            },
            BatchSize::PerIteration,
        )
    });
    drop(txns);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
