//! `rollover user add|remove|list`: the users who may register and call, kept in the store
//! as digest hashes (`H(user:realm:password)` with MD5 and SHA-256), never as passwords.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use rollover_dialplan::{Config, StoreSettings};
use rollover_registrar::auth::User;

/// `rollover user …`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The TOML configuration (for `[store]`); without it, `./rollover-data/`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add a user, or change their password. The password is read from the terminal
    /// (asked twice), or as one line from standard input.
    Add {
        /// user@domain; the domain is the digest realm.
        user: String,
    },
    /// Remove a user.
    Remove {
        /// user@domain.
        user: String,
    },
    /// List the users.
    List,
}

/// Runs the command.
pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let settings = store_settings(args.config.as_deref())?;
    let (mut store, _) = crate::registrar::open_store(&settings)?;
    match args.action {
        Action::Add { user } => {
            let (name, realm) = split(&user)?;
            let password = read_password(&user)?;
            store.put_user(&User::new(name, realm, &password))?;
            crate::say!("{user}: saved");
        }
        Action::Remove { user } => {
            let (name, realm) = split(&user)?;
            if !store.remove_user(name, realm)? {
                bail!("{user}: no such user");
            }
            crate::say!("{user}: removed");
        }
        Action::List => {
            for u in store.users()? {
                crate::say!("{}@{}", u.username, u.realm);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[store]` of the configuration, or the default (`./rollover-data/`).
fn store_settings(config: Option<&Path>) -> anyhow::Result<StoreSettings> {
    let cfg = match config {
        Some(p) => Config::load(p).map_err(|e| anyhow!("{e}"))?,
        None => Config::parse("<default>", "").map_err(|e| anyhow!("{e}"))?,
    };
    Ok(cfg.store)
}

/// `alice@example.com` → (`alice`, `example.com`); the domain must be written in lower
/// case, as the registrar compares it.
fn split(user: &str) -> anyhow::Result<(&str, &str)> {
    let user = user.strip_prefix("sip:").unwrap_or(user);
    let Some((name, domain)) = user.rsplit_once('@') else {
        bail!("{user:?}: expected user@domain");
    };
    if name.is_empty() || domain.is_empty() || name.contains(':') {
        bail!("{user:?}: expected user@domain");
    }
    if domain.chars().any(|c| c.is_ascii_uppercase()) {
        bail!("{domain:?}: write the domain in lower case");
    }
    Ok((name, domain))
}

/// The password: asked twice on a terminal (not echoed), else one line of stdin.
fn read_password(user: &str) -> anyhow::Result<String> {
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("password for {user}: "))?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the two passwords differ");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        bail!("an empty password");
    }
    Ok(pw)
}
