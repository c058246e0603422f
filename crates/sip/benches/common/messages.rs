//! The messages the parser benchmark and the `parse_loop` example work on.
#![allow(dead_code)]

/// The SDP offer carried by both messages (CRLF line ends, 288 bytes).
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

pub const SDP: &[u8] = sdp!().as_bytes();

/// An INVITE as a proxy receives it from an edge proxy: two Vias, a Record-Route, a Route.
pub const INVITE: &[u8] = concat!(
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

/// The 200 OK answering it, as it comes back through the same proxy.
pub const OK_200: &[u8] = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP proxy.biloxi.com:5060;branch=z9hG4bK-p-1\r\n",
    "Via: SIP/2.0/UDP edge1.atlanta.com:5060;branch=z9hG4bK74bf9.2a1\r\n",
    "Via: SIP/2.0/UDP 192.0.2.55:5060;branch=z9hG4bKnashds8;rport=5060\r\n",
    "Record-Route: <sip:proxy.biloxi.com;lr>\r\n",
    "Record-Route: <sip:edge1.atlanta.com;lr>\r\n",
    "To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n",
    "CSeq: 314159 INVITE\r\n",
    "Contact: <sip:bob@192.0.2.4:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, UPDATE\r\n",
    "Supported: replaces, timer\r\n",
    "Server: ExampleGateway/7.0\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 288\r\n",
    "\r\n",
    sdp!(),
)
.as_bytes();
