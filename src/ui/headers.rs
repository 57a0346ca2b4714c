//! The headers of every UI response (docs/design.md §12), set in one
//! middleware so that no page, redirect, error or asset can miss them.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::AppState;

/// The Content-Security-Policy of docs/design.md §12, exactly: scripts and
/// styles only from this origin (no inline code), forms post only here,
/// no framing, no `<base>`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// HSTS on TLS listeners: a year, subdomains included.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

pub async fn ui_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, v: &'static str| {
        h.insert(name, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if state.ui.tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    resp
}
