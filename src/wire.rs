//! The REST wire contract (docs/design.md §7), written once: the path
//! prefix, the response bodies, the error body and the table that maps a
//! [`StoreError`] to its MLflow error code and HTTP status.
//!
//! The server ([`crate::server`]) serializes these types and the REST
//! client store ([`crate::store::http`]) deserializes them, so the two
//! cannot drift apart: a field renamed here is renamed on both sides, and
//! the error code a server sends is the one the client maps back.
//! Request bodies stay with the server (`server::requests`): they decode
//! values straight into `SecretString`s and refuse unknown fields, which
//! the client never needs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use hyper::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::model::{AuditEntry, Secret, SecretBinding};
use crate::store::{InjectedRef, StoreError};

/// The API prefix of docs/design.md §7.
pub const API_PREFIX: &str = "/api/2.0/mlflow/secrets";

/// `create`, `update`, `revoke` and `get`.
#[derive(Serialize, Deserialize)]
pub struct SecretResponse {
    pub secret: Secret,
}

/// `bind` and `get-binding`.
#[derive(Serialize, Deserialize)]
pub struct BindingResponse {
    pub binding: SecretBinding,
}

/// `list`: one page of secrets.
#[derive(Serialize, Deserialize)]
pub struct SecretsPage {
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `list-bindings`: one page of bindings.
#[derive(Serialize, Deserialize)]
pub struct BindingsPage {
    #[serde(default)]
    pub bindings: Vec<SecretBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `audit`: entries in order.
#[derive(Serialize, Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    pub entries: Vec<AuditEntry>,
}

/// `resolve`'s answer: `{"values": {name: string}, "injected": [...]}`.
/// The values are `SecretString`s on both sides; only serializing exposes
/// them, into the response body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveResponse {
    pub values: BTreeMap<String, SecretString>,
    pub injected: Vec<InjectedRef>,
}

impl Serialize for ResolveResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use secrecy::ExposeSecret;
        use serde::ser::SerializeStruct;
        let values: BTreeMap<&str, &str> = self
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let mut st = s.serialize_struct("ResolveResponse", 2)?;
        st.serialize_field("values", &values)?;
        st.serialize_field("injected", &self.injected)?;
        st.end()
    }
}

/// The body of every error answer.
#[derive(Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub error_code: Cow<'a, str>,
    #[serde(borrow)]
    pub message: Cow<'a, str>,
}

/// What kind of failure an error is, as the wire sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidParameter,
    Conflict,
    PermissionDenied,
    Unauthenticated,
    RateLimited,
    /// A temporary condition: retry later.
    Unavailable,
    /// Anything the caller cannot fix; the message is an incident id.
    Internal,
}

/// The one table of (kind, MLflow error code, HTTP status). The server
/// answers with it, [`StoreError::error_code`] reports it, and the REST
/// client maps a code back through it.
pub const ERRORS: [(ErrorKind, &str, StatusCode); 9] = [
    (
        ErrorKind::NotFound,
        "RESOURCE_DOES_NOT_EXIST",
        StatusCode::NOT_FOUND,
    ),
    (
        ErrorKind::AlreadyExists,
        "RESOURCE_ALREADY_EXISTS",
        StatusCode::BAD_REQUEST,
    ),
    (
        ErrorKind::InvalidParameter,
        "INVALID_PARAMETER_VALUE",
        StatusCode::BAD_REQUEST,
    ),
    (
        ErrorKind::Conflict,
        "RESOURCE_CONFLICT",
        StatusCode::CONFLICT,
    ),
    (
        ErrorKind::PermissionDenied,
        "PERMISSION_DENIED",
        StatusCode::FORBIDDEN,
    ),
    (
        ErrorKind::Unauthenticated,
        "UNAUTHENTICATED",
        StatusCode::UNAUTHORIZED,
    ),
    (
        ErrorKind::RateLimited,
        "REQUEST_LIMIT_EXCEEDED",
        StatusCode::TOO_MANY_REQUESTS,
    ),
    (
        ErrorKind::Unavailable,
        "TEMPORARILY_UNAVAILABLE",
        StatusCode::SERVICE_UNAVAILABLE,
    ),
    (
        ErrorKind::Internal,
        "INTERNAL_ERROR",
        StatusCode::INTERNAL_SERVER_ERROR,
    ),
];

impl ErrorKind {
    /// This kind's row of [`ERRORS`].
    fn row(self) -> &'static (ErrorKind, &'static str, StatusCode) {
        ERRORS
            .iter()
            .find(|(k, _, _)| *k == self)
            .expect("every ErrorKind has a row in ERRORS")
    }

    /// MLflow's error code.
    pub fn code(self) -> &'static str {
        self.row().1
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.row().2
    }

    /// The kind an error code names; `None` for a code not in the table.
    pub fn from_code(code: &str) -> Option<Self> {
        ERRORS
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(k, _, _)| *k)
    }
}

impl StoreError {
    /// The wire kind of this error. Database, schema, keystore and crypto
    /// failures are internal: their detail never leaves the server.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::InvalidParameter(_) => ErrorKind::InvalidParameter,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Self::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Crypto { .. } | Self::Keystore(_) | Self::Database(_) | Self::Schema(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// The store error an error answer stands for: the caller-facing kinds
    /// come back as themselves with the server's message; anything else
    /// (internal, unavailable, a code this client does not know) is
    /// `Unavailable` naming the status, since this client cannot act on it.
    pub fn from_wire(
        status: StatusCode,
        body: &ErrorBody<'_>,
        retry_after: Option<Duration>,
    ) -> Self {
        let message = body.message.to_string();
        match ErrorKind::from_code(&body.error_code) {
            Some(ErrorKind::NotFound) => Self::NotFound(message),
            Some(ErrorKind::AlreadyExists) => Self::AlreadyExists(message),
            Some(ErrorKind::InvalidParameter) => Self::InvalidParameter(message),
            Some(ErrorKind::Conflict) => Self::Conflict(message),
            Some(ErrorKind::PermissionDenied) => Self::PermissionDenied(message),
            Some(ErrorKind::Unauthenticated) => Self::Unauthenticated(message),
            Some(ErrorKind::RateLimited) => Self::RateLimited {
                message,
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            },
            Some(ErrorKind::Unavailable | ErrorKind::Internal) | None => {
                Self::Unavailable(format!("server error ({status}): {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_kind_and_code() {
        for (i, (k, c, _)) in ERRORS.iter().enumerate() {
            for (k2, c2, _) in &ERRORS[i + 1..] {
                assert_ne!(k, k2, "{k:?} has two rows");
                assert_ne!(c, c2, "{c} has two rows");
            }
            assert_eq!(ErrorKind::from_code(c), Some(*k));
        }
    }

    #[test]
    fn caller_errors_survive_the_round_trip() {
        let cases = [
            StoreError::NotFound("m".into()),
            StoreError::AlreadyExists("m".into()),
            StoreError::InvalidParameter("m".into()),
            StoreError::Conflict("m".into()),
            StoreError::PermissionDenied("m".into()),
            StoreError::Unauthenticated("m".into()),
            StoreError::RateLimited {
                message: "m".into(),
                retry_after: Duration::from_secs(3),
            },
        ];
        for e in cases {
            let body = ErrorBody {
                error_code: e.kind().code().into(),
                message: "m".into(),
            };
            let back =
                StoreError::from_wire(e.kind().status(), &body, Some(Duration::from_secs(3)));
            assert_eq!(back.kind(), e.kind(), "{e}");
            assert_eq!(back.to_string(), e.to_string());
        }
    }
}
