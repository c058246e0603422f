//! `req.vars`: the call's variables (OpenSIPS AVPs), kept in Rust between routes so they
//! outlive any one route and any one Lua state. Keys are strings; values are strings,
//! numbers and booleans (a table or a function stored there is not kept).

use mlua::{Lua, Table, Value};

/// One variable's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Var {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// The variables of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Vars(Vec<(String, Var)>);

impl Vars {
    /// A fresh Lua table holding the variables.
    pub(crate) fn to_table(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(0, self.0.len())?;
        for (k, v) in &self.0 {
            match v {
                Var::Str(s) => t.raw_set(k.as_str(), s.as_str())?,
                Var::Int(i) => t.raw_set(k.as_str(), *i)?,
                Var::Num(n) => t.raw_set(k.as_str(), *n)?,
                Var::Bool(b) => t.raw_set(k.as_str(), *b)?,
            }
        }
        Ok(t)
    }

    /// The variables as a route left them in `t`.
    pub(crate) fn from_table(t: &Table) -> Vars {
        let mut out = Vec::new();
        for (k, v) in t.pairs::<Value, Value>().flatten() {
            let Value::String(k) = k else { continue };
            let Ok(k) = k.to_str().map(|s| s.to_owned()) else {
                continue;
            };
            let v = match v {
                Value::String(s) => match s.to_str() {
                    Ok(s) => Var::Str(s.to_owned()),
                    Err(_) => continue,
                },
                Value::Integer(i) => Var::Int(i),
                Value::Number(n) => Var::Num(n),
                Value::Boolean(b) => Var::Bool(b),
                _ => continue,
            };
            out.push((k, v));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Vars(out)
    }
}
