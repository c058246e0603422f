//! Stream framer: the input is a byte stream, fed to a `StreamFramer` whole, in chunks whose
//! sizes cycle through the input's first eight bytes (each `byte % 64 + 1`), and (up to
//! 1 KiB) byte by byte. All three must produce the same frames and the same final error.
//!
//! Using the stream's own first bytes as sizes keeps plain SIP messages valid seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollover_sip_fuzz::{frame_chunks, split_by, Out};

fuzz_target!(|data: &[u8]| {
    let sizes = data.get(..8).unwrap_or(data);
    let (whole, left_whole) = frame_chunks([data]);
    let (chunked, left_chunked) = frame_chunks(split_by(data, sizes));
    assert_eq!(whole, chunked, "chunking changed the frames");
    if !matches!(whole.last(), Some(Out::Error(_))) {
        assert_eq!(
            left_whole, left_chunked,
            "chunking changed what is left buffered"
        );
    }
    if data.len() <= 1024 {
        let (bytewise, _) = frame_chunks(data.chunks(1));
        assert_eq!(whole, bytewise, "byte-by-byte feeding changed the frames");
    }
});
