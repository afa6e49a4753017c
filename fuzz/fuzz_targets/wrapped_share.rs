//! Wrapped-share parsing; the checks live in `kms_providers::fuzzing::wrapped_share`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_providers::fuzzing::wrapped_share(data));
