//! Shared fixtures for the server tests: a store on a temporary SQLite file
//! (test-mode KEK, so no PBKDF2), a tokens file with one principal per
//! role, and in-process calls through the router.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use mlflow_secrets::keystore::{Keystore, KeystoreHandle};
use mlflow_secrets::server::{AppState, AuthMode, TokenStore, router};
use mlflow_secrets::store::SqlStore;
use serde_json::Value;
use tower::ServiceExt;

pub const API: &str = "/api/2.0/mlflow/secrets";
pub use testkit::Resp;
pub use testkit::tokens::*;

/// A temporary store and the files around it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: SqlStore,
    pub tokens: PathBuf,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_keystore(Keystore::test_mode()).await
    }

    pub async fn with_keystore(ks: Keystore) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqlStore::connect(&uri, KeystoreHandle::new(ks))
            .await
            .unwrap();
        store.ensure_schema(true).await.unwrap();
        Self::around(dir, store)
    }

    /// A fixture around an existing store (another backend); `dir` holds
    /// the tokens file.
    pub fn around(dir: tempfile::TempDir, store: SqlStore) -> Self {
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, tokens_text()).unwrap();
        Self { dir, store, tokens }
    }

    /// The state behind [`Fixture::app`], for tests that look inside it.
    pub fn state(&self, rate_limit: u32) -> AppState {
        let ts = TokenStore::load(&self.tokens).unwrap();
        AppState::new(
            self.store.clone(),
            AuthMode::Tokens(Arc::new(ts)),
            rate_limit,
        )
    }

    /// The router with bearer-token auth and a rate limit (0: none).
    pub fn app(&self, rate_limit: u32) -> Router {
        let ts = TokenStore::load(&self.tokens).unwrap();
        router(AppState::new(
            self.store.clone(),
            AuthMode::Tokens(Arc::new(ts)),
            rate_limit,
        ))
    }

    /// The router with anonymous loopback access.
    pub fn anonymous_app(&self) -> Router {
        router(AppState::new(
            self.store.clone(),
            AuthMode::LocalAnonymous,
            0,
        ))
    }
}

/// Every response seen by [`call`], for tests that scan them all.
pub static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Call the app in-process. `body` is sent as JSON text when given.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    call_with(app, method, uri, token, body, &[]).await
}

/// [`call`] with extra headers (a `Host` given here replaces `localhost`).
pub async fn call_with(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header(header::HOST, "localhost:5005");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(text) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(text.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let r = Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    };
    SEEN.lock().unwrap().push(r.everything());
    r
}

pub async fn get(app: &Router, path_and_query: &str, token: Option<&str>) -> Resp {
    call(
        app,
        Method::GET,
        &format!("{API}/{path_and_query}"),
        token,
        None,
    )
    .await
}

pub async fn post(app: &Router, op: &str, token: Option<&str>, body: &str) -> Resp {
    call(app, Method::POST, &format!("{API}/{op}"), token, Some(body)).await
}

pub async fn patch(app: &Router, op: &str, token: Option<&str>, body: &str) -> Resp {
    call(
        app,
        Method::PATCH,
        &format!("{API}/{op}"),
        token,
        Some(body),
    )
    .await
}

pub async fn delete(app: &Router, op: &str, token: Option<&str>, body: &str) -> Resp {
    call(
        app,
        Method::DELETE,
        &format!("{API}/{op}"),
        token,
        Some(body),
    )
    .await
}

/// [`post`] of a JSON body.
pub async fn post_json(app: &Router, op: &str, token: Option<&str>, body: Value) -> Resp {
    post(app, op, token, &body.to_string()).await
}

/// [`patch`] of a JSON body.
pub async fn patch_json(app: &Router, op: &str, token: Option<&str>, body: Value) -> Resp {
    patch(app, op, token, &body.to_string()).await
}

/// [`delete`] of a JSON body.
pub async fn delete_json(app: &Router, op: &str, token: Option<&str>, body: Value) -> Resp {
    delete(app, op, token, &body.to_string()).await
}

/// Create a secret as the writer; returns its id.
pub async fn create(app: &Router, name: &str, value: &str, shared: bool) -> String {
    let body = serde_json::json!({"secret_name": name, "value": value, "is_shared": shared});
    let r = post(app, "create", Some(WRITER), &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.secret_id()
}
