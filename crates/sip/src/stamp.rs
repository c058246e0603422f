//! Via `received` and `rport` (RFC 3261 §18.2.1, RFC 3581): what a server writes into the
//! top Via of a request so its responses find the way back.

use std::net::{IpAddr, SocketAddr};

use crate::{Host, Message};

impl Message {
    /// Adds `received` when the sent-by is not the source address, and fills an empty `rport`
    /// (RFC 3261 §18.2.1, RFC 3581). Re-parses only when something changed.
    pub fn stamp_via(self, source: SocketAddr) -> Message {
        let msg = self;
        let (needs_received, needs_rport) = match msg.top_via() {
            Ok(v) => {
                let same_ip = match v.host {
                    Host::V4(ip) => IpAddr::from(ip) == source.ip(),
                    Host::V6(ip) => IpAddr::from(ip) == source.ip(),
                    Host::Domain(_) => false,
                };
                let (received, rport) = v.received_and_rport();
                (!same_ip && received.is_none(), rport == Some(None))
            }
            Err(_) => return msg,
        };
        if !needs_received && !needs_rport {
            return msg;
        }
        let Some(h) = msg.header(crate::HeaderName::Via).copied() else {
            return msg;
        };
        let Ok(value) = msg.value_str(&h) else {
            return msg;
        };
        // The first value of the top Via line, with its parameters completed.
        let (first, rest) = match crate::scan::find_top_level(value.as_bytes(), b',') {
            Some(i) => (
                value.get(..i).unwrap_or(value),
                value.get(i..).unwrap_or(""),
            ),
            None => (value, ""),
        };
        let mut first = first.trim_end().to_owned();
        if needs_rport {
            // ";rport" becomes ";rport=PORT"
            if let Some(pos) = first.to_ascii_lowercase().find(";rport") {
                let after = pos + ";rport".len();
                let tail = first.get(after..).unwrap_or("").to_owned();
                first.truncate(after);
                first.push_str(&format!("={}{tail}", source.port()));
            }
        }
        if needs_received || needs_rport {
            first.push_str(&format!(";received={}", source.ip()));
        }
        let edited = msg
            .edit()
            .replace_value(&h, &format!("{first}{rest}"))
            .finish();
        Message::parse(edited).unwrap_or(msg)
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    fn req(via: &str) -> Message {
        let text = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
        Message::parse(text.into_bytes()).unwrap()
    }

    #[test]
    fn received_and_rport() {
        let src = "192.0.2.7:5999".parse().unwrap();
        let m =
            req("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP x").stamp_via(src);
        let v = m.top_via().unwrap();
        assert_eq!(v.received(), Some("192.0.2.7"));
        assert_eq!(v.rport(), Some(Some(5999)));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(m.vias().count(), 2);
        // Nothing to do: untouched, same bytes.
        let same = req("SIP/2.0/UDP 192.0.2.7:5999;branch=z9hG4bK1");
        let out = same.clone().stamp_via(src);
        assert_eq!(out.as_bytes(), same.as_bytes());
    }
}
