//! Request extractors with MLflow-shaped errors.
//!
//! axum's own `Json`/`Query` rejections are plain text, and serde's messages
//! quote the offending input (`invalid type: string "sk-..."`), which for a
//! misplaced secret would echo it back and into any log of the response.
//! These extractors name the field (via `serde_path_to_error`) and keep only
//! the *expected* half of such messages. The request body is read into a
//! zeroizing buffer, so the plaintext it may hold is wiped once parsed.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::error::ApiError;

/// Largest request body accepted, in bytes. A value is at most 64 KiB; the
/// rest is headroom for JSON escaping of that value.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body, parsed with field-naming, value-free errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Required, not just checked when present: a browser sends a
        // cross-origin "simple" POST without a preflight only when the
        // type is absent or form-like (security review finding 13).
        let ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|ct| ct.to_str().ok())
            .and_then(|s| s.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !ok {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "INVALID_PARAMETER_VALUE",
                "request body must be sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
        let buf = Zeroizing::new(Vec::from(bytes));
        if buf.is_empty() {
            return Err(ApiError::invalid(
                "request body is empty: a JSON object is required",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&buf);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            if e.inner().is_syntax() || e.inner().is_eof() {
                not_json(e.inner())
            } else {
                field_error("request body", e.path().to_string(), e.inner())
            }
        })?;
        de.end().map_err(|e| not_json(&e))?;
        Ok(Self(value))
    }
}

/// Query parameters, parsed with field-naming errors.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        let value: T = serde_path_to_error::deserialize(de)
            .map_err(|e| field_error("query", e.path().to_string(), e.inner()))?;
        Ok(Self(value))
    }
}

/// MLflow's workspace header: the request's default workspace when the
/// body or query names none (docs/design.md §7).
pub const WORKSPACE_HEADER: &str = "x-mlflow-workspace";

/// The `X-MLFLOW-WORKSPACE` header, if sent. Its name is checked where it
/// is used, like any workspace.
pub struct HeaderWorkspace(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for HeaderWorkspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(WORKSPACE_HEADER) {
            None => Ok(Self(None)),
            Some(v) => v
                .to_str()
                .ok()
                .map(|s| Self(Some(s.trim().to_string())))
                .ok_or_else(|| {
                    ApiError::invalid("header X-MLFLOW-WORKSPACE is not a valid workspace name")
                }),
        }
    }
}

impl HeaderWorkspace {
    /// `named`, else the header, else `default`.
    pub fn or_default(&self, named: Option<String>) -> String {
        named
            .or_else(|| self.0.clone())
            .unwrap_or_else(|| crate::model::DEFAULT_WORKSPACE.to_string())
    }

    /// `named`, else the header.
    pub fn or_header(&self, named: Option<String>) -> Option<String> {
        named.or_else(|| self.0.clone())
    }
}

fn not_json(e: &serde_json::Error) -> ApiError {
    ApiError::invalid(format!(
        "request body is not valid JSON: {}",
        sanitize(&e.to_string())
    ))
}

/// Turn a deserialization error into a 400 naming the field.
fn field_error(what: &str, path: String, inner: &dyn std::fmt::Display) -> ApiError {
    let msg = sanitize(&inner.to_string());
    if path.is_empty() || path == "." || path == "?" {
        ApiError::invalid(format!("{what} is invalid: {msg}"))
    } else {
        ApiError::invalid(format!("field '{path}' is invalid: {msg}"))
    }
}

/// Drop the quoted input from serde's messages: `invalid type: string
/// "abc", expected a boolean` becomes `expected a boolean`. Messages that
/// only quote field names (`unknown field`, `missing field`) are kept, with
/// a long name cut short.
pub(crate) fn sanitize(msg: &str) -> String {
    let (head, tail) = match msg.rfind(" at line ") {
        Some(i) => msg.split_at(i),
        None => (msg, ""),
    };
    let head = if head.starts_with("invalid type:")
        || head.starts_with("invalid value:")
        || head.starts_with("invalid length")
    {
        match head.find(", expected ") {
            Some(i) => head[i + 2..].to_string(),
            None => "invalid value".to_string(),
        }
    } else if head.starts_with("unknown field")
        || head.starts_with("unknown variant")
        || head.starts_with("missing field")
        || head.starts_with("duplicate field")
    {
        // `unknown field `x`, expected one of ...`: keep a bounded name.
        let mut short: String = head.chars().take(200).collect();
        if head.chars().count() > 200 {
            short.push_str("...");
        }
        short
    } else if head.contains('"') || head.contains('`') {
        // Some other message quoting input (integer parse errors name the
        // digits): keep only its first words.
        head.split([':', '"', '`'])
            .next()
            .unwrap_or("invalid")
            .trim()
            .to_string()
    } else {
        head.to_string()
    };
    format!("{head}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_input() {
        assert_eq!(
            sanitize("invalid type: string \"sk-secret\", expected a boolean at line 1 column 9"),
            "expected a boolean at line 1 column 9"
        );
        assert_eq!(
            sanitize("invalid type: integer `12345`, expected a string"),
            "expected a string"
        );
        assert_eq!(sanitize("missing field `value`"), "missing field `value`");
        assert!(sanitize("unknown field `valu`, expected one of `secret_name`").contains("valu"));
        assert!(!sanitize("weird \"sk-secret\" thing").contains("sk-secret"));
    }
}
