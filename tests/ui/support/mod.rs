//! Fixtures of the web UI tests: a store on a temporary SQLite file
//! (test-mode KEK), a tokens file with one principal per role and scope,
//! the router driven in-process, and a small cookie-carrying client.

pub mod browser;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use mlflow_secrets::keystore::{Keystore, KeystoreHandle};
use mlflow_secrets::server::{AppState, AuthMode, TokenStore, router};
use mlflow_secrets::store::SqlStore;
use tower::ServiceExt;

pub use testkit::Resp;
pub use testkit::tokens::*;

/// The Host every in-process request names.
pub const HOST: &str = "127.0.0.1:5005";

/// A store, a tokens file and the state around them.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: SqlStore,
    pub state: AppState,
    pub app: Router,
    pub tls: bool,
}

impl Fixture {
    /// Token auth; `tls` as if the listener spoke TLS.
    pub async fn new(tls: bool) -> Self {
        Self::build(tls, false, Keystore::test_mode(), None).await
    }

    /// Anonymous loopback mode.
    pub async fn anonymous() -> Self {
        Self::build(false, true, Keystore::test_mode(), None).await
    }

    /// Anonymous loopback mode on `keys`, with the UI's KEK age limit.
    pub async fn anonymous_with(keys: Keystore, kek_max_age: std::time::Duration) -> Self {
        Self::build(false, true, keys, Some(kek_max_age)).await
    }

    async fn build(
        tls: bool,
        anonymous: bool,
        keys: Keystore,
        kek_max_age: Option<std::time::Duration>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("ui.db").display());
        let store = SqlStore::connect(&uri, KeystoreHandle::new(keys))
            .await
            .unwrap();
        store.ensure_schema(true).await.unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, tokens_text()).unwrap();
        let auth = if anonymous {
            AuthMode::LocalAnonymous
        } else {
            AuthMode::Tokens(Arc::new(TokenStore::load(&tokens).unwrap()))
        };
        let mut state = AppState::new(store.clone(), auth, 0);
        state.ui.tls = tls;
        if let Some(age) = kek_max_age {
            state.ui.kek_max_age = age;
        }
        let app = router(state.clone());
        Self {
            dir,
            store,
            state,
            app,
            tls,
        }
    }

    /// Our own origin, as a browser would send it.
    pub fn origin(&self) -> String {
        format!("{}://{HOST}", if self.tls { "https" } else { "http" })
    }

    /// One request; `headers` are added to a `Host` header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        let resp = self.response(method, path, headers, body).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// [`Fixture::send`], with the body not read yet (a streamed body).
    pub async fn response(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> axum::response::Response {
        let mut b = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header(header::HOST, HOST);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(text) => b
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(text))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.app.clone().oneshot(req).await.unwrap()
    }

    /// The sign-in form posted with `token` from `origin`, as it answers.
    pub async fn post_login(&self, origin: &str, token: &str) -> Resp {
        self.send(
            Method::POST,
            "/login",
            &[("origin", origin)],
            Some(form(&[("token", token)])),
        )
        .await
    }

    /// Sign in with `token`; the browser's cookie and form token.
    pub async fn sign_in(&self, token: &str) -> Browser {
        let r = self.post_login(&self.origin(), token).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-in: {}", r.text);
        self.browser_from(&r).await
    }

    /// The browser of anonymous mode (GET /login makes the session).
    pub async fn anonymous_browser(&self) -> Browser {
        let r = self.send(Method::GET, "/login", &[], None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        self.browser_from(&r).await
    }

    async fn browser_from(&self, r: &Resp) -> Browser {
        let set = r.set_cookie().expect("a session cookie");
        let cookie = set.split(';').next().unwrap().to_string();
        let mut b = Browser {
            cookie,
            csrf: String::new(),
        };
        let page = self.get(&b, "/secrets").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        b.csrf = match csrf_of(&page.text) {
            Some(t) => t,
            // Anonymous pages have no sign-out form; the create form has one.
            None => csrf_of(&self.get(&b, "/secrets/new").await.text).unwrap_or_default(),
        };
        b
    }

    /// GET as a signed-in browser.
    pub async fn get(&self, b: &Browser, path: &str) -> Resp {
        self.send(Method::GET, path, &[("cookie", &b.cookie)], None)
            .await
    }

    /// A same-origin form POST with the session's form token.
    pub async fn post(&self, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all = vec![("csrf", b.csrf.as_str())];
        all.extend_from_slice(fields);
        self.send(
            Method::POST,
            path,
            &[("cookie", &b.cookie), ("sec-fetch-site", "same-origin")],
            Some(form(&all)),
        )
        .await
    }
}

/// A signed-in browser: its cookie and the session's form token.
#[derive(Clone, Debug)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

/// A form body.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The form token in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[i..].find('"')?;
    Some(html[i..i + end].to_string())
}

/// The secret id a `/secrets/{id}` redirect names.
pub fn id_from_location(r: &Resp) -> String {
    r.location()
        .and_then(|l| l.strip_prefix("/secrets/"))
        .unwrap_or_else(|| panic!("no secret redirect: {:?} {}", r.status, r.text))
        .to_string()
}
