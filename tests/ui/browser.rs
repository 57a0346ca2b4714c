//! The web UI in a real headless Chromium (Debian's package, driven over
//! the DevTools protocol by `support::browser`), against a real server
//! (`Server::bind` + `run`, as `serve` runs it) over TLS with a throwaway
//! certificate.
//!
//! Across a whole sign-in → create → bind → rotate → revoke → delete →
//! audit flow, no response body, DOM, cookie, localStorage or
//! sessionStorage ever holds the test value; every page has zero console
//! errors and zero CSP violations and passes the accessibility-tree
//! checks. Also: the cookie's flags, sign-out ending the session on the
//! server, a cross-origin form post refused, a reader without write forms,
//! a team-a session without team-b's secret.
//!
//! Skips with one line when no browser is found, unless
//! `MLFLOW_SECRETS_UI_BROWSER=require`. With
//! `MLFLOW_SECRETS_UI_SCREENSHOTS=<dir>` it writes PNGs of the pages there
//! (docs/img/ holds the committed ones).

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::browser::{Chrome, browser_or_skip};
use crate::support::{ADMIN, Fixture, READER, TEAM_A_WRITER};
use mlflow_secrets::model::NewSecret;
use mlflow_secrets::server::{ServeConfig, Server, TlsFiles};
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::{Value, json};

const VALUE: &str = "sk-browser-VALUE-5e4d3c2b1a";
const VALUE2: &str = "sk-browser-ROTATED-77aa88bb99";

/// A running TLS server and the runtime it runs on.
struct Served {
    rt: tokio::runtime::Runtime,
    fx: Fixture,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fx = rt.block_on(Fixture::new(true));
        let dir = fx.dir.path();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.join("tls.crt"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
        let cfg = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(TlsFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            }),
            tokens_file: Some(dir.join("tokens")),
            test_mode: true,
            rate_limit_per_minute: 0,
            ..ServeConfig::default()
        };
        let server = rt.block_on(Server::bind(&cfg, fx.store.clone())).unwrap();
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            rt,
            fx,
            addr,
            stop: Some(tx),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The checks of every page: no value anywhere the browser keeps
/// anything, no console error, no CSP violation, an accessible tree.
fn check_page(c: &mut Chrome, base: &str, what: &str) {
    let dom = c.dom();
    let storage = c.storage();
    let cookies = serde_json::to_string(&c.cookies(base)).unwrap();
    for v in [VALUE, VALUE2] {
        assert!(!dom.contains(v), "{what}: the value is in the DOM");
        assert!(!storage.contains(v), "{what}: the value is in web storage");
        assert!(!cookies.contains(v), "{what}: the value is in a cookie");
    }
    assert_eq!(
        storage, "[[],[]]",
        "{what}: the UI stores nothing in the browser"
    );
    assert!(
        c.console_errors.is_empty(),
        "{what}: console errors: {:?}",
        c.console_errors
    );
    let csp = c.csp_violations();
    assert!(csp.is_empty(), "{what}: CSP violations: {csp:?}");
    check_accessibility(c, what);
}

fn name_of(n: &Value) -> String {
    n["name"]["value"].as_str().unwrap_or("").trim().to_string()
}

/// Every input has a name, every button a label, every table headers.
fn check_accessibility(c: &mut Chrome, what: &str) {
    let nodes = c.ax_nodes();
    assert!(nodes.len() > 5, "{what}: an empty accessibility tree");
    let by_id = |id: &Value| nodes.iter().find(|n| n["nodeId"] == *id);
    for n in &nodes {
        if n["ignored"] == true {
            continue;
        }
        let role = n["role"]["value"].as_str().unwrap_or("");
        match role {
            "textbox" | "searchbox" | "checkbox" | "radio" | "combobox" | "ListBox"
            | "spinbutton" => {
                assert!(
                    !name_of(n).is_empty(),
                    "{what}: a {role} without a name: {n}"
                );
            }
            "button" => assert!(
                !name_of(n).is_empty(),
                "{what}: a button without a label: {n}"
            ),
            "table" => {
                // Breadth-first through the table's subtree for a header.
                let mut queue: Vec<Value> = n["childIds"].as_array().cloned().unwrap_or_default();
                let mut found = false;
                while let Some(id) = queue.pop() {
                    if let Some(child) = by_id(&id) {
                        let r = child["role"]["value"].as_str().unwrap_or("");
                        if r == "columnheader" || r == "rowheader" {
                            found = true;
                            break;
                        }
                        queue.extend(child["childIds"].as_array().cloned().unwrap_or_default());
                    }
                }
                assert!(found, "{what}: a table without header cells");
            }
            _ => {}
        }
    }
}

fn shoot(c: &mut Chrome, name: &str) {
    if let Some(dir) = std::env::var_os("MLFLOW_SECRETS_UI_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), c.screenshot()).unwrap();
    }
}

fn js_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn set(c: &mut Chrome, id: &str, v: &str) {
    c.eval(&format!(
        "document.getElementById({}).value = {}",
        js_str(id),
        js_str(v)
    ));
}

/// Click the submit button of the form whose action ends with `action`.
fn submit(c: &mut Chrome, action: &str) {
    c.submit(&format!(
        "document.querySelector('form[action$={}] button[type=submit]').click()",
        js_str(action)
    ));
}

fn sign_in(c: &mut Chrome, s: &Served, token: &str) {
    c.goto(&s.url("/login"));
    set(c, "token", token);
    submit(c, "/login");
    let here = c.eval("location.pathname");
    assert_eq!(here, json!("/secrets"), "sign-in did not land on /secrets");
}

#[test]
fn full_flow_never_exposes_the_value() {
    let Some(browser) = browser_or_skip("full_flow_never_exposes_the_value") else {
        return;
    };
    let s = Served::start();
    let base = s.url("/");
    let mut c = Chrome::launch(&browser);
    c.goto(&s.url("/login"));
    check_page(&mut c, &base, "login");
    sign_in(&mut c, &s, ADMIN);

    // The session cookie's flags, as the browser stored them.
    let cookies = c.cookies(&base);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let k = &cookies[0];
    assert_eq!(k["name"], "__Host-mlss_session");
    assert_eq!(k["httpOnly"], true);
    assert_eq!(k["secure"], true);
    assert_eq!(k["sameSite"], "Strict");
    assert_eq!(k["path"], "/");
    assert!(
        c.eval("document.cookie").as_str().unwrap().is_empty(),
        "HttpOnly: no script sees it"
    );

    // Create through the form.
    c.goto(&s.url("/secrets/new"));
    check_page(&mut c, &base, "new");
    set(&mut c, "secret_name", "openai-ui");
    set(&mut c, "provider", "openai");
    set(&mut c, "value", VALUE);
    c.eval("document.getElementById('is_shared').checked = true");
    shoot(&mut c, "new-secret");
    submit(&mut c, "/secrets/new");
    let path = c.eval("location.pathname").as_str().unwrap().to_string();
    let id = path
        .strip_prefix("/secrets/")
        .expect("landed on the secret")
        .to_string();
    check_page(&mut c, &base, "detail after create");
    assert!(c.dom().contains("Secret 'openai-ui' created."));

    // Bind it on the resource page (the scorer form).
    c.goto(&s.url("/resources/SCORER_JOB/eval-ui?workspace=default"));
    check_page(&mut c, &base, "resource before bind");
    set(&mut c, "binding_name", "OPENAI_API_KEY");
    submit(&mut c, "workspace=default");
    assert!(c.dom().contains("OPENAI_API_KEY"));
    check_page(&mut c, &base, "resource after bind");
    shoot(&mut c, "resource");

    // Rotate.
    c.goto(&s.url(&format!("/secrets/{id}")));
    set(&mut c, "value", VALUE2);
    submit(&mut c, "/rotate");
    assert!(c.dom().contains("rotated"));
    check_page(&mut c, &base, "detail after rotate");
    shoot(&mut c, "secret-detail");

    // Revoke (the confirm() dialog is accepted by the harness).
    c.eval("document.getElementById('revoke-confirm').checked = true");
    submit(&mut c, "/revoke");
    assert!(c.dom().contains("1 binding(s) are now denied"));
    check_page(&mut c, &base, "detail after revoke");

    // Delete by typing the name.
    set(&mut c, "confirm_name", "openai-ui");
    submit(&mut c, "/delete");
    assert_eq!(c.eval("location.pathname"), json!("/secrets"));
    check_page(&mut c, &base, "list after delete");
    assert!(s.rt.block_on(s.fx.store.get_secret(&id)).is_err());

    // A few secrets for the list's screenshot, then the audit and key pages.
    let v = SecretValue::from_string(VALUE.into()).unwrap();
    for (name, shared, provider) in [
        ("anthropic-judge", true, "anthropic"),
        ("azure-openai", true, "azure"),
        ("eval-private", false, "openai"),
    ] {
        let new = NewSecret {
            workspace: "default",
            secret_name: name,
            is_shared: shared,
            provider: Some(provider),
        };
        let made =
            s.rt.block_on(s.fx.store.create_secret_with(&new, &v, "alice"))
                .unwrap();
        s.rt.block_on(s.fx.store.bind_secret(
            &made.secret_id,
            "SCORER_JOB",
            "nightly-eval",
            &name.to_uppercase().replace('-', "_"),
            "alice",
        ))
        .unwrap();
    }
    c.goto(&s.url("/secrets"));
    check_page(&mut c, &base, "list");
    shoot(&mut c, "secrets");
    c.goto(&s.url("/audit"));
    check_page(&mut c, &base, "audit");
    let audit = c.dom();
    for action in ["CREATE", "BIND", "UPDATE", "REVOKE", "DELETE"] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "audit page lacks {action}"
        );
    }
    shoot(&mut c, "audit");
    c.goto(&s.url("/keys"));
    check_page(&mut c, &base, "keys");

    // Every response the browser received, captured through the protocol.
    assert!(
        c.responses.len() >= 15,
        "only {} responses captured",
        c.responses.len()
    );
    for r in &c.responses {
        for v in [VALUE, VALUE2] {
            assert!(
                !r.body.contains(v),
                "the value is in the response of {}",
                r.url
            );
        }
    }
    assert!(
        c.responses
            .iter()
            .any(|r| r.url.contains("/ui/assets/app.") && r.url.ends_with(".js"))
    );
}

#[test]
fn sign_out_ends_the_session_on_the_server() {
    let Some(browser) = browser_or_skip("sign_out_ends_the_session_on_the_server") else {
        return;
    };
    let s = Served::start();
    let base = s.url("/");
    let mut c = Chrome::launch(&browser);
    sign_in(&mut c, &s, ADMIN);
    let old = c.cookies(&base)[0].clone();
    submit(&mut c, "/logout");
    assert_eq!(c.eval("location.pathname"), json!("/login"));
    assert!(c.cookies(&base).is_empty(), "the cookie is cleared");
    // Put the old cookie back: the server no longer knows it.
    c.call(
        "Network.setCookie",
        json!({"name": old["name"], "value": old["value"], "url": base, "secure": true, "httpOnly": true, "sameSite": "Strict", "path": "/"}),
    );
    c.goto(&s.url("/secrets"));
    assert_eq!(
        c.eval("location.pathname"),
        json!("/login"),
        "an ended session still works"
    );
    check_page(&mut c, &base, "login after sign-out");
}

/// A page on another origin (a second loopback port) that posts a create
/// form to the UI, even with the victim's real form token.
#[test]
fn a_cross_origin_form_post_is_refused() {
    let Some(browser) = browser_or_skip("a_cross_origin_form_post_is_refused") else {
        return;
    };
    let s = Served::start();
    let mut c = Chrome::launch(&browser);
    sign_in(&mut c, &s, ADMIN);
    c.goto(&s.url("/secrets/new"));
    let csrf = c
        .eval("document.querySelector('input[name=csrf]').value")
        .as_str()
        .unwrap()
        .to_string();
    let target = s.url("/secrets/new");
    let page = format!(
        "<!doctype html><title>evil</title><form method=post action=\"{target}\">\
         <input name=csrf value=\"{csrf}\"><input name=secret_name value=csrf-victim>\
         <input name=workspace value=default><input name=value value=\"{VALUE}\"></form>\
         <script>document.forms[0].submit()</script>"
    );
    let evil =
        s.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
    let evil_addr = evil.local_addr().unwrap();
    s.rt.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = evil.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    c.responses.clear();
    c.goto(&format!("http://{evil_addr}/"));
    // The auto-submitted form lands on the UI's refusal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.eval("location.origin") != json!(format!("https://{}", s.addr)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the attack page never posted"
        );
        c.wait_load();
    }
    let refused = c
        .responses
        .iter()
        .rev()
        .find(|r| r.url == target)
        .expect("the post's response");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("cross-origin"));
    assert!(
        s.rt.block_on(s.fx.store.get_secret_by_name("default", "csrf-victim"))
            .is_err(),
        "a cross-origin post created a secret"
    );
}

#[test]
fn a_reader_sees_no_write_forms_and_team_a_cannot_open_team_b() {
    let Some(browser) =
        browser_or_skip("a_reader_sees_no_write_forms_and_team_a_cannot_open_team_b")
    else {
        return;
    };
    let s = Served::start();
    let base = s.url("/");
    let v = SecretValue::from_string(VALUE.into()).unwrap();
    let b =
        s.rt.block_on(s.fx.store.create_secret("team-b", "b-key", &v, true, "t"))
            .unwrap();
    let d =
        s.rt.block_on(s.fx.store.create_secret("default", "d-key", &v, true, "t"))
            .unwrap();

    let mut c = Chrome::launch(&browser);
    sign_in(&mut c, &s, READER);
    for path in [
        "/secrets".to_string(),
        format!("/secrets/{}", d.secret_id),
        "/resources/SCORER_JOB/x".into(),
    ] {
        c.goto(&s.url(&path));
        let forms = c.eval("[...document.querySelectorAll('form[method=post]')].map(f => new URL(f.action).pathname)");
        assert_eq!(
            forms,
            json!(["/logout"]),
            "{path}: a reader sees a write form"
        );
        check_page(&mut c, &base, &path);
    }
    drop(c);

    let mut c = Chrome::launch(&browser);
    sign_in(&mut c, &s, TEAM_A_WRITER);
    c.goto(&s.url(&format!("/secrets/{}", b.secret_id)));
    let dom = c.dom();
    assert!(dom.contains("does not exist"), "{dom}");
    assert!(!dom.contains("b-key") && !dom.contains("team-b"));
    let status = c
        .responses
        .iter()
        .rev()
        .find(|r| r.url.ends_with(&b.secret_id))
        .map(|r| r.status);
    assert_eq!(status, Some(404));
    // The browser logs the 404 of the document itself; that one is expected.
    c.console_errors
        .retain(|e| !(e.starts_with("log \"network\"") && e.contains(&b.secret_id)));
    check_page(&mut c, &base, "team-b secret as team-a");
}
