//! The UI's static assets, compiled into the binary and served under a
//! URL holding a hash of their content, so a new build never meets a stale
//! copy. No Node toolchain, no CDN.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The route of every asset.
pub const ROUTE: &str = "/ui/assets/{file}";

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

fn hashed(stem: &str, ext: &str, body: &str) -> String {
    let h = hex::encode(&Sha256::digest(body.as_bytes())[..8]);
    format!("{stem}.{h}.{ext}")
}

static CSS_NAME: LazyLock<String> = LazyLock::new(|| hashed("app", "css", CSS));
static JS_NAME: LazyLock<String> = LazyLock::new(|| hashed("app", "js", JS));

/// The URL of the stylesheet.
pub fn css_url() -> String {
    format!("/ui/assets/{}", *CSS_NAME)
}

/// The URL of the script.
pub fn js_url() -> String {
    format!("/ui/assets/{}", *JS_NAME)
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, ct) = if file == *CSS_NAME {
        (CSS, "text/css; charset=utf-8")
    } else if file == *JS_NAME {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}
