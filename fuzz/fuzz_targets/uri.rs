//! Text parsers: `Uri::parse`, `NameAddr::parse`, `Via::parse` and the other value parsers
//! on the input as a string; a parsed URI must survive `Display` and parse back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        rollover_sip_fuzz::text_input(s);
    }
});
