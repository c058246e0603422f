//! Target templates: the text of a dial plan's target, `$1` and `${name}` filled in from
//! the rule's captures when it has any.

use std::collections::HashMap;

use rollover_proxy::Target;

use crate::LOCATION_TARGET;

/// A target as written, and parsed once at load when it has no capture to fill in (most
/// targets): routing a call then copies it instead of parsing its URI again.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) text: String,
    pub(crate) fixed: Option<Target>,
}

impl Template {
    pub(crate) fn new(text: String) -> Template {
        let fixed = if text.contains('$') || text == LOCATION_TARGET {
            None
        } else {
            Target::parse(&text).ok()
        };
        Template { text, fixed }
    }
}

impl std::ops::Deref for Template {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// Replaces `$1`, `${name}` and `$$` in a target template.
pub(crate) fn expand(template: &str, caps: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            let name = inner.get(..end).unwrap_or_default();
            out.push_str(caps.get(name).map_or("", String::as_str));
            rest = inner.get(end + 1..).unwrap_or_default();
        } else {
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            let name = after.get(..digits).unwrap_or_default();
            if digits == 0 {
                out.push('$');
            } else {
                out.push_str(caps.get(name).map_or("", String::as_str));
            }
            rest = after.get(digits..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    out
}
