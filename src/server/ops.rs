//! Operational endpoints: `/health`, `/metrics` and the OpenAPI document.
//! None of them needs a token, and none reveals a secret's name, a count
//! of secrets or a principal.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::openapi;
use super::state::{AppState, AuthMode};

/// How long the health check waits for the database.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the store answers, a KEK is loaded and the tokens file is
/// valid; 503 otherwise. `auth` is `ok`, `invalid` (the tokens file is
/// missing, unreadable or has a bad line: no token is accepted, see the
/// log for the line) or `anonymous` (loopback, no tokens file).
pub async fn health(State(st): State<AppState>) -> Response {
    let reachable = matches!(
        tokio::time::timeout(HEALTH_DB_TIMEOUT, st.store.count_secrets()).await,
        Ok(Ok(_))
    );
    let ks = st.store.keys().current();
    let loaded = ks.active().is_ok();
    let auth = match &st.auth {
        AuthMode::Tokens(t) => t.status().as_str(),
        AuthMode::LocalAnonymous => "anonymous",
    };
    let ok = reachable && loaded && auth != "invalid";
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "auth": auth,
        "store": {"reachable": reachable, "dialect": st.store.dialect().name()},
        "keystore": {
            "loaded": loaded,
            "active_version": loaded.then(|| ks.active_version()),
            "test_mode": ks.is_test_mode(),
        },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

pub async fn openapi_json() -> Response {
    Json(openapi::document()).into_response()
}
