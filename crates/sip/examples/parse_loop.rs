//! A fixed number of parse + read iterations over the benchmark INVITE, for instruction
//! counts (`perf stat -e instructions:u`, `valgrind --tool=callgrind`), which stay steady
//! on a busy machine where wall-clock benchmarks do not.
//!
//! `cargo run --release -p rollover-sip --example parse_loop -- 200000 [parse]`
//!
//! With `parse` the loop only parses (no reads), to split the cost between the two.
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::Bytes;
use rollover_sip::Message;

#[path = "../benches/common/messages.rs"]
mod messages;
use messages::INVITE;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let parse_only = std::env::args().nth(2).as_deref() == Some("parse");
    let mut sink = 0usize;
    for _ in 0..n {
        let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
        if parse_only {
            std::hint::black_box(&m);
            continue;
        }
        let via = m.top_via().unwrap();
        sink += via.branch().map_or(0, str::len);
        sink += m.call_id().unwrap().len();
        sink += m.cseq().unwrap().seq as usize;
        sink += m.to_tag().map_or(0, str::len);
        std::hint::black_box(&m);
    }
    println!("{sink}");
}
