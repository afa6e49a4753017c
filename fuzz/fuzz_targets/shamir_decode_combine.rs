#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gf256_shamir::fuzzing::decode_and_combine(data));
