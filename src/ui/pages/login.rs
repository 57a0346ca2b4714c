//! `/login` and `/logout`: a bearer token buys a server-side session.
//!
//! A failed sign-in is treated as the API treats a bad token: limited per
//! peer address first (nothing is written past the limit), then audited
//! as `AUTH_DENIED`, aggregated per peer and minute. Runner tokens cannot
//! sign in: they exist to read values through `resolve`, which the UI
//! never does.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use zeroize::Zeroizing;

use crate::server::AppState;
use crate::server::auth::Role;
use crate::server::limits::{now_minute, peer_key};
use crate::server::state::AuthMode;
use crate::ui::form::UiForm;
use crate::ui::guard::{Ctx, Posted, UiError, same_origin, see_other, see_other_with_cookie};
use crate::ui::layout::{self, csrf_field};
use crate::ui::session;

const ROUTE: &str = "POST /login";

fn login_form(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { p.error role="alert" { (m) } }
        form.card method="post" action="/login" {
            p {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required
                    spellcheck="false" aria-describedby="token-help";
            }
            p #token-help .help {
                "A bearer token from the server's tokens file ("
                code { "mlflow-secrets token create" } "). It is kept on the server for this session only."
            }
            p { button type="submit" { "Sign in" } }
        }
    }
}

/// `GET /login`. Anonymous loopback mode has no sign-in: a session for
/// `local` is made at once.
pub async fn form(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if matches!(st.auth, AuthMode::LocalAnonymous) {
        let sid = st.ui.sessions.create(AuthMode::local_principal(), None);
        return see_other_with_cookie("/secrets", &session::set_cookie(st.ui.tls, &sid));
    }
    if let Some(sid) = session::session_id(&headers, st.ui.tls)
        && st.ui.sessions.touch(&sid).is_some()
    {
        return see_other("/secrets");
    }
    layout::bare(StatusCode::OK, "Sign in", login_form(None))
}

/// `POST /login`.
pub async fn submit(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: UiForm,
) -> Result<Response, UiError> {
    same_origin(&headers, st.ui.tls)?;
    let AuthMode::Tokens(tokens) = &st.auth else {
        let sid = st.ui.sessions.create(AuthMode::local_principal(), None);
        return Ok(see_other_with_cookie(
            "/secrets",
            &session::set_cookie(st.ui.tls, &sid),
        ));
    };
    let key = peer_key(peer.map(|c| c.0.0.ip()));
    if st.peer_limiter.check(&key).is_err() {
        st.metrics.rate_limited.inc();
        return Err(UiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-in attempts from this address: wait a minute",
        ));
    }
    let token = Zeroizing::new(form.raw("token").unwrap_or("").trim().to_string());
    let Some(principal) = tokens.authenticate(&token) else {
        st.metrics.auth_denied.with_label_values(&["401"]).inc();
        if let Some(rec) = st.denials.record(&key, ROUTE, now_minute()) {
            st.audit_best_effort(rec).await;
        }
        let msg =
            "That token is not valid (unknown, expired, or the server's tokens file is invalid).";
        return Ok(layout::bare(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            login_form(Some(msg)),
        ));
    };
    if principal.role == Role::Runner {
        return Err(UiError::forbidden(format!(
            "principal '{}' has role runner, which may call resolve only and cannot sign in",
            principal.name
        )));
    }
    // A fresh id on every sign-in (no session fixation); an old session of
    // this browser ends.
    if let Some(old) = session::session_id(&headers, st.ui.tls) {
        st.ui.sessions.end(&old);
    }
    tracing::info!(principal = %principal.name, "UI sign-in");
    let sid = st.ui.sessions.create(principal, Some(token));
    Ok(see_other_with_cookie(
        "/secrets",
        &session::set_cookie(st.ui.tls, &sid),
    ))
}

/// `GET /logout`: a page with the sign-out button (sign-out is a POST).
pub async fn confirm_logout(ctx: Ctx) -> Response {
    let body = html! {
        form.card method="post" action="/logout" {
            (csrf_field(&ctx))
            p { "Sign out of this session? The server forgets it at once." }
            p { button type="submit" { "Sign out" } }
        }
    };
    layout::page(&ctx, "Sign out", body)
}

/// `POST /logout`: the session ends on the server, the cookie is cleared.
pub async fn logout(State(st): State<AppState>, p: Posted) -> impl IntoResponse {
    st.ui.sessions.end(&p.ctx.sid);
    tracing::info!(principal = %p.ctx.principal.name, "UI sign-out");
    see_other_with_cookie("/login", &session::clear_cookie(st.ui.tls))
}
