//! The objects a route is handed (`req`, `branch`, `reply`, `failed`) and what a route asks
//! for through them ([`Acts`]). Each object is a plain table whose methods are closures
//! over the message in hand, alive only while the route runs.

use std::cell::RefCell;
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

/// The `req` object: the request as received, `vars`, and the request-level actions.
#[allow(clippy::too_many_arguments)]
pub(crate) fn req_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    msg: &'env Message,
    ruri: &str,
    source: &str,
    vars: &Table,
    acts: &'env RefCell<Acts>,
    kind: Kind,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("method", msg.method().map_or("", |m| m.as_str()).to_owned())?;
    t.set("ruri", ruri)?;
    t.set("source", source)?;
    t.set("vars", vars)?;
    t.set(
        "header",
        scope.create_function(move |_, (_, name): (Value, String)| Ok(header_of(msg, &name)))?,
    )?;
    let writable = kind != Kind::Reply;
    t.set(
        "set_ruri",
        scope.create_function(move |_, (this, uri): (Table, String)| {
            if !writable {
                return Err(not_here("set_ruri", kind));
            }
            this.set("ruri", uri.as_str())?;
            acts.borrow_mut().ruri = Some(uri);
            Ok(())
        })?,
    )?;
    t.set(
        "append_header",
        scope.create_function(move |_, (_, line): (Value, String)| {
            if !writable {
                return Err(not_here("append_header", kind));
            }
            let (n, v) = split_header(&line)?;
            acts.borrow_mut().edits.append_header(&n, &v);
            Ok(())
        })?,
    )?;
    t.set(
        "remove_header",
        scope.create_function(move |_, (_, name): (Value, String)| {
            if !writable {
                return Err(not_here("remove_header", kind));
            }
            acts.borrow_mut().edits.remove_header(&name);
            Ok(())
        })?,
    )?;
    t.set(
        "on_failure",
        scope.create_function(move |_, (_, name): (Value, String)| {
            acts.borrow_mut().on_failure = Some(name);
            Ok(())
        })?,
    )?;
    t.set(
        "on_reply",
        scope.create_function(move |_, (_, name): (Value, String)| {
            acts.borrow_mut().on_reply = Some(name);
            Ok(())
        })?,
    )?;
    t.set(
        "on_branch",
        scope.create_function(move |_, (_, name): (Value, String)| {
            acts.borrow_mut().on_branch = Some(name);
            Ok(())
        })?,
    )?;
    t.set(
        "relay",
        scope.create_function(
            move |_, (_, targets, opts): (Value, Option<Value>, Option<Table>)| {
                if !writable {
                    return Err(not_here("relay", kind));
                }
                acts.borrow_mut().decision = Some(relay_args(targets, opts)?);
                Ok(())
            },
        )?,
    )?;
    t.set(
        "lookup",
        scope.create_function(move |_, (_, opts): (Value, Option<Table>)| {
            if !writable {
                return Err(not_here("lookup", kind));
            }
            // The Request-URI's registered contacts, by q value: `relay("location:")`.
            let d = match relay_args(None, opts)? {
                Decide::Relay(_, o) => Decide::Relay(Some(vec!["location:".to_owned()]), o),
                d => d,
            };
            acts.borrow_mut().decision = Some(d);
            Ok(())
        })?,
    )?;
    t.set(
        "reply",
        scope.create_function(move |_, (_, code, reason): (Value, u16, Option<String>)| {
            if kind != Kind::Request {
                return Err(not_here("reply", kind));
            }
            if !(200..700).contains(&code) {
                return Err(mlua::Error::RuntimeError(format!(
                    "reply: {code} is not a final status"
                )));
            }
            let reason = reason.unwrap_or_default();
            acts.borrow_mut().decision = Some(Decide::Reply(code, reason));
            Ok(())
        })?,
    )?;
    t.set(
        "drop",
        scope.create_function(move |_, _: Value| {
            if kind != Kind::Request {
                return Err(not_here("drop", kind));
            }
            acts.borrow_mut().decision = Some(Decide::Drop);
            Ok(())
        })?,
    )?;
    t.set(
        "dialplan",
        scope.create_function(move |_, _: Value| {
            if kind != Kind::Request {
                return Err(not_here("dialplan", kind));
            }
            acts.borrow_mut().decision = Some(Decide::Dialplan);
            Ok(())
        })?,
    )?;
    Ok(t)
}

/// The header edits and `drop()` shared by `branch` and `reply`.
fn edit_methods<'scope, 'env: 'scope>(
    t: &Table,
    scope: &'scope Scope<'scope, 'env>,
    acts: &'env RefCell<Acts>,
) -> mlua::Result<()> {
    t.set(
        "append_header",
        scope.create_function(move |_, (_, line): (Value, String)| {
            let (n, v) = split_header(&line)?;
            acts.borrow_mut().edits.append_header(&n, &v);
            Ok(())
        })?,
    )?;
    t.set(
        "remove_header",
        scope.create_function(move |_, (_, name): (Value, String)| {
            acts.borrow_mut().edits.remove_header(&name);
            Ok(())
        })?,
    )?;
    t.set(
        "drop",
        scope.create_function(move |_, _: Value| {
            acts.borrow_mut().edits.drop_message();
            Ok(())
        })?,
    )?;
    Ok(())
}

/// The `branch` object of a branch route.
pub(crate) fn branch_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    request: &'env Message,
    ruri: &str,
    acts: &'env RefCell<Acts>,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("ruri", ruri)?;
    t.set(
        "header",
        scope
            .create_function(move |_, (_, name): (Value, String)| Ok(header_of(request, &name)))?,
    )?;
    edit_methods(&t, scope, acts)?;
    Ok(t)
}

/// The `reply` object of a reply route.
pub(crate) fn reply_table<'scope, 'env: 'scope>(
    lua: &Lua,
    scope: &'scope Scope<'scope, 'env>,
    reply: &'env Message,
    acts: &'env RefCell<Acts>,
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
    edit_methods(&t, scope, acts)?;
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
