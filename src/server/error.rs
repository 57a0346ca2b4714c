//! Errors of the REST layer and their MLflow shape (docs/design.md §7):
//! `{"error_code": ..., "message": ...}` with MLflow's status codes.
//!
//! Store errors that describe the caller's request (not found, invalid,
//! conflict, ...) are passed through: their messages name the object and
//! never hold a value. Everything else (database, keystore, crypto) is an
//! internal error. Its detail is logged under a fresh incident id and the
//! client gets only that id, so SQL, driver messages and file paths never
//! leave the server.

use std::time::Duration;

use crate::store::StoreError;
use crate::value::ValueError;
use crate::wire::{ErrorBody, ErrorKind};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answer of the API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1) with 429.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An answer of `kind`, with its code and status from
    /// [`crate::wire::ERRORS`].
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(kind.status(), kind.code(), message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::InvalidParameter, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::of(ErrorKind::RateLimited, message)
        }
    }

    /// A body over the size limit. MLflow has no code of its own for this;
    /// the status says what happened and the code what to fix.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::InvalidParameter.code(),
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// An internal failure. `detail` is logged with a fresh incident id;
    /// the client sees only the id.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        Self::of(
            ErrorKind::Internal,
            crate::store::incident::record("internal error", detail),
        )
    }

    /// The store cannot be reached: a temporary condition, retry later.
    pub fn unavailable(detail: &dyn std::fmt::Display) -> Self {
        Self::of(
            ErrorKind::Unavailable,
            crate::store::incident::record("the secrets store is temporarily unavailable", detail),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::RateLimited {
            message,
            retry_after,
        } = &e
        {
            return Self::rate_limited(message.clone(), *retry_after);
        }
        match e.kind() {
            ErrorKind::Internal => Self::internal(&e),
            ErrorKind::Unavailable => Self::unavailable(&e),
            kind => Self::of(kind, e.to_string()),
        }
    }
}

impl From<ValueError> for ApiError {
    fn from(e: ValueError) -> Self {
        // ValueError messages never contain the value itself.
        Self::invalid(format!("value is invalid: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            error_code: self.code.into(),
            message: self.message.as_str().into(),
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mlflow-secrets\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e: ApiError =
            StoreError::Database("UNIQUE constraint failed: secrets.secret_name".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "INTERNAL_ERROR");
        assert!(!e.message.contains("UNIQUE"), "{}", e.message);
    }

    #[test]
    fn codes_follow_mlflow() {
        let cases = [
            (
                StoreError::NotFound("x".into()),
                404,
                "RESOURCE_DOES_NOT_EXIST",
            ),
            (
                StoreError::AlreadyExists("x".into()),
                400,
                "RESOURCE_ALREADY_EXISTS",
            ),
            (
                StoreError::InvalidParameter("x".into()),
                400,
                "INVALID_PARAMETER_VALUE",
            ),
            (StoreError::Conflict("x".into()), 409, "RESOURCE_CONFLICT"),
            (
                StoreError::PermissionDenied("x".into()),
                403,
                "PERMISSION_DENIED",
            ),
            (
                StoreError::Unauthenticated("x".into()),
                401,
                "UNAUTHENTICATED",
            ),
            (
                StoreError::Unavailable("x".into()),
                503,
                "TEMPORARILY_UNAVAILABLE",
            ),
        ];
        for (err, status, code) in cases {
            let e = ApiError::from(err);
            assert_eq!((e.status.as_u16(), e.code), (status, code));
        }
        let e = ApiError::from(StoreError::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        });
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
