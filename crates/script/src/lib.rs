//! # rollover-script
//!
//! Routing scripts in Lua 5.4 for the Rollover proxy, with the routes of OpenSIPS and
//! Kamailio: a request route for each new request, and the branch, reply and failure routes
//! it arms by name. The proxy core knows nothing of Lua: it asks its
//! [`rollover_proxy::RoutePolicy`], and [`ScriptPolicy`] answers by running the script.
//!
//! ```text
//!  new request ──▶ request_route(req) ──▶ relay / reply / drop / dialplan
//!  each branch ──▶ branch_route_NAME(branch)        (edits that branch only)
//!  each reply  ──▶ reply_route_NAME(reply, req)     (edits that reply; may drop a provisional)
//!  all failed  ──▶ failure_route_NAME(req, failed)  (relay again, or the best reply goes)
//! ```
//!
//! What it guarantees:
//! - a script is compiled once, when it is loaded ([`Script::load`]); a load error names
//!   the file, the line and Lua's message;
//! - a script runs sandboxed: no `io`, `package`, `require`, `load`, `dofile`, `debug`,
//!   and of `os` only `os.time` and `os.clock`;
//! - every route runs under an instruction budget: a script that loops is stopped, logged
//!   with the Call-ID and the route, and the call goes on as if that route were not armed
//!   (so does a route that raises an error, or allocates more than [`MEMORY_LIMIT`]);
//! - each call keeps the [`Script`] it started with: a reload ([`ScriptPolicy::set_script`])
//!   changes only the calls that start after it;
//! - `req.vars` lives as long as the call and is seen by every route of it.
//!
//! The API is described in `docs/scripting.md`.
//!
//! Lua is built with mlua's `send` feature: a [`Script`] is compiled by the start-up code or
//! the reload task and handed to a worker's driver, so it must be `Send`. Each worker gets
//! its own compiled copy (one Lua state per worker); only that worker's driver runs it.

mod api;
mod policy;
mod routing;
mod vars;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, VmState};

pub use policy::ScriptPolicy;
pub use routing::{Routing, SwitchNeedsRestart};

/// How many Lua instructions one route may run before it is stopped (a loop).
pub const INSTRUCTION_LIMIT: u64 = 10_000_000;

/// The most memory one script's Lua state may hold (a route that allocates more fails).
pub const MEMORY_LIMIT: usize = 64 << 20;

/// The hook counts in steps of this many instructions.
const HOOK_STEP: u32 = 1_000;

/// A script that does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The file could not be read.
    #[error("{file}: {message}")]
    Read {
        /// The file.
        file: String,
        /// The system's message.
        message: String,
    },
    /// Lua refused it: a syntax error, or an error while its top level ran.
    #[error("{file}:{line}: {message}")]
    Lua {
        /// The file.
        file: String,
        /// The line, 0 when Lua did not say.
        line: u32,
        /// Lua's message, without the file and line.
        message: String,
    },
    /// It defines no `request_route` function.
    #[error("{file}: no request_route function")]
    NoRequestRoute {
        /// The file.
        file: String,
    },
}

/// One loaded version of a script: its own Lua state, compiled once. Calls hold it by
/// `Arc`, so a reload leaves the calls under way on the version they started with.
pub struct Script {
    lua: Lua,
    name: String,
    /// Hook steps left for the route running now.
    budget: Arc<AtomicU64>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish()
    }
}

impl Script {
    /// Loads and compiles the script in `path`.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Script::from_source(&file, &source)
    }

    /// Compiles `source`, named `name` in messages (a file name).
    pub fn from_source(name: &str, source: &str) -> Result<Script, ScriptError> {
        let lua_err = |e: mlua::Error| lua_error(name, &e);
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::OS,
            LuaOptions::new(),
        )
        .map_err(lua_err)?;
        sandbox(&lua).map_err(lua_err)?;
        lua.set_memory_limit(MEMORY_LIMIT).map_err(lua_err)?;
        let budget = Arc::new(AtomicU64::new(0));
        let left = budget.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_STEP),
            move |_, _| {
                let before = left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .unwrap_or(0);
                if before == 0 {
                    return Err(mlua::Error::RuntimeError(
                        "instruction limit reached (a loop?)".into(),
                    ));
                }
                Ok(VmState::Continue)
            },
        )
        .map_err(lua_err)?;
        let script = Script {
            lua,
            name: name.to_owned(),
            budget,
        };
        script.refill();
        script
            .lua
            .load(source)
            .set_name(format!("@{name}"))
            .exec()
            .map_err(lua_err)?;
        let has_route = matches!(
            script.lua.globals().get::<mlua::Value>("request_route"),
            Ok(mlua::Value::Function(_))
        );
        if !has_route {
            return Err(ScriptError::NoRequestRoute {
                file: name.to_owned(),
            });
        }
        Ok(script)
    }

    /// The name it was loaded under (its file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the script defines the global function `name`.
    pub fn has_function(&self, name: &str) -> bool {
        matches!(
            self.lua.globals().get::<mlua::Value>(name),
            Ok(mlua::Value::Function(_))
        )
    }

    /// A full budget for the next route.
    fn refill(&self) {
        self.budget
            .store(INSTRUCTION_LIMIT / u64::from(HOOK_STEP), Ordering::Relaxed);
    }

    /// Whether the last route ran out of instructions.
    fn exhausted(&self) -> bool {
        self.budget.load(Ordering::Relaxed) == 0
    }
}

/// Takes out of the global table what a routing script must not reach.
fn sandbox(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    let os: mlua::Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    safe_os.set("time", os.get::<mlua::Value>("time")?)?;
    safe_os.set("clock", os.get::<mlua::Value>("clock")?)?;
    g.set("os", safe_os)?;
    for name in [
        "io",
        "package",
        "require",
        "load",
        "loadstring",
        "loadfile",
        "dofile",
        "debug",
        "collectgarbage",
        // A protected call would catch the instruction limit and loop on.
        "pcall",
        "xpcall",
        "coroutine",
    ] {
        g.set(name, mlua::Value::Nil)?;
    }
    Ok(())
}

/// A load error with its line taken out of Lua's `file:line: message`.
fn lua_error(file: &str, e: &mlua::Error) -> ScriptError {
    let text = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => return lua_error(file, cause),
        other => other.to_string(),
    };
    let first = text.lines().next().unwrap_or_default();
    let (line, message) = split_location(first);
    ScriptError::Lua {
        file: file.to_owned(),
        line,
        message: message.to_owned(),
    }
}

/// `"routes.lua:12: boom"` → `(12, "boom")`; anything else → `(0, text)`.
fn split_location(text: &str) -> (u32, &str) {
    // The file name may itself hold colons: the line is the first all-digit field.
    let mut rest = text;
    while let Some((_, after)) = rest.split_once(':') {
        if let Some((num, msg)) = after.split_once(':') {
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
                return (num.parse().unwrap_or(0), msg.trim_start());
            }
        }
        rest = after;
    }
    (0, text)
}

/// A runtime error as one line: Lua's message, file and line included.
fn runtime_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.lines().next().unwrap_or_default().to_owned(),
        mlua::Error::CallbackError { cause, .. } => runtime_message(cause),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests;

/// A compiled script is shared between the driver and the reload task.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Script>();
    is::<std::sync::Arc<Script>>();
}
