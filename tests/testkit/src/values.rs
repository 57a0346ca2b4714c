//! Secret values from and to plain strings, for assertions.

use mlflow_secrets::value::SecretValue;
use secrecy::ExposeSecret;

/// A string value.
pub fn val(s: &str) -> SecretValue {
    SecretValue::from_string(s.to_string()).unwrap()
}

/// The string of a string value (panics on an object).
pub fn as_string(v: &SecretValue) -> String {
    match v {
        SecretValue::String(s) => s.expose_secret().to_string(),
        other => panic!("expected a string value, got {other:?}"),
    }
}
