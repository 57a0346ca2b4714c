//! A response of the router driven in-process (the server and UI tests),
//! with the readers both use.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One response of the router driven in-process, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn code(&self) -> String {
        self.json()["error_code"].as_str().unwrap_or("").to_string()
    }

    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or("").to_string()
    }

    /// `secret.secret_id` of a create, update or revoke answer.
    pub fn secret_id(&self) -> String {
        self.json()["secret"]["secret_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret_id in {}", self.text))
            .to_string()
    }

    /// The answer is an error with this status and MLflow error code.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            self.text
        );
    }

    /// Everything a client sees, for the no-plaintext checks.
    pub fn everything(&self) -> String {
        let mut s = self.text.clone();
        for (k, v) in &self.headers {
            s.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("")));
        }
        s
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.header("set-cookie")
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
}
