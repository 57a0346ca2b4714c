//! REST request bodies and query strings (`check_rest_request`).
#![no_main]

include!("checks.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_rest_request(data));
