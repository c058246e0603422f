//! A fixed number of parse + read iterations over the benchmark INVITE, for instruction
//! counts (`perf stat -e instructions:u`, `valgrind --tool=callgrind`), which stay steady
//! on a busy machine where wall-clock benchmarks do not.
//!
//! `cargo run --release -p rollover-sip --example parse_loop -- 200000`
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::Bytes;
use rollover_sip::Message;

macro_rules! sdp {
    () => {
        "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.55\r\n\
s=-\r\n\
c=IN IP4 192.0.2.55\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    };
}


/// An INVITE as a proxy receives it from an edge proxy: two Vias, a Record-Route, a Route.
const INVITE: &[u8] = concat!(
    "INVITE sip:bob@biloxi.com SIP/2.0\r\n",
    "Via: SIP/2.0/UDP edge1.atlanta.com:5060;branch=z9hG4bK74bf9.2a1\r\n",
    "Via: SIP/2.0/UDP 192.0.2.55:5060;branch=z9hG4bKnashds8;rport=5060\r\n",
    "Max-Forwards: 69\r\n",
    "Record-Route: <sip:edge1.atlanta.com;lr>\r\n",
    "Route: <sip:core.biloxi.com;lr>\r\n",
    "To: Bob <sip:bob@biloxi.com>\r\n",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n",
    "CSeq: 314159 INVITE\r\n",
    "Contact: <sip:alice@192.0.2.55:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, UPDATE\r\n",
    "Supported: replaces, timer, 100rel\r\n",
    "User-Agent: ExamplePhone/4.2.1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 288\r\n",
    "\r\n",
    sdp!(),
)
.as_bytes();


fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mut sink = 0usize;
    for _ in 0..n {
        let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
        let via = m.top_via().unwrap();
        sink += via.branch().map_or(0, str::len);
        sink += m.call_id().unwrap().len();
        sink += m.cseq().unwrap().seq as usize;
        sink += m.to_tag().map_or(0, str::len);
        std::hint::black_box(&m);
    }
    println!("{sink}");
}
