//! XOR share decoding, combining and splitting; the checks live in
//! `xor_split::fuzzing::combine_shares` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = xor_split::fuzzing::combine_shares(data);
});
