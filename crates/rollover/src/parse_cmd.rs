//! `rollover parse FILE`: check a captured message the way the server would.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rollover_sip::{HeaderName, Located, Message};

/// Reads, parses and validates one message; prints it decoded, or the reason it is refused.
pub fn run(path: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let verdict = Message::parse(bytes.clone()).and_then(|m| m.validate().map(|()| m));
    let mut out = std::io::stdout().lock();
    match verdict {
        Ok(m) => {
            if !quiet {
                print_message(&mut out, &m)?;
            }
            writeln!(out, "accepted")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let kind = if bytes.starts_with(b"SIP/") {
                "response dropped"
            } else {
                "request refused"
            };
            writeln!(
                out,
                "rejected: {} (a server answers {}; {kind})",
                Located(&e, &bytes),
                e.status()
            )?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_message(out: &mut impl Write, m: &Message) -> anyhow::Result<()> {
    writeln!(out, "{}", String::from_utf8_lossy(m.start_line_bytes()))?;
    for h in m.headers() {
        let name = h.name.canonical().unwrap_or_else(|| m.name_str(h));
        writeln!(out, "  {name}: {}", m.value_unfolded(h))?;
    }
    if let Ok(via) = m.top_via() {
        writeln!(
            out,
            "  -- top Via: {} {} branch={}",
            via.transport,
            via.sent_by,
            via.branch().unwrap_or("(none: RFC 2543 matching)")
        )?;
    }
    if let (Ok(cseq), Ok(call_id)) = (m.cseq(), m.call_id()) {
        writeln!(
            out,
            "  -- transaction: Call-ID {call_id}, CSeq {} {}",
            cseq.seq, cseq.method
        )?;
    }
    let ct = m
        .header_str(HeaderName::ContentType)
        .and_then(Result::ok)
        .unwrap_or("none");
    writeln!(out, "  -- body: {} bytes ({ct})", m.body().len())?;
    Ok(())
}
