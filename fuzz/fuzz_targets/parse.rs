//! Datagram parser: `Message::parse`, then `validate()`, every typed accessor, the
//! forwarding editor and the builders, with the invariants in `rollover_sip_fuzz::exercise`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollover_sip_fuzz::parse_input(data);
});
