//! REST request bodies and query strings, parsed into the server's own
//! request types (the serde types behind `ApiJson` and `ApiQuery`): never
//! panic, and a value field that parses is validated without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlflow_secrets::server::requests::*;

fuzz_target!(|data: &[u8]| {
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
});
