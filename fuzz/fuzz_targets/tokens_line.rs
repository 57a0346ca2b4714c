//! The tokens-file line parser, the RFC 3339 parser and `--ttl`
//! (`check_tokens_text`).
#![no_main]

include!("checks.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_tokens_text(text);
    }
});
