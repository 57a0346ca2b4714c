//! Web UI page times, server side: the router driven in-process (no
//! network), each request a full page render with its audit row, on
//! SQLite. Prints p50/p99; asserts nothing about speed.
//!
//!     cargo bench --bench ui_pages     # 10,000 secrets; 100 bindings and
//!                                      # 10,000 audit rows on one secret
//!
//! - `/secrets`, 20 per page, first page and a page deep in the list (by
//!   its page token), and a name search;
//! - `/secrets/{id}` of a secret with 100 bindings and 10,000 audit rows.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs on 200
//! secrets and a few requests, so the harness itself stays tested.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use mlflow_secrets::keystore::{Keystore, KeystoreHandle};
use mlflow_secrets::server::{AppState, AuthMode, router};
use mlflow_secrets::store::audit::{AuditAction, AuditRecord};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use tower::ServiceExt;

async fn get(app: &Router, cookie: &str, path: &str) -> (StatusCode, String, Duration) {
    let req = Request::builder()
        .uri(path)
        .header(header::HOST, "127.0.0.1:5005")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let start = Instant::now();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let took = start.elapsed();
    (status, String::from_utf8_lossy(&body).into_owned(), took)
}

/// p50 and p99 of `n` requests of `path`, after a warm-up.
async fn measure(app: &Router, cookie: &str, path: &str, n: usize) -> (f64, f64) {
    for _ in 0..n.div_ceil(10) {
        let (s, body, _) = get(app, cookie, path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(get(app, cookie, path).await.2.as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (secrets, bindings, audit_rows, requests) = if full {
        (10_000, 100, 10_000, 500)
    } else {
        (200, 10, 200, 20)
    };
    let tmp = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", tmp.path().join("ui.db").display());
    let store = SqlStore::connect(&uri, KeystoreHandle::new(Keystore::test_mode()))
        .await
        .unwrap();
    store.ensure_schema(true).await.unwrap();

    // Seed through the store (each create is its own audited transaction),
    // 16 at a time so the group commit batches the audit rows.
    let seed = Instant::now();
    futures::stream::iter(0..secrets)
        .for_each_concurrent(16, |i| {
            let store = store.clone();
            async move {
                let v = SecretValue::from_string(format!("sk-ui-bench-{i:06}-abcdefghij")).unwrap();
                store
                    .create_secret("default", &format!("key-{i:06}"), &v, true, "bench")
                    .await
                    .unwrap();
            }
        })
        .await;
    let v = SecretValue::from_string("sk-ui-bench-detail-abcdefghij".into()).unwrap();
    let hot = store
        .create_secret("default", "hot-secret", &v, true, "bench")
        .await
        .unwrap();
    for b in 0..bindings {
        store
            .bind_secret(
                &hot.secret_id,
                "SCORER_JOB",
                &format!("scorer-{b:03}"),
                "OPENAI_API_KEY",
                "bench",
            )
            .await
            .unwrap();
    }
    // Audit rows of the hot secret: reads and injections of its resources.
    futures::stream::iter(0..audit_rows)
        .for_each_concurrent(16, |i| {
            let store = store.clone();
            let id = hot.secret_id.clone();
            async move {
                let rec = if i % 2 == 0 {
                    AuditRecord::new(AuditAction::GetSecret, "bench").secret(&id, "hot-secret")
                } else {
                    AuditRecord::new(AuditAction::ReadResourceValues, "webhook")
                        .secret_id(&id)
                        .resource("SCORER_JOB", &format!("scorer-{:03}", i % bindings))
                }
                .workspace("default");
                store.append_audit(&rec).await.unwrap();
            }
        })
        .await;
    let seed = seed.elapsed().as_secs_f64();

    let state = AppState::new(store.clone(), AuthMode::LocalAnonymous, 0);
    let app = router(state);
    let login = Request::builder()
        .uri("/login")
        .header(header::HOST, "127.0.0.1:5005")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(login).await.unwrap();
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // A page token deep in the list: walk to the middle once.
    let mut deep = "/secrets".to_string();
    for _ in 0..(secrets / 20 / 2).min(250) {
        let (_, body, _) = get(&app, &cookie, &deep).await;
        let Some(i) = body.find("rel=\"next\" href=\"") else {
            break;
        };
        let rest = &body[i + 17..];
        deep = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
    }

    println!(
        "ui_pages: {secrets} secrets, {bindings} bindings and {audit_rows} audit rows on one secret, SQLite; seeded in {seed:.1} s"
    );
    for (label, path) in [
        ("/secrets (first page, 20 rows)", "/secrets".to_string()),
        ("/secrets (a page in the middle)", deep.clone()),
        (
            "/secrets?q=key-00 (name search)",
            "/secrets?q=key-00".to_string(),
        ),
        (
            "/secrets/{id} (detail)",
            format!("/secrets/{}", hot.secret_id),
        ),
    ] {
        let (p50, p99) = measure(&app, &cookie, &path, requests).await;
        println!("  {label:38} p50 {p50:6.2} ms   p99 {p99:6.2} ms   ({requests} requests)");
    }
}
