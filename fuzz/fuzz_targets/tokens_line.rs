//! The tokens-file line parser, the RFC 3339 parser and `--ttl`: never
//! panic, never quote a pasted token in an error, and an accepted line formats
//! back to a line that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlflow_secrets::server::tokens_file::{format_line, parse_line, parse_rfc3339, parse_ttl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_rfc3339(text);
    let _ = parse_ttl(text);
    for line in text.lines() {
        match parse_line(line.trim()) {
            Ok(t) => {
                let again = format_line(&t.principal, t.role, &t.digest, &t.scope);
                assert_eq!(parse_line(&again).as_ref(), Ok(&t), "{again}");
            }
            Err(e) => {
                // Errors are `&'static str` and cannot carry the line; a
                // pasted token (`mlss_...`) is the field that matters.
                for field in line.split_whitespace().filter(|f| f.contains("mlss_")) {
                    assert!(!e.contains(field), "{e}");
                }
            }
        }
    }
});
