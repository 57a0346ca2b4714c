//! Request hygiene and the fail-closed tokens file (docs/design.md §7, §10 rule
//! 13; security review findings 11, 12, 13): each test writes the attack.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use mlflow_secrets::server::limits::UNAUTHENTICATED_PER_MINUTE;
use testkit::CapturedLogs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Just over the tokens file's reload check (2 s).
const RELOAD: Duration = Duration::from_millis(2200);

#[tokio::test]
async fn a_body_needs_content_type_json() {
    let fx = Fixture::new().await;
    for app in [fx.app(0), fx.anonymous_app()] {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut b = Request::post(format!("{API}/create")).header(header::HOST, "localhost");
            b = b.header(header::AUTHORIZATION, format!("Bearer {WRITER}"));
            if let Some(ct) = ct {
                b = b.header(header::CONTENT_TYPE, ct);
            }
            let req = b
                .body(Body::from(r#"{"secret_name":"csrf","value":"x"}"#))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
            assert!(v["message"].as_str().unwrap().contains("application/json"));
        }
    }
    // Nothing was created.
    let r = get(&fx.app(0), "list", Some(READER)).await;
    assert_eq!(r.json()["secrets"], serde_json::json!([]));
}

#[tokio::test]
async fn anonymous_mode_answers_loopback_hosts_only() {
    let fx = Fixture::new().await;
    let app = fx.anonymous_app();
    for host in [
        "localhost:5005",
        "127.0.0.1:5005",
        "[::1]:5005",
        "localhost",
    ] {
        let r = call_with(
            &app,
            Method::GET,
            &format!("{API}/list"),
            None,
            None,
            &[("host", host)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.text);
    }
    // DNS rebinding: the page's own name arrives as Host.
    for host in [
        "evil.example",
        "evil.example:5005",
        "localhost.evil.example:5005",
        "127.0.0.1.nip.io",
    ] {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{API}/create"),
            None,
            Some(r#"{"secret_name":"rebound","value":"x"}"#),
            &[("host", host)],
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            "{host}"
        );
        let r = call_with(&app, Method::GET, "/health", None, None, &[("host", host)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{host}");
    }
    let r = get(&app, "list", None).await;
    assert_eq!(r.json()["secrets"], serde_json::json!([]));
}

/// Count the AUTH_DENIED rows and the failures they stand for.
async fn auth_denied(fx: &Fixture) -> (usize, u64) {
    let r = get(&fx.app(0), "list-audit?max_results=1000", Some(ADMIN)).await;
    let rows: Vec<serde_json::Value> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "AUTH_DENIED" && e["principal"].is_null())
        .cloned()
        .collect();
    let count = rows
        .iter()
        .map(|e| {
            let d = e["detail"].as_str().unwrap();
            let n = d.split("count=").nth(1).unwrap();
            n.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    (rows.len(), count)
}

#[tokio::test]
async fn an_unauthenticated_flood_adds_a_bounded_number_of_audit_rows() {
    let fx = Fixture::new().await;
    let state = fx.state(0);
    let app = mlflow_secrets::server::router(state.clone());
    let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let (mut ok401, mut limited) = (0, 0);
    let start = std::time::Instant::now();
    for i in 0..10_000 {
        let mut req = Request::get(format!("{API}/list"))
            .header(header::HOST, "secrets.example")
            .header(header::AUTHORIZATION, format!("Bearer mlss_guess-{i}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = app.clone().oneshot(req).await.unwrap();
        match resp.status() {
            StatusCode::UNAUTHORIZED => ok401 += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(resp.headers().contains_key("retry-after"));
                limited += 1
            }
            s => panic!("unexpected {s}"),
        }
    }
    // The peer limit holds: the burst quota, then 429s, bar what the
    // bucket refilled meanwhile (300 a minute: 5 a second).
    let quota = UNAUTHENTICATED_PER_MINUTE as u64 + 5 * (start.elapsed().as_secs() + 1);
    assert!(
        ok401 <= quota && ok401 + limited == 10_000 && limited >= 9_000,
        "{ok401} 401s, {limited} 429s"
    );
    state.flush_denials(true).await;
    let (rows, count) = auth_denied(&fx).await;
    // One row at once and one count row per peer and minute (the flood
    // may straddle a minute boundary).
    assert!((1..=4).contains(&rows), "{rows} rows");
    assert_eq!(count, 10_000, "every failure is counted");
    // Another peer is not limited by the first one's flood.
    let mut req = Request::get(format!("{API}/list"))
        .header(header::HOST, "secrets.example")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo::<SocketAddr>("198.51.100.1:1".parse().unwrap()));
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_methods_make_no_new_metric_series() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("mlflow_secrets_http_request"))
            .count()
    };
    let send = |m: String, path: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method(Method::from_bytes(m.as_bytes()).unwrap())
                .uri(path)
                .header(header::HOST, "localhost")
                .body(Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    // The first unknown method per route makes the `other` series.
    for path in ["/health", "/api/2.0/mlflow/secrets/list", "/nowhere"] {
        send("M0".into(), path).await;
    }
    // A first scrape makes the series of /metrics itself.
    call(&app, Method::GET, "/metrics", None, None).await;
    let before = call(&app, Method::GET, "/metrics", None, None).await.text;
    for i in 1..300 {
        for path in ["/health", "/api/2.0/mlflow/secrets/list", "/nowhere"] {
            send(format!("M{i}"), path).await;
        }
    }
    let after = call(&app, Method::GET, "/metrics", None, None).await.text;
    assert!(!after.contains("method=\"M"), "{after}");
    assert!(after.contains("method=\"other\""), "{after}");
    assert_eq!(series(&before), series(&after), "{after}");
}

#[derive(Clone, Copy, Debug)]
enum Break {
    Delete,
    Unreadable,
    BadLine,
}

/// docs/design.md §10 rule 13: a tokens file that cannot be read or parsed admits
/// no one, within the reload interval, and `/health` says so.
#[tokio::test]
async fn a_broken_tokens_file_admits_no_one() {
    // This test's runtime is one thread: a thread-local subscriber sees
    // every log line of the server code it drives.
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    for how in [Break::Delete, Break::Unreadable, Break::BadLine] {
        let fx = Fixture::new().await;
        let app = fx.app(0);
        assert_eq!(get(&app, "list", Some(ADMIN)).await.status, StatusCode::OK);
        let good = std::fs::read_to_string(&fx.tokens).unwrap();
        match how {
            Break::Delete => std::fs::remove_file(&fx.tokens).unwrap(),
            Break::Unreadable => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&fx.tokens, std::fs::Permissions::from_mode(0o000))
                    .unwrap();
            }
            Break::BadLine => {
                // A typo on one line; the admin's own line is intact.
                std::fs::write(&fx.tokens, format!("{good}bob writer sha256:abc\n")).unwrap()
            }
        }
        tokio::time::sleep(RELOAD).await;
        let r = get(&app, "list", Some(ADMIN)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{how:?}: {}", r.text);
        let h = call(&app, Method::GET, "/health", None, None).await;
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{how:?}");
        assert_eq!(h.json()["auth"], "invalid", "{how:?}");
        if matches!(how, Break::BadLine) {
            // The log names the file and the line (the 9th), not its text.
            let text = logs.text();
            let bad = good.lines().count() + 1;
            assert!(
                text.contains(&format!("line {bad}:")) && text.contains("no token is accepted"),
                "{text}"
            );
            assert!(!text.contains("sha256:abc"), "{text}");
        }
        // Fixed: tokens work again (and a removed line stays removed).
        if matches!(how, Break::Unreadable) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fx.tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let without_rita: String = good
            .lines()
            .filter(|l| !l.contains(&hex_digest(READER)))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&fx.tokens, without_rita).unwrap();
        tokio::time::sleep(RELOAD).await;
        assert_eq!(
            get(&app, "list", Some(ADMIN)).await.status,
            StatusCode::OK,
            "{how:?}"
        );
        assert_eq!(
            get(&app, "list", Some(READER)).await.status,
            StatusCode::UNAUTHORIZED
        );
        let h = call(&app, Method::GET, "/health", None, None).await;
        assert_eq!(h.json()["auth"], "ok");
    }
}

fn hex_digest(token: &str) -> String {
    hex::encode(mlflow_secrets::server::auth::token_digest(token))
}

/// A served connection that sends no complete headers is closed after the
/// header-read timeout, and past the connection cap a new connection is
/// closed at once (security review finding 12).
#[tokio::test]
async fn slow_headers_time_out_and_connections_are_capped() {
    let fx = Fixture::new().await;
    let cfg = mlflow_secrets::server::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens_file: Some(fx.tokens.clone()),
        header_read_timeout: Duration::from_secs(1),
        max_connections: 2,
        ..Default::default()
    };
    let server = mlflow_secrets::server::Server::bind(&cfg, fx.store.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    // Two slowloris connections hold both slots.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is closed without an answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut buf))
        .await
        .expect("the capped connection was not closed");
    assert!(
        n.is_err() || buf.is_empty(),
        "answered past the cap: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The slow ones are closed by the header-read timeout.
    for mut s in slow {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "a slow connection outlived the header timeout");
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    }
    // With the slots free again, a normal request is served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let _ = tx.send(());
    running.await.unwrap().unwrap();
}
