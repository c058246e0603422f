//! Wall-clock time of parse and of each read the benchmark does, on their own: the best of
//! 15 batches of 100,000, which filters out preemption on a shared machine.
//!
//! `cargo run --release -p rollover-sip --example read_times`
// A timing harness is the one place here that reads the clock.
#![allow(missing_docs, clippy::unwrap_used, clippy::disallowed_methods)]
use bytes::Bytes;
use rollover_sip::Message;
use std::hint::black_box;
use std::time::{Duration, Instant};
#[path = "../benches/common/messages.rs"]
mod messages;
use messages::INVITE;
fn best(mut f: impl FnMut()) -> Duration {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..100_000 {
                f();
            }
            t.elapsed() / 100_000
        })
        .min()
        .unwrap()
}
fn main() {
    let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
    println!(
        "top_via+branch {:?}",
        best(|| {
            black_box(black_box(&m).top_via().unwrap().branch());
        })
    );
    println!(
        "call_id {:?}",
        best(|| {
            black_box(black_box(&m).call_id().unwrap());
        })
    );
    println!(
        "cseq {:?}",
        best(|| {
            black_box(black_box(&m).cseq().unwrap());
        })
    );
    println!(
        "to_tag {:?}",
        best(|| {
            black_box(black_box(&m).to_tag());
        })
    );
    println!(
        "parse {:?}",
        best(|| {
            black_box(Message::parse(Bytes::from_static(black_box(INVITE))).unwrap());
        })
    );
    println!(
        "all {:?}",
        best(|| {
            let m = Message::parse(Bytes::from_static(black_box(INVITE))).unwrap();
            black_box(m.top_via().unwrap().branch());
            black_box(m.call_id().unwrap());
            black_box(m.cseq().unwrap());
            black_box(m.to_tag());
        })
    );
}
