//! The objects a route is handed (`req`, `branch`, `reply`, `failed`) and what a route asks
//! for through them ([`Acts`]). What a route may touch ([`Ctx`]) sits in the Lua state's
//! app data while it runs: `req`'s methods are made once per state and find the call
//! there, so routing a call creates no closure. `branch`, `reply` and `failed` are plain
//! tables whose methods are closures over the message in hand, alive only while the route
//! runs.

use std::time::Duration;

use mlua::{Lua, Scope, Table, Value};
use rollover_proxy::{Edits, FailoverPolicy, ResponsePattern};
use rollover_sip::Message;

/// Which route is running: what `req` may do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `request_route`: everything.
    Request,
    /// `failure_route_*`: relay again, edit the request, re-arm; no reply, drop or dial plan.
    Failure,
    /// `reply_route_*`: `req` is read-only (a reply route cannot start a branch).
    Reply,
}

/// Options of `req:relay(targets, {…})`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RelayOpts {
    pub(crate) parallel: bool,
    pub(crate) given: bool,
    pub(crate) no_response_timeout: Option<Duration>,
    pub(crate) ring_timeout: Option<Duration>,
    pub(crate) on_response: Option<ResponsePattern>,
    pub(crate) follow_redirects: Option<bool>,
}

impl RelayOpts {
    /// The failover policy these options give, over the defaults.
    pub(crate) fn policy(&self, targets: usize) -> FailoverPolicy {
        let mut p = FailoverPolicy::default();
        if let Some(d) = self.no_response_timeout {
            p.no_response_timeout = d;
        }
        if let Some(d) = self.ring_timeout {
            p.ring_timeout = d;
        }
        if let Some(r) = &self.on_response {
            p.on_response = r.clone();
        }
        if let Some(f) = self.follow_redirects {
            p.follow_redirects = f;
        }
        p.max_targets = p.max_targets.max(targets);
        p
    }
}

/// What a request or failure route decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decide {
    /// `req:relay(…)`: to these URIs (the Request-URI when `None`).
    Relay(Option<Vec<String>>, RelayOpts),
    /// `req:reply(code, reason)`.
    Reply(u16, String),
    /// `req:drop()`.
    Drop,
    /// `req:dialplan()`.
    Dialplan,
}

/// What one route asked for.
#[derive(Debug, Default)]
pub(crate) struct Acts {
    /// `req:set_ruri`.
    pub(crate) ruri: Option<String>,
    /// Header edits to the message in hand (the request, the branch or the reply), and
    /// `drop()` of a branch or a reply.
    pub(crate) edits: Edits,
    pub(crate) on_failure: Option<String>,
    pub(crate) on_reply: Option<String>,
    pub(crate) on_branch: Option<String>,
    pub(crate) decision: Option<Decide>,
}

/// The route in progress, in the Lua state's app data from [`begin`] to [`end`].
pub(crate) struct Ctx {
    /// The request `req` stands for.
    msg: Message,
    /// Which route: what `req` may do.
    kind: Kind,
    /// What the route asked for so far.
    acts: Acts,
}

/// Where `req`'s shared metatable is kept in the registry.
const REQ_META: &str = "rollover.req";

/// A route over `msg` starts.
pub(crate) fn begin(lua: &Lua, msg: &Message, kind: Kind) {
    lua.set_app_data(Ctx {
        msg: msg.clone(),
        kind,
        acts: Acts::default(),
    });
}

/// The route ended: what it asked for.
pub(crate) fn end(lua: &Lua) -> Acts {
    lua.remove_app_data::<Ctx>()
        .map(|c| c.acts)
        .unwrap_or_default()
}

fn no_route() -> mlua::Error {
    mlua::Error::RuntimeError("no route is running".to_owned())
}

/// Runs `f` on the running route's acts.
fn with_acts<R>(lua: &Lua, f: impl FnOnce(&mut Acts) -> R) -> mlua::Result<R> {
    let mut ctx = lua.app_data_mut::<Ctx>().ok_or_else(no_route)?;
    Ok(f(&mut ctx.acts))
}

/// Which route is running.
fn kind(lua: &Lua) -> mlua::Result<Kind> {
    Ok(lua.app_data_ref::<Ctx>().ok_or_else(no_route)?.kind)
}

/// The first `name` header of `msg`, unfolded.
fn header_of(msg: &Message, name: &str) -> Option<String> {
    msg.headers_by_name(name)
        .next()
        .map(|h| msg.value_unfolded(h).into_owned())
}

/// `"X-Name: value"` → `("X-Name", "value")`.
fn split_header(line: &str) -> mlua::Result<(String, String)> {
    match line.split_once(':') {
        Some((n, v)) if !n.trim().is_empty() && !line.contains(['\r', '\n']) => {
            Ok((n.trim().to_owned(), v.trim().to_owned()))
        }
        _ => Err(mlua::Error::RuntimeError(format!(
            "append_header: {line:?} is not \"Name: value\""
        ))),
    }
}

fn seconds(v: Option<f64>, what: &str) -> mlua::Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(mlua::Error::RuntimeError(format!(
            "{what} = {s}: seconds expected"
        ))),
    }
}

fn relay_args(targets: Option<Value>, opts: Option<Table>) -> mlua::Result<Decide> {
    let targets = match targets {
        None | Some(Value::Nil) => None,
        Some(Value::String(s)) => Some(vec![s.to_str()?.to_owned()]),
        Some(Value::Table(t)) => Some(
            t.sequence_values::<String>()
                .collect::<mlua::Result<Vec<_>>>()?,
        ),
        Some(other) => {
            return Err(mlua::Error::RuntimeError(format!(
                "relay: a URI or a list of URIs expected, not a {}",
                other.type_name()
            )))
        }
    };
    let mut o = RelayOpts::default();
    if let Some(t) = opts {
        o.given = true;
        o.parallel = match t.get::<Option<String>>("mode")?.as_deref() {
            None | Some("serial") => false,
            Some("parallel") => true,
            Some(m) => {
                return Err(mlua::Error::RuntimeError(format!(
                    "relay: mode {m:?}: \"serial\" or \"parallel\" expected"
                )))
            }
        };
        o.no_response_timeout = seconds(t.get("no_response_timeout")?, "no_response_timeout")?;
        o.ring_timeout = seconds(t.get("ring_timeout")?, "ring_timeout")?;
        if let Some(p) = t.get::<Option<String>>("on_response")? {
            o.on_response = Some(
                ResponsePattern::new(&p)
                    .map_err(|e| mlua::Error::RuntimeError(format!("relay: on_response: {e}")))?,
            );
        }
        o.follow_redirects = t.get("follow_redirects")?;
    }
    Ok(Decide::Relay(targets, o))
}

fn not_here(what: &str, kind: Kind) -> mlua::Error {
    let route = match kind {
        Kind::Request => "request_route",
        Kind::Failure => "a failure route",
        Kind::Reply => "a reply route",
    };
    mlua::Error::RuntimeError(format!("req:{what}() is not allowed in {route}"))
}

/// The `req` object: the request as received, `vars`, and the request-level actions. Its
/// methods live in one metatable per Lua state (hidden from the script).
pub(crate) fn req_table(lua: &Lua, ruri: &str, source: &str, vars: &Table) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    let method = lua
        .app_data_ref::<Ctx>()
        .ok_or_else(no_route)?
        .msg
        .method()
        .map_or("", |m| m.as_str())
        .to_owned();
    t.set("method", method)?;
    t.set("ruri", ruri)?;
    t.set("source", source)?;
    t.set("vars", vars)?;
    t.set_metatable(Some(req_meta(lua)?))?;
    Ok(t)
}

/// `req`'s metatable, made on first use.
fn req_meta(lua: &Lua) -> mlua::Result<Table> {
    if let Some(mt) = lua.named_registry_value::<Option<Table>>(REQ_META)? {
        return Ok(mt);
    }
    let m = lua.create_table()?;
    m.set(
        "header",
        lua.create_function(|lua, (_, name): (Value, String)| {
            let ctx = lua.app_data_ref::<Ctx>().ok_or_else(no_route)?;
            Ok(header_of(&ctx.msg, &name))
        })?,
    )?;
    m.set(
        "set_ruri",
        lua.create_function(|lua, (this, uri): (Table, String)| {
            let kind = kind(lua)?;
            if kind == Kind::Reply {
                return Err(not_here("set_ruri", kind));
            }
            this.set("ruri", uri.as_str())?;
            with_acts(lua, |a| a.ruri = Some(uri))
        })?,
    )?;
    m.set(
        "append_header",
        lua.create_function(|lua, (_, line): (Value, String)| {
            let kind = kind(lua)?;
            if kind == Kind::Reply {
                return Err(not_here("append_header", kind));
            }
            let (n, v) = split_header(&line)?;
            with_acts(lua, |a| {
                a.edits.append_header(&n, &v);
            })
        })?,
    )?;
    m.set(
        "remove_header",
        lua.create_function(|lua, (_, name): (Value, String)| {
            let kind = kind(lua)?;
            if kind == Kind::Reply {
                return Err(not_here("remove_header", kind));
            }
            with_acts(lua, |a| a.edits.remove_header(&name))
        })?,
    )?;
    m.set(
        "on_failure",
        lua.create_function(|lua, (_, name): (Value, String)| {
            with_acts(lua, |a| a.on_failure = Some(name))
        })?,
    )?;
    m.set(
        "on_reply",
        lua.create_function(|lua, (_, name): (Value, String)| {
            with_acts(lua, |a| a.on_reply = Some(name))
        })?,
    )?;
    m.set(
        "on_branch",
        lua.create_function(|lua, (_, name): (Value, String)| {
            with_acts(lua, |a| a.on_branch = Some(name))
        })?,
    )?;
    m.set(
        "relay",
        lua.create_function(
            |lua, (_, targets, opts): (Value, Option<Value>, Option<Table>)| {
                let kind = kind(lua)?;
                if kind == Kind::Reply {
                    return Err(not_here("relay", kind));
                }
                let d = relay_args(targets, opts)?;
                with_acts(lua, |a| a.decision = Some(d))
            },
        )?,
    )?;
    m.set(
        "lookup",
        lua.create_function(|lua, (_, opts): (Value, Option<Table>)| {
            let kind = kind(lua)?;
            if kind == Kind::Reply {
                return Err(not_here("lookup", kind));
            }
            // The Request-URI's registered contacts, by q value: `relay("location:")`.
            let d = match relay_args(None, opts)? {
                Decide::Relay(_, o) => Decide::Relay(Some(vec!["location:".to_owned()]), o),
                d => d,
            };
            with_acts(lua, |a| a.decision = Some(d))
        })?,
    )?;
    m.set(
        "reply",
        lua.create_function(|lua, (_, code, reason): (Value, u16, Option<String>)| {
            let kind = kind(lua)?;
            if kind != Kind::Request {
                return Err(not_here("reply", kind));
            }
            if !(200..700).contains(&code) {
                return Err(mlua::Error::RuntimeError(format!(
                    "reply: {code} is not a final status"
                )));
            }
            let reason = reason.unwrap_or_default();
            with_acts(lua, |a| a.decision = Some(Decide::Reply(code, reason)))
        })?,
    )?;
    m.set(
        "drop",
        lua.create_function(|lua, _: Value| {
            let kind = kind(lua)?;
            if kind != Kind::Request {
                return Err(not_here("drop", kind));
            }
            with_acts(lua, |a| a.decision = Some(Decide::Drop))
        })?,
    )?;
    m.set(
        "dialplan",
        lua.create_function(|lua, _: Value| {
            let kind = kind(lua)?;
            if kind != Kind::Request {
                return Err(not_here("dialplan", kind));
            }
            with_acts(lua, |a| a.decision = Some(Decide::Dialplan))
        })?,
    )?;
    let mt = lua.create_table()?;
    mt.set("__index", m)?;
    // getmetatable(req) gives false: a script cannot change the methods every call shares.
    mt.set("__metatable", false)?;
    lua.set_named_registry_value(REQ_META, &mt)?;
    Ok(mt)
}

/// The header edits and `drop()` shared by `branch` and `reply`.
fn edit_methods<'scope, 'env: 'scope>(
    t: &Table,
    scope: &'scope Scope<'scope, 'env>,
) -> mlua::Result<()> {
    t.set(
        "append_header",
        scope.create_function(move |lua, (_, line): (Value, String)| {
            let (n, v) = split_header(&line)?;
            with_acts(lua, |a| {
                a.edits.append_header(&n, &v);
            })
        })?,
    )?;
    t.set(
        "remove_header",
        scope.create_function(move |lua, (_, name): (Value, String)| {
            with_acts(lua, |a| a.edits.remove_header(&name))
        })?,
    )?;
    t.set(
        "drop",
        scope.create_function(move |lua, _: Value| with_acts(lua, |a| a.edits.drop_message()))?,
    )?;
    Ok(())
}

/// The `branch` object of a branch route.
pub(crate) fn branch_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    request: &'env Message,
    ruri: &str,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("ruri", ruri)?;
    t.set(
        "header",
        scope
            .create_function(move |_, (_, name): (Value, String)| Ok(header_of(request, &name)))?,
    )?;
    edit_methods(&t, scope)?;
    Ok(t)
}

/// The `reply` object of a reply route.
pub(crate) fn reply_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    reply: &'env Message,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", reply.status().unwrap_or(0))?;
    t.set(
        "reason",
        reply
            .reason_phrase()
            .map(|r| r.into_owned())
            .unwrap_or_default(),
    )?;
    t.set(
        "header",
        scope.create_function(move |_, (_, name): (Value, String)| Ok(header_of(reply, &name)))?,
    )?;
    edit_methods(&t, scope)?;
    Ok(t)
}

/// The `failed` object of a failure route.
pub(crate) fn failed_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    status: u16,
    reply: Option<&'env Message>,
    target: Option<&str>,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", status)?;
    let reason = reply
        .and_then(|r| r.reason_phrase().map(|r| r.into_owned()))
        .or_else(|| {
            rollover_sip::StatusCode::new(status)
                .ok()
                .map(|s| s.reason().to_owned())
        })
        .unwrap_or_default();
    t.set("reason", reason)?;
    t.set("target", target)?;
    t.set(
        "header",
        scope.create_function(move |_, (_, name): (Value, String)| {
            Ok(reply.and_then(|r| header_of(r, &name)))
        })?,
    )?;
    Ok(t)
}
