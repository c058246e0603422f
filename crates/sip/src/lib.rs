//! # rollover-sip
//!
//! SIP messages for Rollover: parse, inspect, edit and build RFC 3261 requests and
//! responses. No IO, no clock, no randomness: every other layer stands on this one.
//!
//! ```text
//!  datagram ─▶ Message::parse ─┐            ┌─▶ typed headers on demand (Via, CSeq, To…)
//!  stream ──▶ StreamFramer ────┴▶ Message ──┼─▶ validate() → 400/416/505 with a reason
//!                                           └─▶ edit() → splice → Bytes (forwarding)
//! ```
//!
//! Guarantees:
//! - **Zero copy.** A [`Message`] is one `bytes::Bytes` plus header positions. Typed views
//!   ([`Via`], [`NameAddr`], [`SipUri`]…) borrow from it. Forwarding edits splice the
//!   original bytes; untouched headers are never re-serialised.
//! - **Hostile input is fine.** No panics on any input, all sizes and counts bounded by
//!   [`Limits`], errors typed with a byte offset and the status a server answers.
//!
//! Written by hand rather than with a parser-combinator crate: it is the hot path, and
//! the lazy, range-based layout (decode only what is asked for) is the point.

mod addr;
mod auth;
mod build;
mod edit;
mod error;
mod framer;
mod headers;
mod limits;
mod message;
mod method;
mod name;
#[cfg(feature = "oracles")]
#[doc(hidden)]
pub mod oracles;
mod params;
mod parse;
mod rebuild;
mod salvage;
/// Byte scanning helpers, public for the fuzz targets only.
#[doc(hidden)]
pub mod scan;
mod stamp;
mod status;
mod uri;
mod validate;
mod via;

pub use addr::{parse_qvalue, AddrError, DisplayName, NameAddr};
pub use auth::Auth;
pub use build::{BuildError, RequestBuilder, ResponseBuilder};
pub use edit::Editor;
pub use error::{ErrorKind, Located, ParseError};
pub use framer::{Frame, StreamFramer};
pub use headers::{has_magic_cookie, CSeq, Reason, RetryAfter, Via, MAGIC_COOKIE};
pub use limits::Limits;
pub use message::{Header, Message};
pub use method::Method;
pub use name::HeaderName;
pub use params::{unquote, BadParam, Params, ParamsIter};
pub use salvage::refusal_for_unparsed;
pub use status::{InvalidStatusCode, StatusClass, StatusCode};
pub use uri::{Host, SipUri, TelUri, Uri, UriError};
