//! `rollover`: the command-line front end.

/// Prints a line to stdout, ignoring a closed pipe (`rollover check … | head` must not panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod call_cmd;
mod parse_cmd;
mod plan_cmd;
mod proxy_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rollover: SIP call routing that rolls a call over from target to target until someone
/// answers.
#[derive(Debug, Parser)]
#[command(name = "rollover", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the failover proxy. Without --config it uses an embedded demo plan listening on
    /// 127.0.0.1:5060 (UDP and TCP).
    Proxy {
        /// The TOML configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log filter (tracing syntax), e.g. `info`, `rollover=debug`. Also RUST_LOG.
        #[arg(long, default_value = "info")]
        log: String,
    },
    /// Validate a configuration and print the compiled plan.
    Check {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show which rule matches a request and the targets it yields, without sending anything.
    Route {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// A captured request file, or a Request-URI (an INVITE to it is made up).
        #[arg(long, short)]
        request: String,
        /// The source address the request comes from.
        #[arg(long, default_value = "127.0.0.1:5060")]
        source: String,
        /// The transport it arrives on (udp, tcp, tls).
        #[arg(long, default_value = "udp")]
        transport: String,
    },
    /// Run the real proxy core in virtual time against scripted targets and print the timeline.
    Simulate {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// A captured request file, or a Request-URI (an INVITE to it is made up).
        #[arg(long, short)]
        request: String,
        /// How the targets behave: a file, or inline, e.g.
        /// "a=100,silence b=180@2s,486@5s c=302(sip:d@h;q=0.5) e=200@1s d=unreachable".
        #[arg(long, short)]
        world: String,
        /// Stop after this much virtual time (seconds).
        #[arg(long, default_value_t = 300)]
        limit: u64,
    },
    /// Place a call: the target, then each --alt in turn until one answers; 3xx redirects
    /// followed, rejected, or asked about. Exit status 0 when answered.
    Call {
        /// The primary target (sip: URI; `/TCP` or `;transport=tcp` for TCP).
        target: String,
        /// An alternate target, tried when the previous ones fail (repeatable).
        #[arg(long)]
        alt: Vec<String>,
        /// Our identity.
        #[arg(long, default_value = "<sip:rollover@127.0.0.1>")]
        from: String,
        /// Send every INVITE through this proxy.
        #[arg(long)]
        via_proxy: Option<String>,
        /// Most targets tried, redirects included.
        #[arg(long, default_value_t = 5)]
        max_targets: usize,
        /// What to do with 3xx redirects: ask (prompt for each target), follow, reject.
        #[arg(long, default_value = "follow")]
        redirect: String,
        /// Seconds to stay in the call once answered, before hanging up.
        #[arg(long, default_value_t = 2)]
        hold: u64,
        /// Local UDP address (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Leave a target that sends no response at all within this (`10`, `1.5s`, `800ms`).
        #[arg(long, default_value = "10")]
        no_response_timeout: String,
        /// CANCEL a target that rings longer than this.
        #[arg(long, default_value = "20")]
        ring_timeout: String,
        /// User name for digest challenges (401/407).
        #[arg(long)]
        auth_user: Option<String>,
        /// Password for digest challenges.
        #[arg(long)]
        auth_password: Option<String>,
    },
    /// Parse one SIP message from a file (or `-` for stdin) and print its start line and
    /// decoded headers. Exits 0 when the message is accepted, 1 with the reason otherwise.
    Parse {
        /// The file holding one message, exactly as captured (`-` reads stdin).
        file: PathBuf,
        /// Print only the verdict line.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy { config, log } => proxy_cmd::run(config.as_deref(), &log),
        Command::Check { config } => plan_cmd::check(&config),
        Command::Route {
            config,
            request,
            source,
            transport,
        } => plan_cmd::route(&config, &request, &source, &transport),
        Command::Simulate {
            config,
            request,
            world,
            limit,
        } => plan_cmd::simulate(&config, &request, &world, limit),
        Command::Parse { file, quiet } => parse_cmd::run(&file, quiet),
        Command::Call {
            target,
            alt,
            from,
            via_proxy,
            max_targets,
            redirect,
            hold,
            listen,
            no_response_timeout,
            ring_timeout,
            auth_user,
            auth_password,
        } => call_cmd::run(call_cmd::CallArgs {
            target,
            alt,
            from,
            via_proxy,
            max_targets,
            redirect,
            hold,
            listen,
            no_response_timeout,
            ring_timeout,
            auth: auth_user.zip(auth_password),
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollover: {e:#}");
            ExitCode::from(2)
        }
    }
}
