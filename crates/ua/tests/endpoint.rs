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

/// An incoming call the application drops without answering is refused (480) rather than
/// left ringing; one it answered before dropping the handle stays up.
#[tokio::test]
async fn a_call_dropped_unanswered_is_refused_and_an_answered_one_stays() {
    let mut ep = Endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let us = ep.local_addr();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = caller.local_addr().unwrap();
    let invite = |n: u32| {
        RequestBuilder::new(Method::Invite, &format!("sip:callee@{us}"))
            .via(&format!("SIP/2.0/UDP {me};branch=z9hG4bK-drop-{n}"))
            .from(&format!("<sip:caller@example.com>;tag=c{n}"))
            .to(&format!("<sip:callee@{us}>"))
            .call_id(&format!("drop-{n}@example.com"))
            .cseq(1)
            .header("Contact", &format!("<sip:caller@{me}>"))
            .build()
            .unwrap()
    };
    let final_status = |call: &'static str| {
        let caller = &caller;
        async move {
            loop {
                let mut buf = vec![0u8; 4096];
                let (n, _) =
                    tokio::time::timeout(Duration::from_secs(5), caller.recv_from(&mut buf))
                        .await
                        .expect("a final response")
                        .unwrap();
                buf.truncate(n);
                let m = Message::parse(buf).unwrap();
                if m.call_id().unwrap() == call && m.status().is_some_and(|s| s >= 200) {
                    return m.status().unwrap();
                }
            }
        }
    };
    caller.send_to(&invite(1), us).await.unwrap();
    let first = ep.next_incoming().await.unwrap();
    drop(first);
    assert_eq!(final_status("drop-1@example.com").await, 480);

    caller.send_to(&invite(2), us).await.unwrap();
    let second = ep.next_incoming().await.unwrap();
    second.answer(Answer::Accept(None)).await;
    drop(second);
    assert_eq!(final_status("drop-2@example.com").await, 200);
    // Only the 2xx and its retransmissions follow: no 480 for an answered call.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(quiet_until.into(), caller.recv_from(&mut buf)).await
    {
        let m = Message::parse(buf[..n].to_vec()).unwrap();
        // (The first call's 480 is retransmitted too: this caller sends no ACK.)
        if m.call_id().unwrap() == "drop-2@example.com" {
            assert_eq!(m.status(), Some(200), "after the answer: {m:?}");
        }
    }
}
