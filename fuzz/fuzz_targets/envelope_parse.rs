//! Envelope parsing, re-serialising and opening; the checks live in
//! `envelope::fuzzing::parse_and_open` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = envelope::fuzzing::parse_and_open(data);
});
