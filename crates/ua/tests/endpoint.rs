//! The endpoint on a real socket, against a caller written here that breaks the rules on
//! purpose (what a real phone would not do on demand): it never acknowledges the 2xx.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
// A real socket and the runtime's clock.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rollover_sip::{Message, Method, RequestBuilder, StatusCode};
use rollover_ua::{Answer, Endpoint, IncomingEnd, UaConfig};
use tokio::net::UdpSocket;

/// RFC 3261 §13.3.1.4: a caller that never sends the ACK gets the 2xx retransmitted for
/// 64·T1, then a BYE; the application hears that the call ended for want of an ACK.
#[tokio::test]
async fn a_caller_that_never_acks_gets_a_bye_after_64_t1_and_the_application_is_told() {
    let t1 = Duration::from_millis(20);
    let config = UaConfig {
        t1,
        t2: Duration::from_millis(80),
    };
    let mut ep = Endpoint::bind_with("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let us = ep.local_addr();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = caller.local_addr().unwrap();
    let invite = RequestBuilder::new(Method::Invite, &format!("sip:callee@{us}"))
        .via(&format!("SIP/2.0/UDP {me};branch=z9hG4bK-noack-1"))
        .from("<sip:caller@example.com>;tag=c1")
        .to(&format!("<sip:callee@{us}>"))
        .call_id("noack-1@example.com")
        .cseq(1)
        .header("Contact", &format!("<sip:caller@{me}>"))
        .build()
        .unwrap();
    caller.send_to(&invite, us).await.unwrap();
    let mut incoming = tokio::time::timeout(Duration::from_secs(5), ep.next_incoming())
        .await
        .expect("the INVITE reached the application")
        .unwrap();
    incoming.answer(Answer::Accept(None)).await;
    let answered = Instant::now();

    let mut oks = 0;
    let bye = loop {
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), caller.recv_from(&mut buf))
            .await
            .expect("a BYE within 5 s")
            .unwrap();
        buf.truncate(n);
        let m = Message::parse(buf).unwrap();
        match (m.status(), m.method()) {
            (Some(200), _) => oks += 1,
            (None, Some(Method::Bye)) => break m,
            other => panic!("unexpected {other:?}"),
        }
    };
    let after = answered.elapsed();
    assert!(after >= t1 * 64, "BYE after {after:?}, before 64·T1");
    assert!(
        after < t1 * 64 + Duration::from_secs(1),
        "BYE after {after:?}"
    );
    assert!(oks >= 5, "the 2xx was retransmitted meanwhile ({oks} sent)");
    assert_eq!(bye.call_id().unwrap(), "noack-1@example.com");
    assert_eq!(
        bye.request_uri_str(),
        Some(format!("sip:caller@{me}").as_str())
    );
    assert!(bye.to_tag() == Some("c1"), "To carries the caller's tag");
    // Answered 200 so the endpoint's BYE transaction completes.
    caller
        .send_to(bye.reply(StatusCode::OK).build().as_ref(), us)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), incoming.ended())
        .await
        .expect("the application was told");
    assert_eq!(ended, Some(IncomingEnd::NoAck));
    // Asking again answers the same at once.
    assert_eq!(incoming.ended().await, Some(IncomingEnd::NoAck));
}
