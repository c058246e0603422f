//! Checks every element makes before acting on a message (RFC 3261 §8.2.1–§8.2.2, §16.3
//! item 1, §18.3): mandatory headers present, once, and well formed.
//!
//! The parser only frames; this decodes what routing needs, so a request that passes can be
//! routed without further error paths, and one that fails gets a 400 that says why.

use crate::error::{ErrorKind, ParseError};
use crate::message::{header_label, Message};
use crate::name::HeaderName;
use crate::uri::Uri;

impl Message {
    /// Validates the message for processing.
    ///
    /// Requests: To, From, Call-ID, CSeq and Via present, single-value headers not repeated,
    /// each well formed, CSeq method equal to the request method, one Content-Length, a
    /// parseable Request-URI with a scheme this element handles (sip, sips, tel; else 416).
    /// From and To are checked for shape and tags without decoding their URIs (whoever
    /// reads one decodes it then, and refuses what does not decode).
    /// Contact and Record-Route are checked for shape only (decoded by their readers);
    /// Route is decoded in a request. Responses: the same header checks, except that
    /// only the top Via is read: this element relays the others unread (a bad response is
    /// dropped, never answered).
    pub fn validate(&self) -> Result<(), ParseError> {
        let mut seen = [0u8; 8];
        const SINGLE: [HeaderName; 8] = [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::ContentLength,
            HeaderName::ContentType,
            HeaderName::Expires,
        ];
        for h in self.headers() {
            if let Some(i) = SINGLE.iter().position(|n| *n == h.name) {
                if let Some(count) = seen.get_mut(i) {
                    *count = count.saturating_add(1);
                    if *count > 1 {
                        let kind = if h.name == HeaderName::ContentLength {
                            ErrorKind::ConflictingContentLength
                        } else {
                            ErrorKind::DuplicateHeader(header_label(h.name))
                        };
                        return Err(kind.at(h.offset()));
                    }
                }
            }
        }
        // From and To are relayed as they came (a response's are copies of the request's,
        // §8.2.6.2): their shape and tags are checked, their URIs decoded only by whoever
        // reads them (`from_header`, `to_header`: a registrar, an authenticator), which
        // refuses the request when they do not decode (§16.3 item 1: a proxy checks what it
        // acts on).
        let request = self.is_request();
        let mut tags = [None, None];
        for (tag, name) in tags.iter_mut().zip([HeaderName::From, HeaderName::To]) {
            match self.addr_param(name, "tag")? {
                // `;tag` with no value: no dialog can be matched on it (§19.3 requires a
                // token).
                Some(None) => {
                    let at = self.header(name).map_or(0, |h| h.offset());
                    return Err(ErrorKind::BadHeader(header_label(name)).at(at));
                }
                Some(Some(t)) => *tag = Some(t),
                None => {}
            }
        }
        let call_id = self.read_call_id()?;
        // What every later reader asks for (transaction keys, dialogs), noted as found
        // here, so it is not looked for again.
        let [from_tag, to_tag] = tags;
        self.note_ids(call_id, from_tag, to_tag);
        let cseq = self.cseq()?;
        if self.header(HeaderName::Via).is_none() {
            return Err(ErrorKind::MissingHeader("Via").at(self.headers_end()));
        }
        // The top one through `top_via`, which keeps where its parts are for every later
        // reader of this message; the others as they come.
        self.top_via()?;
        // The Vias below the top one of a response are the upstream hops' business: this
        // element sends a response where its own transaction says, never by them.
        if request {
            for value in self.values(HeaderName::Via).skip(1) {
                let (h, v) = value?;
                if crate::headers::Via::parse(v).is_none() {
                    return Err(ErrorKind::BadHeader("Via").at(h.offset()));
                }
            }
        }
        self.max_forwards()?;
        // Route is decoded in a request: routing acts on it, and a request it cannot read is
        // refused here. Contact and Record-Route are checked for shape only, in every
        // message: their readers decode them (the registrar refuses a REGISTER whose
        // Contact does not decode, a redirect skips such a Contact, a dialog is not formed
        // on one), and this element relays them otherwise as they came.
        self.check_address_headers(request)?;
        if let Some(method) = self.method() {
            if *method != cseq.method {
                let at = self.header(HeaderName::CSeq).map_or(0, |h| h.offset());
                return Err(ErrorKind::CSeqMethodMismatch.at(at));
            }
            match self.request_uri() {
                Some(Ok(Uri::Sip(_) | Uri::Tel(_))) => {}
                Some(Ok(_)) => return Err(ErrorKind::UnsupportedUriScheme.at(0)),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::message::Message;

    #[test]
    fn a_tag_without_value_fails_validation() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:b@h>;tag\r\nFrom: <sip:a@h>;tag=f1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        let m = Message::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(m.validate().unwrap_err().kind, ErrorKind::BadHeader("To"));
    }

    #[test]
    fn the_ids_validate_notes_are_those_read_without_it() {
        let msg = |from: &str, to: &str| {
            let text = format!(
                "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID:  c-1@h \r\nCSeq: 1 INVITE\r\n\r\n"
            );
            Message::parse(text.into_bytes()).unwrap()
        };
        for (from, to) in [
            ("<sip:a@h>;tag=f1", "<sip:b@h>"),
            (
                "\"A;tag=no\" <sip:a@h;tag=uri>;x=1;TAG=f2",
                "<sip:b@h>;tag=t2;tag=t3",
            ),
            ("sip:a@h;tag=f3", "B <sip:b@h>;tag=t4"),
            ("<sip:a@h>;tag=f5;tag", "<sip:b@h>;x;tag=t5"),
        ] {
            let checked = msg(from, to);
            checked.validate().unwrap();
            let unchecked = msg(from, to);
            let ids = |m: &Message| {
                (
                    m.call_id().unwrap().to_owned(),
                    m.from_tag().map(str::to_owned),
                    m.to_tag().map(str::to_owned),
                )
            };
            assert_eq!(ids(&checked), ids(&unchecked), "{from} / {to}");
        }
    }

    #[test]
    fn a_message_is_checked_for_what_this_element_reads() {
        let msg = |start: &str, from: &str, to: &str, vias: &str| {
            let text = format!(
                "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1{vias}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
            );
            Message::parse(text.into_bytes()).unwrap()
        };
        let (good, bad_uri) = ("<sip:a@h>;tag=f1", "<sip:a@h@x>;tag=f1");
        let (req, resp) = ("INVITE sip:b@h SIP/2.0", "SIP/2.0 180 Ringing");
        // A Via below the top one is decoded for a request only; the URI inside From or
        // To for neither (it is decoded by whoever reads it, and refused there).
        assert!(msg(req, good, good, "").validate().is_ok());
        let lazy = msg(req, bad_uri, bad_uri, "");
        assert!(lazy.validate().is_ok());
        assert!(lazy.from_header().is_err() && lazy.to_header().is_err());
        assert!(msg(req, good, good, ", SIP/2.0/UDP").validate().is_err());
        assert!(msg(resp, bad_uri, bad_uri, ", SIP/2.0/UDP")
            .validate()
            .is_ok());
        // Their shape and tags are still checked.
        for (from, to) in [
            ("<sip:a@h>;tag", good),
            (good, "<sip:a@h>;tag"),
            ("<sip:a@h", good),
            (good, "<>;tag=t"),
            (good, "<sip:a@h> junk"),
            ("Bell, Alexander <sip:a@h>", good),
            (good, "<sip:a@h>;;"),
        ] {
            assert!(msg(resp, from, to, "").validate().is_err(), "{from} / {to}");
            assert!(msg(req, from, to, "").validate().is_err(), "{from} / {to}");
        }
        assert!(msg(resp, good, good, "").validate().is_ok());
    }

    #[test]
    fn address_headers_report_contact_then_route_then_record_route() {
        let msg = |headers: &str| {
            let text = format!(
                "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{headers}\r\n"
            );
            Message::parse(text.into_bytes()).unwrap()
        };
        let err = |headers: &str| msg(headers).validate().unwrap_err().kind;
        let bad_rr = "Record-Route: <sip:p@h\r\n";
        let bad_route = "Route: <sip:p@h@x;lr>\r\n";
        let bad_contact = "Contact: <sip:c@h\r\n";
        assert_eq!(
            err(&format!("{bad_rr}{bad_route}{bad_contact}")),
            ErrorKind::BadHeader("Contact")
        );
        assert_eq!(
            err(&format!("{bad_rr}{bad_route}")),
            ErrorKind::BadHeader("Route")
        );
        assert_eq!(err(bad_rr), ErrorKind::BadHeader("Record-Route"));
        // `Contact: *` (a REGISTER removing every binding): Contact is not checked, the
        // rest is.
        let star = "Contact: *\r\n";
        assert!(msg(&format!("{bad_contact}{star}")).validate().is_ok());
        assert_eq!(
            err(&format!("{star}{bad_route}")),
            ErrorKind::BadHeader("Route")
        );
        // A list is checked value by value.
        assert_eq!(
            err("Contact: <sip:c@h>, <sip:d@h\r\n"),
            ErrorKind::BadHeader("Contact")
        );
        assert!(msg("Contact: <sip:c@h>, \"D, E\" <sip:d@h>\r\n")
            .validate()
            .is_ok());
    }

    #[test]
    fn contact_and_record_route_are_checked_for_shape_and_decoded_by_their_readers() {
        let msg = |start: &str, header: &str| {
            let text = format!(
                "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>;tag=t\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{header}\r\n\r\n"
            );
            Message::parse(text.into_bytes()).unwrap()
        };
        let starts = [
            "SIP/2.0 200 OK",
            "SIP/2.0 302 Moved",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 486 Busy Here",
            "INVITE sip:b@h SIP/2.0",
        ];
        for start in starts {
            // A URI that does not decode passes; its reader sees the error.
            let m = msg(start, "Contact: <sip:b@h@x>");
            assert!(m.validate().is_ok(), "{start}");
            assert!(m.contacts().next().unwrap().is_err(), "{start}");
            let m = msg(start, "Record-Route: <sip:p@h@x;lr>");
            assert!(m.validate().is_ok(), "{start}");
            assert!(m.record_routes().next().unwrap().is_err(), "{start}");
            // A value of the wrong shape does not.
            for header in [
                "Contact: <sip:b@h",
                "Contact: <sip:b@h>;;",
                "Record-Route: <sip:p@h;lr",
            ] {
                assert!(msg(start, header).validate().is_err(), "{start} {header}");
            }
            assert!(
                msg(start, "Contact: <sip:b@h>").validate().is_ok(),
                "{start}"
            );
        }
        // Route is decoded in a request, which routing acts on.
        let route = "Route: <sip:p@h@x;lr>";
        assert!(msg("INVITE sip:b@h SIP/2.0", route).validate().is_err());
        assert!(msg("SIP/2.0 200 OK", route).validate().is_ok());
    }
}
