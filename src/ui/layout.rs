//! The page shell: head (stylesheet and script by hashed URL, nothing
//! inline), banners (test mode, anonymous mode, an old KEK, the session
//! ending soon), navigation by role, the one-time notice, and the footer
//! with the session's limits. maud escapes every interpolated string.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::guard::{CSRF_FIELD, Ctx};
use super::session::{ENDS_SOON, IDLE_TIMEOUT};
use crate::server::tokens_file::format_rfc3339;

/// A timestamp (epoch ms) as people read it, in UTC.
pub fn time(ms: i64) -> String {
    let s = format_rfc3339(ms.div_euclid(1000));
    // 2026-12-01T11:42:59Z -> 2026-12-01 11:42:59 UTC
    s.trim_end_matches('Z').replacen('T', " ", 1) + " UTC"
}

/// An optional text, or an em dash.
pub fn or_dash(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("—")
}

/// The hidden form-token field of every form.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.session.csrf); }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · mlflow-secrets" }
            link rel="stylesheet" href=(assets::css_url());
            script src=(assets::js_url()) defer {}
        }
    }
}

fn banners(ctx: &Ctx) -> Markup {
    let minutes = |d: std::time::Duration| d.as_secs().div_ceil(60);
    html! {
        @if ctx.test_mode {
            p.banner.warn role="alert" {
                strong { "Test mode. " }
                "This server encrypts with a fixed, publicly known key: never store real secrets here."
            }
        }
        @if ctx.anonymous {
            p.banner.warn role="alert" {
                strong { "Anonymous loopback mode. " }
                "There is no sign-in: everyone who can reach this machine's loopback address acts as 'local' with the admin role. Start the server with --auth-tokens-file for named principals."
            }
        }
        @if let Some((v, age)) = ctx.old_kek {
            p.banner.warn role="alert" {
                strong { "Old key-encryption key. " }
                "The active KEK (version " (v) ") is " (age.as_secs() / 86_400) " days old. Rotate it with "
                code { "mlflow-secrets kek rotate" }
                ", then re-wrap the rows with "
                code { "mlflow-secrets rewrap --all" } "."
            }
        }
        @if !ctx.anonymous && ctx.session.absolute_left < ENDS_SOON {
            p.banner.warn role="alert" {
                strong { "Your session ends soon. " }
                "It ends in " (minutes(ctx.session.absolute_left)) " minutes; sign in again to continue after that."
            }
        }
        @if !ctx.anonymous {
            p #idle-notice .banner.warn role="alert" hidden {
                strong { "Your session ends soon. " }
                "It ends after " (IDLE_TIMEOUT.as_secs() / 60) " minutes without activity: load a page to keep it."
            }
        }
    }
}

fn nav(ctx: &Ctx) -> Markup {
    html! {
        header.top {
            a.brand href="/secrets" { "mlflow-secrets" }
            nav aria-label="Main" {
                ul {
                    li { a href="/secrets" { "Secrets" } }
                    @if ctx.can_write() { li { a href="/secrets/new" { "New secret" } } }
                    @if ctx.is_admin() {
                        li { a href="/audit" { "Audit log" } }
                        li { a href="/keys" { "Keys" } }
                    }
                }
            }
            div.who {
                span { "Signed in as " strong { (ctx.principal.name) } " (" (ctx.principal.role) ")" }
                @if !ctx.anonymous {
                    form method="post" action="/logout" {
                        (csrf_field(ctx))
                        button type="submit" { "Sign out" }
                    }
                }
            }
        }
    }
}

/// A full page for a signed-in session.
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    page_with_status(ctx, StatusCode::OK, title, body)
}

/// [`page`] with another status (a form re-shown after a validation
/// error is 400).
pub fn page_with_status(ctx: &Ctx, status: StatusCode, title: &str, body: Markup) -> Response {
    let idle_secs = if ctx.anonymous {
        0
    } else {
        ctx.session.ends_in.as_secs()
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-session-ends-in=(idle_secs) {
                a.skip href="#main" { "Skip to content" }
                (nav(ctx))
                (banners(ctx))
                main #main {
                    @if let Some(f) = &ctx.session.flash {
                        p.flash role="status" { (f) }
                    }
                    h1 { (title) }
                    (body)
                }
                footer {
                    @if ctx.anonymous {
                        "Anonymous loopback mode."
                    } @else {
                        "Your session ends after " (IDLE_TIMEOUT.as_secs() / 60)
                        " minutes without activity, and at the latest in "
                        (ctx.session.absolute_left.as_secs() / 60) " minutes. Values are write-only: this UI never shows one."
                    }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A page without a session (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/secrets" { "mlflow-secrets" } }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// An error page: the status in words and a one-line message.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    bare(
        status,
        title,
        html! {
            p.error role="alert" { (message) }
            p { a href="/secrets" { "Back to the secrets" } }
        },
    )
}
