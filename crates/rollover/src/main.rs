//! `rollover`: the command-line front end.

mod parse_cmd;

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
        Command::Parse { file, quiet } => parse_cmd::run(&file, quiet),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollover: {e:#}");
            ExitCode::from(2)
        }
    }
}
