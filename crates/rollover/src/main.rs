//! `rollover`: the command-line front end.

/// Prints a line to stdout, ignoring a closed pipe (`rollover check … | head` must not panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// jemalloc instead of glibc's malloc: with its background thread (options in
/// `.cargo/config.toml`) freed memory goes back to the system; glibc kept 32 MB after 4,000
/// TCP connections had closed (docs/performance.md).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod call_cmd;
mod dns;
mod parse_cmd;
mod plan_cmd;
pub(crate) mod proxy_cmd;
mod registrar;
mod user_cmd;
mod workers;

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
        /// Listen here instead of the config's `[server] listen`, e.g. `udp:0.0.0.0:5060
        /// advertise 198.51.100.7:5060` or `tcp:127.0.0.1:5080` (repeatable).
        #[arg(long)]
        listen: Vec<String>,
    },
    /// Validate a configuration and print the compiled plan. Without --config, print the
    /// embedded default configuration (a starting point: `rollover check > rollover.toml`).
    Check {
        /// The TOML configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
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
        /// The source address the request comes from.
        #[arg(long, default_value = "198.51.100.1:5060")]
        source: String,
        /// The transport it arrives on (udp, tcp, tls).
        #[arg(long, default_value = "udp")]
        transport: String,
    },
    /// Place a call: the target, then each --alt in turn until one answers; 3xx redirects
    /// followed, rejected, or asked about. Exit status 0 when answered.
    Call(call_cmd::CallArgs),
    /// Manage the users who register and call through the registrar.
    User(user_cmd::UserArgs),
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
        Command::Proxy {
            config,
            log,
            listen,
        } => proxy_cmd::run(config.as_deref(), &log, &listen),
        Command::Check { config: Some(c) } => plan_cmd::check(&c),
        Command::Check { config: None } => {
            say!("{}", proxy_cmd::DEFAULT_CONFIG.trim_end());
            Ok(ExitCode::SUCCESS)
        }
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
            source,
            transport,
        } => plan_cmd::simulate(&config, &request, &world, limit, &source, &transport),
        Command::Parse { file, quiet } => parse_cmd::run(&file, quiet),
        Command::Call(args) => call_cmd::run(args),
        Command::User(args) => user_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollover: {e:#}");
            ExitCode::from(2)
        }
    }
}
