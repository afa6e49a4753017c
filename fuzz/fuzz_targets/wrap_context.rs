//! Canonical context encoding is injective; the checks live in
//! `kms_providers::fuzzing::context_encoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_providers::fuzzing::context_encoding(data));
