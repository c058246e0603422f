//! `rollover call`: place a call from the terminal, watch it roll over, decide redirects.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rollover_proxy::{Target, TargetPlan};
use rollover_sip::Message;
use rollover_ua::{CallEvent, CallOptions, Endpoint, RedirectDecision, Redirects};

/// What the command line asked for.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The primary target (sip: URI; `/TCP` or `;transport=tcp` for TCP).
    pub target: String,
    /// An alternate target, tried when the previous ones fail (repeatable).
    #[arg(long)]
    pub alt: Vec<String>,
    /// Our identity.
    #[arg(long, default_value = "<sip:rollover@127.0.0.1>")]
    pub from: String,
    /// Send every INVITE through this proxy.
    #[arg(long)]
    pub via_proxy: Option<String>,
    /// Most targets tried, redirects included.
    #[arg(long, default_value_t = 5)]
    pub max_targets: usize,
    /// What to do with 3xx redirects: ask (prompt for each target), follow, reject.
    #[arg(long, default_value = "follow")]
    pub redirect: String,
    /// Seconds to stay in the call once answered, before hanging up.
    #[arg(long, default_value_t = 2)]
    pub hold: u64,
    /// Local UDP address (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Leave a target that sends no response at all within this (`10`, `1.5s`, `800ms`).
    #[arg(long, default_value = "10")]
    pub no_response_timeout: String,
    /// CANCEL a target that rings longer than this.
    #[arg(long, default_value = "20")]
    pub ring_timeout: String,
    /// User name for digest challenges (401/407).
    #[arg(long)]
    pub auth_user: Option<String>,
    /// Password for digest challenges.
    #[arg(long)]
    pub auth_password: Option<String>,
    /// The SDP offer to send (a file); without it a small audio offer (PCMU, PCMA,
    /// telephone-event) for our address is sent.
    #[arg(long, conflicts_with = "no_sdp")]
    pub sdp: Option<std::path::PathBuf>,
    /// Send the INVITE without an offer; the callee's 2xx then carries one, and our answer
    /// goes in the ACK.
    #[arg(long)]
    pub no_sdp: bool,
}

/// A small audio session description for `ip`: the offer we send, or our answer.
fn audio_sdp(ip: std::net::IpAddr, port: u16, payloads: &str) -> bytes::Bytes {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=rollover 1 1 IN {family} {ip}\r\ns=rollover\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {payloads}\r\n"
    );
    for p in payloads.split(' ') {
        match p {
            "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "101" => s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"),
            _ => {}
        }
    }
    s.push_str("a=sendrecv\r\n");
    bytes::Bytes::from(s)
}

/// Our answer to an offer: the first of PCMU or PCMA it offers (no media is sent; the
/// answer completes the offer/answer exchange so the dialog is well formed).
fn answer_to(offer: &[u8], ip: std::net::IpAddr, port: u16) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(offer).ok()?;
    let m = text.lines().find(|l| l.starts_with("m=audio "))?;
    let payload = m.split(' ').skip(3).find(|p| *p == "0" || *p == "8")?;
    Some(audio_sdp(ip, port, payload))
}

/// Places the call; exit status 0 when it was answered.
pub fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(place(args))
}

fn ask_user(target: &Target) -> RedirectDecision {
    say!("  redirect to {target}: [a]ccept, accept and [r]eplace To, re[j]ect, [s]top? ");
    let mut line = String::new();
    // End of input (or an error) is no answer: stop, rather than accept every target.
    if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
        say!("  (no answer on standard input: stopping)");
        return RedirectDecision::Stop;
    }
    match line.trim() {
        "a" | "accept" | "" => RedirectDecision::Accept,
        "r" | "replace" => RedirectDecision::AcceptReplace,
        "j" | "reject" => RedirectDecision::Reject,
        _ => RedirectDecision::Stop,
    }
}

async fn place(args: CallArgs) -> anyhow::Result<ExitCode> {
    let mut targets = vec![Target::parse(&args.target).map_err(|e| anyhow!("{e}"))?];
    for a in &args.alt {
        targets.push(Target::parse(a).map_err(|e| anyhow!("--alt: {e}"))?);
    }
    let mut endpoint = Endpoint::bind(args.listen)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let local = endpoint.local_addr();
    #[allow(clippy::disallowed_methods)] // unique ids for this call
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut opts = CallOptions::new(
        &args.from,
        local,
        TargetPlan::serial(targets),
        &format!("{stamp:x}-{}@{}", std::process::id(), local.ip()),
        &format!("{:x}", stamp & 0xffff_ffff),
    );
    opts.policy.max_targets = args.max_targets;
    // Media port: not used (no RTP is sent), but a real one, next to our SIP port.
    let media_port = local.port().wrapping_add(2).max(1024);
    opts.sdp = match (&args.sdp, args.no_sdp) {
        (_, true) => None,
        (Some(f), false) => Some(bytes::Bytes::from(
            std::fs::read(f).with_context(|| format!("--sdp {}", f.display()))?,
        )),
        (None, false) => Some(audio_sdp(local.ip(), media_port, "0 8 101")),
    };
    let ip = local.ip();
    opts.answer = Some(rollover_ua::SdpAnswerer(std::sync::Arc::new(
        move |offer: &[u8]| answer_to(offer, ip, media_port),
    )));
    let duration = |flag: &str, v: &str| {
        rollover_dialplan::parse_duration(v)
            .ok_or_else(|| anyhow!("{flag} {v:?}: expected 10, 1.5s or 800ms"))
    };
    opts.policy.no_response_timeout = duration("--no-response-timeout", &args.no_response_timeout)?;
    opts.policy.ring_timeout = duration("--ring-timeout", &args.ring_timeout)?;
    opts.credentials = args
        .auth_user
        .clone()
        .zip(args.auth_password.clone())
        .map(|(username, password)| rollover_ua::Credentials { username, password });
    opts.outbound_proxy = match &args.via_proxy {
        Some(p) => Some(Target::parse(p).map_err(|e| anyhow!("--via-proxy: {e}"))?),
        None => None,
    };
    let redirects = match args.redirect.as_str() {
        "follow" => Redirects::Follow,
        "reject" => Redirects::Reject,
        "ask" => Redirects::Ask(Box::new(|_: &Target, _: &Message| {
            RedirectDecision::Pending
        })),
        other => {
            return Err(anyhow!(
                "--redirect {other:?}: expected ask, follow or reject"
            ))
        }
    };
    let mut call = endpoint
        .call(opts, redirects)
        .await
        .ok_or(anyhow!("the endpoint stopped"))?;
    let mut status = None;
    while let Some(e) = call.next_event().await {
        if std::env::var_os("ROLLOVER_DEBUG_EVENTS").is_some() {
            eprintln!("event: {e:?}");
        }
        match e {
            CallEvent::Trying(t) => say!("trying {t}"),
            CallEvent::Ringing(t, code) => say!("  {t}: {code}"),
            CallEvent::Redirected(t, to) => {
                let to: Vec<String> = to.iter().map(ToString::to_string).collect();
                say!("  {t} redirects to [{}]", to.join(", "));
            }
            CallEvent::RedirectPending(t) => {
                let d = tokio::task::spawn_blocking(move || ask_user(&t))
                    .await
                    .unwrap_or(RedirectDecision::Stop);
                call.process_redirect(d).await;
            }
            CallEvent::RolledOver(t, why) => say!("  left {t}: {why}"),
            CallEvent::Answered(t, _) => {
                say!("answered by {t}; holding {} s", args.hold);
                tokio::time::sleep(Duration::from_secs(args.hold)).await;
                call.hangup().await;
            }
            CallEvent::Ended(o) => {
                status = Some(o.status);
                if o.answered_by.is_none() {
                    say!("not answered: {}", o.status);
                    for a in &o.attempts {
                        say!("  {}: {}", a.target, a.how);
                    }
                    break;
                }
            }
            CallEvent::HungUp { remote } => {
                say!("hung up{}", if remote { " by the other side" } else { "" });
                break;
            }
            _ => {}
        }
    }
    Ok(match status {
        Some(s) if s.is_success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
