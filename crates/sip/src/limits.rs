//! Bounds on what the parser accepts, so hostile input costs bounded memory and time.

/// Parser limits. Every one is checked during parsing and reported as a typed error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line, headers and body) in bytes.
    pub max_message_size: usize,
    /// Most header fields (lines, continuations included) in one message.
    pub max_headers: usize,
    /// Longest header field in bytes, continuation lines included.
    pub max_header_line: usize,
    /// Most Via values (all Via header fields together). 70 matches the Max-Forwards a UAC
    /// starts with, so a legitimate request never hits it.
    pub max_via: usize,
    /// Most Route plus Record-Route values.
    pub max_route: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 128,
            max_header_line: 8 * 1024,
            max_via: 70,
            max_route: 70,
        }
    }
}
