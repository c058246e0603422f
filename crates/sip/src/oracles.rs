//! The fast paths of the parser held to their general counterparts, for the fuzz targets
//! (feature `oracles`). Each function returns whether both agree on `input`; the unit tests
//! check the same with generated inputs.

use crate::headers::Via;
use crate::limits::Limits;
use crate::name::HeaderName;
use crate::parse::{parse_head, reference::parse_head_reference, Input};

/// The header-section parser with its one-pass line path against the general loop kept as
/// `parse::reference`: same headers, spans and errors, whole or partial, with default and
/// tight limits.
pub fn header_section_agrees(input: &[u8]) -> bool {
    let tight = Limits {
        max_headers: 4,
        max_header_line: 40,
        max_via: 2,
        max_route: 2,
        ..Limits::default()
    };
    [Limits::default(), tight].iter().all(|limits| {
        [Input::Complete, Input::Partial].into_iter().all(|mode| {
            format!("{:?}", parse_head(input, limits, mode))
                == format!("{:?}", parse_head_reference(input, limits, mode))
        })
    })
}

/// The one-pass Via parser, when it takes a value, against the general one.
pub fn via_agrees(value: &str) -> bool {
    Via::parse_plain(value).is_none_or(|plain| Some(plain) == Via::parse_general(value))
}

/// The header-name fast path (a known name right before a colon) against a
/// case-insensitive comparison with every known name.
pub fn header_name_agrees(line: &[u8]) -> bool {
    let Some((name, len)) = HeaderName::known_before_colon(line) else {
        return true;
    };
    let Some(n) = line.get(..len) else {
        return false;
    };
    let long = name
        .canonical()
        .is_some_and(|c| c.as_bytes().eq_ignore_ascii_case(n));
    let compact = name
        .compact()
        .and_then(|c| u8::try_from(c).ok())
        .is_some_and(|c| n.eq_ignore_ascii_case(&[c]));
    line.get(len) == Some(&b':') && (long || compact)
}
