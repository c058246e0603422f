//! Transaction matching keys (RFC 3261 §17.1.3, §17.2.3, §9.2).
//!
//! A key is one string: its fields joined by spaces (none of them can hold white space
//! once parsed). Lookups write the key into a reused buffer, so matching a retransmission
//! allocates nothing; the table stores the key once, shared with the transaction.

use std::fmt::Write;

use rollover_sip::{has_magic_cookie, Message, Method};

/// Client side: `c <branch> <CSeq method>` (§17.1.3). A CANCEL shares its INVITE's branch,
/// so the method keeps them apart.
pub(crate) fn client_key(msg: &Message, out: &mut String) -> Option<()> {
    let branch = msg.top_via_branch_and_sent_by().ok()?.0?;
    let cseq = msg.cseq().ok()?;
    client_key_of(branch, &cseq.method, out);
    Some(())
}

/// [`client_key`] from its parts, for a sender that knows the branch it wrote.
pub(crate) fn client_key_of(branch: &str, method: &Method, out: &mut String) {
    out.clear();
    for part in ["c ", branch, " ", method.as_str()] {
        out.push_str(part);
    }
}

/// Server side. RFC 3261 requests: `s <branch> <sent-by> <method>` where ACK counts as
/// INVITE (§17.2.3). RFC 2543 requests (no magic cookie): Request-URI, From tag, Call-ID,
/// CSeq number, top Via sent-by and method; the To tag is left out so the ACK of a non-2xx
/// (which carries our tag) still matches its INVITE. `as_method` overrides the method: a
/// CANCEL looks up the INVITE it cancels (§9.2).
pub(crate) fn server_key(
    msg: &Message,
    as_method: Option<&Method>,
    out: &mut String,
) -> Option<()> {
    let method = match (as_method, msg.method()?) {
        (Some(m), _) => m,
        (None, Method::Ack) => &Method::Invite,
        (None, m) => m,
    };
    let (branch, sent_by) = msg.top_via_branch_and_sent_by().ok()?;
    out.clear();
    if let Some(branch) = branch.filter(|b| has_magic_cookie(b)) {
        for part in ["s ", branch, " "] {
            out.push_str(part);
        }
        push_lower(out, sent_by);
        out.push(' ');
        out.push_str(method.as_str());
        Some(())
    } else {
        let uri = msg.request_uri_str()?;
        let from_tag = msg.from_tag().unwrap_or("-");
        let call_id = msg.call_id().ok()?;
        let seq = msg.cseq().ok()?.seq;
        write!(out, "o {uri} {from_tag} {call_id} {seq} ").ok()?;
        push_lower(out, sent_by);
        write!(out, " {method}").ok()
    }
}

fn push_lower(out: &mut String, s: &str) {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(s);
    }
}
