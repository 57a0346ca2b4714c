// The checks of the fuzz targets, `include!`d by them and by the corpus
// replay in tests/server/fuzz.rs, so both run exactly the same code.

/// Tokens-file text: the RFC 3339 and `--ttl` parsers never panic; every
/// line either parses, and formats back to a line that parses to the same
/// thing, or is refused without quoting a pasted token. Returns how many
/// lines were accepted.
pub fn check_tokens_text(text: &str) -> usize {
    use mlflow_secrets::server::tokens_file::{format_line, parse_line, parse_rfc3339, parse_ttl};
    let _ = parse_rfc3339(text);
    let _ = parse_ttl(text);
    let mut accepted = 0;
    for line in text.lines() {
        match parse_line(line.trim()) {
            Ok(t) => {
                accepted += 1;
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
    accepted
}

/// A REST body or query string, parsed into the server's own request type
/// chosen by the first byte (the serde types behind `ApiJson` and
/// `ApiQuery`); a value that parses is validated. Nothing may panic.
pub fn check_rest_request(data: &[u8]) {
    use mlflow_secrets::server::requests::*;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => {
            if let Ok(r) = serde_json::from_slice::<CreateRequest>(rest) {
                let _ = r.value.into_value();
            }
        }
        1 => {
            if let Ok(r) = serde_json::from_slice::<UpdateRequest>(rest) {
                let _ = r.value.into_value();
            }
        }
        2 => drop(serde_json::from_slice::<SecretIdRequest>(rest)),
        3 => drop(serde_json::from_slice::<BindRequest>(rest)),
        4 => drop(serde_json::from_slice::<UnbindRequest>(rest)),
        5 => drop(serde_json::from_slice::<ResolveRequest>(rest)),
        6 => drop(serde_urlencoded::from_bytes::<GetQuery>(rest)),
        7 => drop(serde_urlencoded::from_bytes::<ListQuery>(rest)),
        8 => drop(serde_urlencoded::from_bytes::<ListBindingsQuery>(rest)),
        9 => drop(serde_urlencoded::from_bytes::<ListAuditQuery>(rest)),
        10 => drop(serde_urlencoded::from_bytes::<GetBindingQuery>(rest)),
        _ => drop(serde_json::from_slice::<serde_json::Value>(rest)),
    }
}
