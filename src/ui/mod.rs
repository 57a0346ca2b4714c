//! The web UI served by `serve` beside the REST API (docs/design.md §12).
//!
//! Server-rendered HTML (maud: compile-time checked, auto-escaping), plain
//! forms with POST-redirect-GET, one small static script for copy buttons
//! and the "session ends soon" notice, assets compiled into the binary
//! under a content-hashed URL. Every page works without JavaScript.
//!
//! Layout: [`session`] (server-side sessions and the cookie), [`guard`]
//! (the request context: session, re-authentication, role and rate limit;
//! the same-origin and form-token checks of every POST), [`headers`] (CSP and
//! the other headers of every UI response), [`form`] (form bodies read into
//! zeroizing buffers), [`layout`] (page shell, banners, navigation),
//! [`assets`], [`snippets`] (copyable CLI/REST/YAML/`run` text, never a
//! value), and the pages in [`pages`].
//!
//! The session cookie never authenticates `/api/` (the API's guard reads
//! only `Authorization`), and a bearer token never authenticates a page:
//! pages read only the session cookie.

pub(crate) mod assets;
pub(crate) mod form;
pub(crate) mod guard;
pub mod headers;
pub(crate) mod layout;
pub(crate) mod pages;
pub mod session;
pub(crate) mod snippets;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::Redirect;
use axum::routing::get;

use crate::server::AppState;

/// The default age past which the active KEK gets a "rotate it" banner.
pub const DEFAULT_KEK_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// What the UI needs beside the API's state.
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// The listener speaks TLS: `Secure` and `__Host-` cookies, HSTS,
    /// `https` origins.
    pub tls: bool,
    /// An active KEK older than this gets a banner with the rotate command.
    pub kek_max_age: Duration,
    pub sessions: Arc<session::SessionStore>,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            tls: false,
            kek_max_age: DEFAULT_KEK_MAX_AGE,
            sessions: Arc::new(session::SessionStore::default()),
        }
    }
}

/// The UI's routes, merged into the server's router (which adds the body
/// limit, the anonymous-mode `Host` check and request metrics).
pub fn router(state: &AppState) -> Router<AppState> {
    use axum::routing::post;
    use pages::{audit, keys, login, resources, secrets, secrets_actions};
    Router::new()
        .route("/", get(|| async { Redirect::to("/secrets") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", get(login::confirm_logout).post(login::logout))
        .route("/secrets", get(secrets::list))
        .route("/secrets/new", get(secrets::new_form).post(secrets::create))
        .route("/secrets/{secret_id}", get(secrets::detail))
        .route("/secrets/{secret_id}/rotate", post(secrets_actions::rotate))
        .route("/secrets/{secret_id}/revoke", post(secrets_actions::revoke))
        .route("/secrets/{secret_id}/delete", post(secrets_actions::delete))
        .route("/bindings/{binding_id}/unbind", post(resources::unbind))
        .route(
            "/resources/{resource_type}/{resource_id}",
            get(resources::page).post(resources::bind),
        )
        .route("/audit", get(audit::page))
        .route("/audit/export", get(audit::export))
        .route("/keys", get(keys::page))
        .route(assets::ROUTE, get(assets::serve))
        .layer(from_fn_with_state(state.clone(), headers::ui_headers))
}
