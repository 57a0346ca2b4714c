//! Who is asking, and may they: the request context of every page.
//!
//! [`Ctx`] is extracted from the session cookie only (never from an
//! `Authorization` header). A token session re-authenticates its token on
//! every request, so a token removed from the tokens file, or expired,
//! ends the session. The principal's rate limit of the API applies here
//! too. [`Posted`] adds the checks of every state change (docs/design.md
//! §12, §10 rule 12): the request must come from this origin
//! (`Sec-Fetch-Site: same-origin`, else an `Origin` equal to ours) and
//! carry the session's form token.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::form::UiForm;
use super::layout;
use super::session::{self, SessionView};
use crate::server::AppState;
use crate::server::auth::{Principal, Role};
use crate::server::error::ApiError;
use crate::server::state::AuthMode;
use crate::store::StoreError;

/// The name of the form field that carries the form token.
pub const CSRF_FIELD: &str = "csrf";

/// A refusal or failure of a page: an HTML page with the status, or a
/// redirect to the sign-in page.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
    login: bool,
}

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            login: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Send the browser to the sign-in page.
    pub fn sign_in() -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            message: String::new(),
            login: true,
        }
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        // The API's mapping: the status of the error table, internal
        // errors as an incident id only.
        let api = ApiError::from(e);
        Self::new(api.status, api.message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if self.login {
            return Redirect::to("/login").into_response();
        }
        layout::error_page(self.status, &self.message)
    }
}

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    /// The session id (the cookie's value).
    pub sid: String,
    pub session: SessionView,
    pub anonymous: bool,
    pub test_mode: bool,
    /// The active KEK's version and age, when older than the limit.
    pub old_kek: Option<(u32, Duration)>,
    pub tls: bool,
    /// `Host` of the request, for the snippets' URLs.
    pub host: String,
}

impl Ctx {
    /// Refuse a principal whose role is below `need` (403).
    pub fn require(&self, need: Role) -> Result<(), UiError> {
        if self.principal.role.permits(need) {
            Ok(())
        } else {
            Err(UiError::forbidden(format!(
                "principal '{}' has role {}; this needs role {need} or above",
                self.principal.name, self.principal.role
            )))
        }
    }

    /// May this session change things (writer or admin)?
    pub fn can_write(&self) -> bool {
        self.principal.role.permits(Role::Writer)
    }

    pub fn is_admin(&self) -> bool {
        self.principal.role.permits(Role::Admin)
    }

    /// The base URL of this server, as the browser reached it.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host
        )
    }

    /// Leave a notice for the next page (POST-redirect-GET).
    pub fn flash(&self, state: &AppState, msg: impl Into<String>) {
        state.ui.sessions.set_flash(&self.sid, msg);
    }
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string()
}

/// The active KEK, when it is older than the configured age.
fn old_kek(state: &AppState) -> Option<(u32, Duration)> {
    let ks = state.store.keys.current();
    if ks.is_test_mode() {
        return None;
    }
    let active = ks.active_version();
    let info = ks.versions().find(|v| v.version == active)?;
    let age_ms = crate::model::now_ms()
        .saturating_sub(info.created_at)
        .max(0);
    let age = Duration::from_millis(age_ms as u64);
    (age > state.ui.kek_max_age).then_some((active, age))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let tls = state.ui.tls;
        let sid = session::session_id(&parts.headers, tls).ok_or_else(UiError::sign_in)?;
        let view = state.ui.sessions.touch(&sid).ok_or_else(UiError::sign_in)?;
        let (principal, anonymous) = match &state.auth {
            AuthMode::LocalAnonymous => (AuthMode::local_principal(), true),
            AuthMode::Tokens(tokens) => {
                let again = view.token.as_deref().and_then(|t| tokens.authenticate(t));
                match again {
                    Some(p) => (p, false),
                    None => {
                        state.ui.sessions.end(&sid);
                        return Err(UiError::sign_in());
                    }
                }
            }
        };
        if state.limiter.check(&principal.name).is_err() {
            state.metrics.rate_limited.inc();
            return Err(UiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit exceeded for principal '{}': wait a moment and reload",
                    principal.name
                ),
            ));
        }
        Ok(Self {
            principal,
            sid,
            session: view,
            anonymous,
            test_mode: state.store.keys.current().is_test_mode(),
            old_kek: old_kek(state),
            tls,
            host: host_of(&parts.headers),
        })
    }
}

/// Refuse a state change that does not come from this origin. Browsers
/// send `Sec-Fetch-Site`; older ones at least `Origin`; a request with
/// neither is refused, as no browser form of ours sends one so.
pub fn same_origin(headers: &HeaderMap, tls: bool) -> Result<(), UiError> {
    let refuse = |why: &str| {
        Err(UiError::forbidden(format!(
            "refused a cross-origin form submission: {why}"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            refuse("Sec-Fetch-Site is not same-origin")
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return refuse("the request has neither Sec-Fetch-Site nor Origin");
    };
    let scheme = if tls { "https" } else { "http" };
    let ours = format!("{scheme}://{}", host_of(headers));
    if origin.eq_ignore_ascii_case(&ours) {
        Ok(())
    } else {
        refuse("Origin is not this server")
    }
}

/// A state change: a signed-in request from this origin, with the
/// session's form token, and its form.
#[derive(Debug)]
pub struct Posted {
    pub ctx: Ctx,
    pub form: UiForm,
}

impl FromRequest<AppState> for Posted {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = req.into_parts();
        same_origin(&parts.headers, state.ui.tls)?;
        let ctx = match Ctx::from_request_parts(&mut parts, state).await {
            Ok(c) => c,
            // No redirect for a POST: its form would be lost anyway.
            Err(e) if e.login => {
                return Err(UiError::forbidden(
                    "your session has ended: sign in again, then repeat the change",
                ));
            }
            Err(e) => return Err(e),
        };
        let form = UiForm::from_request(Request::from_parts(parts, body), state).await?;
        let token = form.raw(CSRF_FIELD).unwrap_or("");
        if !state.ui.sessions.csrf_ok(&ctx.sid, token) {
            return Err(UiError::forbidden(
                "the form token is missing or does not belong to this session: reload the page and try again",
            ));
        }
        Ok(Self { ctx, form })
    }
}

/// A 303 to `to` (POST-redirect-GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A 303 that also sets (or clears) the session cookie.
pub fn see_other_with_cookie(to: &str, cookie: &str) -> Response {
    let mut r = see_other(to);
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
