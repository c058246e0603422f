//! Choosing the response to send upstream when every branch has failed
//! (RFC 3261 §16.7 step 6).
//!
//! - a 6xx beats everything;
//! - otherwise the lowest class wins (3xx < 4xx < 5xx), and within 4xx the responses that
//!   help a resubmission (401, 407, 415, 420, 484) are preferred;
//! - within a rank, a response a target sent beats one the proxy made itself (a 408 for a
//!   silent target, a 503 for an unreachable one);
//! - the first received wins a tie;
//! - a chosen 503 goes upstream as 500 (the 503 was about the next hop, not us);
//! - a chosen 401/407 carries every WWW-/Proxy-Authenticate of every 401/407 received.
//!
//! Unlike "lowest code wins", a 302 does not beat a 600, and a 500 from one branch does not
//! hide a 486 from another.

use bytes::Bytes;
use rollover_sip::{HeaderName, Message, StatusCode};

/// How a branch ended, for ranking.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A final response from the target.
    Response(Message),
    /// No final response: the target timed out, was unreachable, or its ring timer fired.
    /// Ranked as the given synthetic status (408, 503).
    Synthetic(StatusCode),
}

impl Outcome {
    fn status(&self) -> StatusCode {
        match self {
            Outcome::Response(m) => m.status_code().unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
            Outcome::Synthetic(c) => *c,
        }
    }
}

/// Lower is better: the class bucket first, then a response a target sent before one the
/// proxy made itself (a target's 486 beats our 408: the caller hears "busy", not
/// "timeout"), then the code.
fn rank(status: StatusCode, synthetic: bool) -> u32 {
    let status = status.as_u16();
    let bucket = match status {
        600..=699 => 0,
        300..=399 => 1,
        401 | 407 | 415 | 420 | 484 => 2,
        400..=499 => 3,
        _ => 4,
    };
    bucket * 10_000 + u32::from(synthetic) * 1_000 + u32::from(status)
}

/// The collected final outcomes of one call ([`crate::Engine::best`]).
#[derive(Debug, Default)]
pub struct BestResponse {
    best: Option<(u32, Outcome)>,
    /// Challenge header lines (name, value) of every 401/407 received.
    challenges: Vec<(&'static str, String)>,
}

impl BestResponse {
    pub(crate) fn offer(&mut self, outcome: Outcome) {
        let status = outcome.status();
        if let Outcome::Response(m) = &outcome {
            if status == 401 || status == 407 {
                for (name, label) in [
                    (HeaderName::WwwAuthenticate, "WWW-Authenticate"),
                    (HeaderName::ProxyAuthenticate, "Proxy-Authenticate"),
                ] {
                    for h in m.headers_named(name) {
                        self.challenges
                            .push((label, m.value_unfolded(h).into_owned()));
                    }
                }
            }
        }
        let r = rank(status, matches!(outcome, Outcome::Synthetic(_)));
        if self.best.as_ref().is_none_or(|(b, _)| r < *b) {
            self.best = Some((r, outcome));
        }
    }

    /// The status the caller would get now (408 when nothing was offered; a 503 counts as
    /// itself here, and becomes 500 only on the wire).
    pub fn status(&self) -> StatusCode {
        self.best
            .as_ref()
            .map_or(StatusCode::REQUEST_TIMEOUT, |(_, o)| o.status())
    }

    /// The reply the best status came from, when a target sent it (not a timeout or a
    /// transport failure).
    pub fn response(&self) -> Option<&Message> {
        match &self.best {
            Some((_, Outcome::Response(m))) => Some(m),
            _ => None,
        }
    }

    /// The response bytes to send upstream. `request` is the original request (for
    /// synthesised responses), `to_tag` the tag we use when we synthesise.
    pub fn build(&self, request: &Message, to_tag: &str) -> (StatusCode, Bytes) {
        match &self.best {
            None => (
                StatusCode::REQUEST_TIMEOUT,
                request
                    .reply(StatusCode::REQUEST_TIMEOUT)
                    .to_tag(to_tag)
                    .build(),
            ),
            Some((_, Outcome::Synthetic(code))) => {
                // A 503 was about the next hop, not us: it goes up as 500 (§16.7 step 6).
                let code = if *code == StatusCode::SERVICE_UNAVAILABLE {
                    StatusCode::SERVER_INTERNAL_ERROR
                } else {
                    *code
                };
                (code, request.reply(code).to_tag(to_tag).build())
            }
            Some((_, Outcome::Response(resp))) => {
                let status = resp
                    .status_code()
                    .unwrap_or(StatusCode::SERVER_INTERNAL_ERROR);
                let mut edit = resp.edit();
                edit.pop_via();
                let mut status_out = status;
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    edit.set_status(500, "Server Internal Error");
                    status_out = StatusCode::SERVER_INTERNAL_ERROR;
                }
                if status == StatusCode::UNAUTHORIZED
                    || status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
                {
                    let own: Vec<String> = resp
                        .headers_named(HeaderName::WwwAuthenticate)
                        .chain(resp.headers_named(HeaderName::ProxyAuthenticate))
                        .map(|h| resp.value_unfolded(h).into_owned())
                        .collect();
                    for (name, value) in &self.challenges {
                        if !own.contains(value) {
                            edit.add_header(name, value);
                        }
                    }
                }
                (status_out, edit.finish())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollover_sip::{Method, RequestBuilder};

    fn req() -> Message {
        Message::parse(
            RequestBuilder::new(Method::Invite, "sip:b@example.com")
                .via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-up")
                .from("<sip:a@example.com>;tag=1")
                .to("<sip:b@example.com>")
                .call_id("c1")
                .cseq(1)
                .build()
                .unwrap(),
        )
        .unwrap()
    }

    /// A downstream response: the request with our Via on top, answered.
    fn resp(code: u16, extra: &[(&str, &str)]) -> Outcome {
        let r = req();
        let fwd = Message::parse(
            r.edit()
                .push_via("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-ours")
                .finish(),
        )
        .unwrap();
        let mut b = fwd.response(code, "X").to_tag("t");
        for (n, v) in extra {
            b = b.header(n, v);
        }
        Outcome::Response(Message::parse(b.build()).unwrap())
    }

    fn pick(outcomes: Vec<Outcome>) -> (StatusCode, Message) {
        let mut best = BestResponse::default();
        for o in outcomes {
            best.offer(o);
        }
        let (code, bytes) = best.build(&req(), "ours");
        (code, Message::parse(bytes).unwrap())
    }

    #[test]
    fn six_beats_everything_then_lowest_class() {
        assert_eq!(
            pick(vec![resp(302, &[]), resp(486, &[]), resp(603, &[])]).0,
            603
        );
        assert_eq!(pick(vec![resp(500, &[]), resp(486, &[])]).0, 486);
        assert_eq!(
            pick(vec![resp(500, &[]), resp(486, &[]), resp(404, &[])]).0,
            404
        );
        assert_eq!(pick(vec![resp(486, &[]), resp(302, &[])]).0, 302);
        assert_eq!(
            pick(vec![
                Outcome::Synthetic(StatusCode::REQUEST_TIMEOUT),
                resp(500, &[])
            ])
            .0,
            408
        );
        assert_eq!(
            pick(vec![resp(486, &[]), resp(401, &[])]).0,
            401,
            "auth preferred in 4xx"
        );
    }

    #[test]
    fn service_unavailable_becomes_500_and_our_via_is_popped() {
        let (code, m) = pick(vec![resp(503, &[])]);
        assert_eq!(code, 500);
        assert_eq!(m.status(), Some(500));
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-up"));
        let (code, m) = pick(vec![Outcome::Synthetic(StatusCode::SERVICE_UNAVAILABLE)]);
        assert_eq!(code, 500);
        assert!(
            m.start_line_bytes().ends_with(b"500 Server Internal Error"),
            "the reason matches the code"
        );
    }

    #[test]
    fn challenges_are_merged() {
        let (code, m) = pick(vec![
            resp(
                401,
                &[("WWW-Authenticate", "Digest realm=\"a\", nonce=\"1\"")],
            ),
            resp(
                407,
                &[("Proxy-Authenticate", "Digest realm=\"b\", nonce=\"2\"")],
            ),
            resp(
                401,
                &[("WWW-Authenticate", "Digest realm=\"c\", nonce=\"3\"")],
            ),
        ]);
        assert_eq!(code, 401);
        assert_eq!(m.auths(HeaderName::WwwAuthenticate).count(), 2);
        assert_eq!(m.auths(HeaderName::ProxyAuthenticate).count(), 1);
    }

    #[test]
    fn a_target_s_answer_beats_one_the_proxy_made_in_the_same_class() {
        // A silent target (our 408) and a busy one (its 486): the caller hears busy.
        assert_eq!(
            pick(vec![
                Outcome::Synthetic(StatusCode::REQUEST_TIMEOUT),
                resp(486, &[])
            ])
            .0,
            486
        );
        assert_eq!(
            pick(vec![
                resp(486, &[]),
                Outcome::Synthetic(StatusCode::REQUEST_TIMEOUT)
            ])
            .0,
            486
        );
        // An unreachable target (our 503) and a target's 500.
        let (code, m) = pick(vec![
            Outcome::Synthetic(StatusCode::SERVICE_UNAVAILABLE),
            resp(500, &[]),
        ]);
        assert_eq!(
            (code.as_u16(), m.top_via().unwrap().branch()),
            (500, Some("z9hG4bK-up"))
        );
        // Classes still come first: our 408 beats a target's 500.
        assert_eq!(
            pick(vec![
                resp(500, &[]),
                Outcome::Synthetic(StatusCode::REQUEST_TIMEOUT)
            ])
            .0,
            408
        );
    }

    #[test]
    fn nothing_offered_is_408() {
        assert_eq!(pick(vec![]).0, 408);
    }
}
