//! The web UI in-process (docs/design.md §12, §10 rule 12): every page,
//! every refusal, and each attack as a test: cross-origin form posts, the
//! cookie on `/api/`, a bearer token on a page, a value in HTML (also after
//! a validation error), another team's secret, a reader's forms.

use crate::support::*;
use axum::http::{Method, StatusCode};
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::ui::headers::CSP;
use mlflow_secrets::value::SecretValue;

const VALUE: &str = "sk-ui-test-VALUE-9f8e7d6c5b4a";

async fn create(fx: &Fixture, b: &Browser, name: &str, extra: &[(&str, &str)]) -> Resp {
    let mut f = vec![
        ("secret_name", name),
        ("workspace", "default"),
        ("value_kind", "string"),
        ("value", VALUE),
    ];
    f.extend_from_slice(extra);
    fx.post(b, "/secrets/new", &f).await
}

/// A shared secret made through the store.
async fn seed(fx: &Fixture, ws: &str, name: &str) -> mlflow_secrets::model::Secret {
    let v = SecretValue::from_string(VALUE.into()).unwrap();
    fx.store
        .create_secret(ws, name, &v, true, "t")
        .await
        .unwrap()
}

fn assert_ui_headers(r: &Resp, tls: bool) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("strict-transport-security").is_some(), tls);
}

fn no_value(r: &Resp) {
    assert!(
        !r.text.contains(VALUE),
        "the value is in a page: {}",
        r.text
    );
    for (k, v) in &r.headers {
        assert!(
            !v.to_str().unwrap_or("").contains(VALUE),
            "value in header {k}"
        );
    }
}

#[tokio::test]
async fn every_ui_response_carries_the_headers() {
    for tls in [false, true] {
        let fx = Fixture::new(tls).await;
        let b = fx.sign_in(ADMIN).await;
        let made = create(&fx, &b, "headers", &[]).await;
        let id = id_from_location(&made);
        let css = {
            let page = fx.get(&b, "/secrets").await;
            let i = page.text.find("/ui/assets/app.").unwrap();
            let end = page.text[i..].find('"').unwrap();
            page.text[i..i + end].to_string()
        };
        for path in [
            "/",
            "/login",
            "/secrets",
            "/secrets/new",
            &format!("/secrets/{id}"),
            "/secrets/00000000-0000-4000-8000-000000000000",
            "/resources/SCORER_JOB/eval",
            "/audit",
            "/audit/export",
            "/keys",
            "/logout",
            &css,
            "/ui/assets/missing.css",
        ] {
            let r = fx.get(&b, path).await;
            assert_ui_headers(&r, tls);
        }
        // Refusals and redirects too.
        let anon = fx.send(Method::GET, "/secrets", &[], None).await;
        assert_eq!(anon.status, StatusCode::SEE_OTHER);
        assert_eq!(anon.location(), Some("/login"));
        assert_ui_headers(&anon, tls);
        assert_ui_headers(&made, tls);
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie() {
    let fx = Fixture::new(false).await;
    let r = fx.post_login(&fx.origin(), WRITER).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let c = r.set_cookie().unwrap();
    assert!(c.starts_with("mlss_session="), "{c}");
    assert!(c.contains("; HttpOnly") && c.contains("; SameSite=Strict") && c.contains("; Path=/"));
    assert!(!c.contains("Secure"), "plain loopback: no Secure");

    let fx = Fixture::new(true).await;
    let r = fx.post_login(&fx.origin(), WRITER).await;
    let c = r.set_cookie().unwrap();
    assert!(c.starts_with("__Host-mlss_session="), "{c}");
    assert!(c.contains("; Secure") && c.contains("; HttpOnly") && c.contains("; SameSite=Strict"));
    assert!(c.contains("Path=/") && !c.to_ascii_lowercase().contains("domain="));
    // The token never comes back.
    assert!(!r.text.contains(WRITER) && !c.contains(WRITER));
}

#[tokio::test]
async fn bad_tokens_and_runner_tokens_do_not_sign_in() {
    let fx = Fixture::new(false).await;
    let r = fx.post_login(&fx.origin(), "mlss_nope").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie().is_none());
    assert!(!r.text.contains("mlss_nope"), "the token is echoed");
    let r = fx.post_login(&fx.origin(), RUNNER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie().is_none());
    assert!(fx.state.ui.sessions.is_empty());
    // A cross-origin sign-in is refused too (login CSRF).
    let r = fx.post_login("http://evil.example", WRITER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie().is_none());
}

#[tokio::test]
async fn the_cookie_never_authenticates_the_api_and_tokens_never_a_page() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(ADMIN).await;
    let r = fx
        .send(
            Method::GET,
            "/api/2.0/mlflow/secrets/list",
            &[("cookie", &b.cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let bearer = format!("Bearer {ADMIN}");
    let r = fx
        .send(Method::GET, "/secrets", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), Some("/login"));
}

#[tokio::test]
async fn cross_origin_and_tokenless_posts_are_refused() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    let body = form(&[
        ("csrf", &b.csrf),
        ("secret_name", "csrf-victim"),
        ("workspace", "default"),
        ("value", VALUE),
    ]);
    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://127.0.0.1:6006")],
        vec![("origin", "null")],
        vec![],
    ];
    for extra in attempts {
        let mut h = vec![("cookie", b.cookie.as_str())];
        h.extend(extra.iter().copied());
        let r = fx
            .send(Method::POST, "/secrets/new", &h, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{extra:?}: {}", r.text);
        no_value(&r);
    }
    // Same origin, but no or a wrong form token.
    let victim = |csrf: &str| {
        Some(form(&[
            ("csrf", csrf),
            ("secret_name", "csrf-victim"),
            ("value", VALUE),
        ]))
    };
    let origin = fx.origin();
    for token in ["", "not-the-token"] {
        let headers = [("cookie", b.cookie.as_str()), ("origin", origin.as_str())];
        let r = fx
            .send(Method::POST, "/secrets/new", &headers, victim(token))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // Another session's form token is not this session's.
    let other = fx.sign_in(ADMIN).await;
    let headers = [
        ("cookie", b.cookie.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = fx
        .send(Method::POST, "/secrets/new", &headers, victim(&other.csrf))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        fx.store
            .get_secret_by_name("default", "csrf-victim")
            .await
            .is_err(),
        "nothing may be created"
    );
}

#[tokio::test]
async fn create_bind_rotate_revoke_delete_never_show_the_value() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    // A validation error re-shows the form without the value.
    let bad = create(&fx, &b, "bad name!", &[("provider", "openai")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains("role=\"alert\""));
    assert!(
        bad.text.contains("value=\"bad name!\""),
        "other fields are kept"
    );
    no_value(&bad);
    // Reserved binding names are refused before anything is written.
    let bad = create(
        &fx,
        &b,
        "openai",
        &[("resource_id", "eval"), ("binding_name", "PATH")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    no_value(&bad);
    assert!(
        fx.store
            .get_secret_by_name("default", "openai")
            .await
            .is_err()
    );

    let made = create(
        &fx,
        &b,
        "openai",
        &[
            ("provider", "openai"),
            ("resource_id", "eval"),
            ("binding_name", "OPENAI_API_KEY"),
        ],
    )
    .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    no_value(&made);
    let id = id_from_location(&made);
    let page = fx.get(&b, &format!("/secrets/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    no_value(&page);
    assert!(
        page.text.contains("Secret &#39;openai&#39; created.")
            || page.text.contains("Secret 'openai' created.")
    );
    assert!(page.text.contains("SCORER_JOB/eval") && page.text.contains("OPENAI_API_KEY"));
    assert!(
        page.text.contains("mlflow-secrets bind openai"),
        "CLI snippet"
    );
    assert!(
        page.text.contains("secrets.mlflow.org/inject"),
        "Job snippet"
    );
    assert!(page.text.contains(
        "mlflow-secrets run --workspace default --resource-type SCORER_JOB --resource-id eval"
    ));
    assert!(
        page.text.contains("1 binding will then be denied") || page.text.contains("1 binding</"),
        "revoke warning: {}",
        page.text
    );
    // The flash is shown once.
    assert!(
        !fx.get(&b, &format!("/secrets/{id}"))
            .await
            .text
            .contains("created.")
    );

    // Resource page: the scorer form binds a second name.
    let res = fx
        .get(&b, "/resources/SCORER_JOB/eval?workspace=default")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.text.contains("OPENAI_API_KEY") && res.text.contains("Bind secret"));
    no_value(&res);
    let scorer_form = |name: &'static str| {
        let id = id.clone();
        let (fx, b) = (&fx, &b);
        async move {
            let fields = [
                ("workspace", "default"),
                ("secret_id", id.as_str()),
                ("binding_name", name),
            ];
            fx.post(b, "/resources/SCORER_JOB/eval?workspace=default", &fields)
                .await
        }
    };
    let bound = scorer_form("LLM_KEY").await;
    assert_eq!(bound.status, StatusCode::SEE_OTHER, "{}", bound.text);
    let bad = scorer_form("LD_PRELOAD").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let res = fx
        .get(&b, "/resources/SCORER_JOB/eval?workspace=default")
        .await;
    assert!(res.text.contains("LLM_KEY"));

    // Rotate: a bad value is refused and not echoed; a good one stored.
    let r = fx
        .post(
            &b,
            &format!("/secrets/{id}/rotate"),
            &[("value_kind", "string"), ("value", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let new_value = "sk-ui-rotated-VALUE-0011223344";
    let r = fx
        .post(
            &b,
            &format!("/secrets/{id}/rotate"),
            &[("value_kind", "string"), ("value", new_value)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!r.text.contains(new_value));
    let got = fx.store.get_secret_value(&id, "test").await.unwrap();
    assert!(matches!(got, SecretValue::String(_)));
    let page = fx.get(&b, &format!("/secrets/{id}")).await;
    assert!(!page.text.contains(new_value));
    assert!(page.text.contains("rotated"));
    assert!(
        page.text.contains("2 bindings will then be denied"),
        "{}",
        page.text
    );

    // Revoke needs the confirmation box.
    let r = fx.post(&b, &format!("/secrets/{id}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = fx
        .post(&b, &format!("/secrets/{id}/revoke"), &[("confirm", "yes")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = fx.get(&b, &format!("/secrets/{id}")).await;
    assert!(page.text.contains("Revoked") && page.text.contains("2 binding(s) are now denied"));
    assert!(
        !page.text.contains("/rotate\""),
        "no rotate form on a revoked secret"
    );

    // Delete needs the exact name.
    let r = fx
        .post(
            &b,
            &format!("/secrets/{id}/delete"),
            &[("confirm_name", "OPENAI")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(fx.store.get_secret(&id).await.is_ok());
    let r = fx
        .post(
            &b,
            &format!("/secrets/{id}/delete"),
            &[("confirm_name", "openai")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), Some("/secrets"));
    assert!(fx.store.get_secret(&id).await.is_err());
    let r = fx.get(&b, &format!("/secrets/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_create_and_bind_whose_bind_fails_leaves_no_secret() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    // Another secret already holds OPENAI_API_KEY on SCORER_JOB/eval: the
    // store finds that inside the create's transaction.
    let other = seed(&fx, "default", "other").await;
    fx.store
        .bind_secret(
            &other.secret_id,
            "SCORER_JOB",
            "eval",
            "OPENAI_API_KEY",
            "t",
        )
        .await
        .unwrap();
    let taken = [("resource_id", "eval"), ("binding_name", "OPENAI_API_KEY")];
    let r = create(&fx, &b, "fresh", &taken).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("role=\"alert\""));
    assert!(
        r.text.contains("already exists") && r.text.contains("the secret was not created"),
        "{}",
        r.text
    );
    assert!(r.text.contains("value=\"fresh\""), "the name is kept");
    no_value(&r);
    assert!(
        fx.store
            .get_secret_by_name("default", "fresh")
            .await
            .is_err()
    );
    // Nothing was created and deleted again: one failed CREATE, no DELETE.
    let log = fx
        .store
        .list_audit(&mlflow_secrets::store::AuditFilter::default())
        .await
        .unwrap();
    let fresh: Vec<_> = log
        .iter()
        .filter(|e| e.secret_name.as_deref() == Some("fresh"))
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(fresh, [("CREATE", "FAILED")]);
    assert!(!log.iter().any(|e| e.action == "DELETE"));
    // A free name binds, in the same request.
    let free = [("resource_id", "eval"), ("binding_name", "OTHER_KEY")];
    let r = create(&fx, &b, "fresh", &free).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let id = id_from_location(&r);
    let bound = fx
        .store
        .get_binding_by_key(
            mlflow_secrets::model::ResourceRef::new("default", "SCORER_JOB", "eval"),
            "OTHER_KEY",
        )
        .await
        .unwrap()
        .expect("the binding");
    assert_eq!(bound.secret_id, id);
}

#[tokio::test]
async fn key_value_rows_make_an_object_value() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    let r = fx
        .post(
            &b,
            "/secrets/new",
            &[
                ("secret_name", "azure"),
                ("workspace", "default"),
                ("value_kind", "object"),
                ("field_key", "api_key"),
                ("field_value", VALUE),
                ("field_key", "api_base"),
                ("field_value", "https://x.example"),
                ("field_key", ""),
                ("field_value", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let id = id_from_location(&r);
    match fx.store.get_secret_value(&id, "test").await.unwrap() {
        SecretValue::Object(m) => assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            ["api_base", "api_key"]
        ),
        SecretValue::String(_) => panic!("expected an object"),
    }
    // A duplicated key is refused; the keys stay, the values do not.
    let r = fx
        .post(
            &b,
            "/secrets/new",
            &[
                ("secret_name", "azure2"),
                ("workspace", "default"),
                ("value_kind", "object"),
                ("field_key", "api_key"),
                ("field_value", VALUE),
                ("field_key", "api_key"),
                ("field_value", VALUE),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("value=\"api_key\""));
    no_value(&r);
}

/// A link to a resource page whose id is a shell command (the page renders
/// the id from its URL): the page's `run` snippet holds the id as one
/// quoted shell word, so pasting it runs `mlflow-secrets run` and nothing
/// else (the snippets' own unit tests parse them back).
#[tokio::test]
async fn a_hostile_resource_id_in_a_link_is_one_quoted_word_in_the_snippets() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(ADMIN).await;
    let page = fx
        .get(
            &b,
            "/resources/SCORER_JOB/x%3Btouch%24%7BIFS%7Dpwned?workspace=default",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let quoted = [
        "--resource-id &#39;x;touch${IFS}pwned&#39;",
        "--resource-id 'x;touch${IFS}pwned'",
    ];
    assert!(
        quoted.iter().any(|q| page.text.contains(q)),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains("--resource-id x;touch"),
        "the id is pasted unquoted"
    );
}

/// A binding whose resource id holds `?`, `=` and `#` (any writer may make
/// one): the secret page's "used by" link goes to that resource's own page
/// in the binding's workspace, not to another workspace's.
#[tokio::test]
async fn a_resource_id_with_url_characters_links_to_its_own_page() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    let made = create(
        &fx,
        &b,
        "linked",
        &[
            ("resource_id", "x?workspace=team-b#top"),
            ("binding_name", "OPENAI_API_KEY"),
        ],
    )
    .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    let page = fx
        .get(&b, &format!("/secrets/{}", id_from_location(&made)))
        .await;
    let href = "href=\"/resources/SCORER_JOB/x%3Fworkspace%3Dteam-b%23top?workspace=default\"";
    assert!(page.text.contains(href), "{}", page.text);
}

#[tokio::test]
async fn a_team_a_session_gets_404_for_a_team_b_secret() {
    let fx = Fixture::new(false).await;
    let b_secret = seed(&fx, "team-b", "b-key").await;
    seed(&fx, "team-a", "a-key").await;
    let a = fx.sign_in(TEAM_A_WRITER).await;
    let seen = fx
        .get(&a, &format!("/secrets/{}", b_secret.secret_id))
        .await;
    let none = fx
        .get(&a, "/secrets/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(
        !seen.text.contains("b-key") && !seen.text.contains("team-b"),
        "{}",
        seen.text
    );
    assert_eq!(
        seen.text.replace(&b_secret.secret_id, "ID"),
        none.text
            .replace("00000000-0000-4000-8000-000000000000", "ID"),
        "a team-b id must answer exactly like a missing one"
    );
    let list = fx.get(&a, "/secrets").await;
    assert!(list.text.contains("a-key") && !list.text.contains("b-key"));
    // Writes to it are refused the same way.
    for action in ["rotate", "revoke", "delete"] {
        let r = fx
            .post(
                &a,
                &format!("/secrets/{}/{action}", b_secret.secret_id),
                &[
                    ("value", "x"),
                    ("confirm", "yes"),
                    ("confirm_name", "b-key"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert!(fx.store.get_secret(&b_secret.secret_id).await.is_ok());
    let r = fx.get(&a, "/resources/SCORER_JOB/x?workspace=team-b").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = fx
        .post(
            &a,
            "/secrets/new",
            &[
                ("secret_name", "n"),
                ("workspace", "team-b"),
                ("value", VALUE),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(fx.store.get_secret_by_name("team-b", "n").await.is_err());
    // The refusal is audited.
    let rows = fx.store.list_audit(&Default::default()).await.unwrap();
    assert!(
        rows.iter().any(|e| e.outcome == "DENIED"
            && e.secret_id.as_deref() == Some(b_secret.secret_id.as_str()))
    );
}

#[tokio::test]
async fn a_reader_sees_no_write_forms_and_cannot_post() {
    let fx = Fixture::new(false).await;
    let s = seed(&fx, "default", "k").await;
    fx.store
        .bind_secret(&s.secret_id, "SCORER_JOB", "eval", "K", "t")
        .await
        .unwrap();
    let r = fx.sign_in(READER).await;
    for path in [
        "/secrets".to_string(),
        format!("/secrets/{}", s.secret_id),
        "/resources/SCORER_JOB/eval".into(),
    ] {
        let page = fx.get(&r, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let posts = page.text.matches("method=\"post\"").count();
        let logout = page.text.matches("action=\"/logout\"").count();
        assert_eq!(posts, logout, "{path}: a reader sees a write form");
        assert!(!page.text.contains("New secret"));
    }
    assert_eq!(
        fx.get(&r, "/secrets/new").await.status,
        StatusCode::FORBIDDEN
    );
    let p = fx
        .post(
            &r,
            "/secrets/new",
            &[("secret_name", "x"), ("value", VALUE)],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = fx
        .post(
            &r,
            &format!("/secrets/{}/revoke", s.secret_id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        fx.store
            .get_secret(&s.secret_id)
            .await
            .unwrap()
            .state
            .as_str(),
        "ACTIVE"
    );
}

#[tokio::test]
async fn admin_pages_are_403_for_others() {
    let fx = Fixture::new(false).await;
    for token in [WRITER, READER, TEAM_A_WRITER] {
        let b = fx.sign_in(token).await;
        for path in ["/audit", "/audit/export", "/keys"] {
            assert_eq!(
                fx.get(&b, path).await.status,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        assert!(
            !fx.get(&b, "/secrets")
                .await
                .text
                .contains("href=\"/audit\"")
        );
    }
    // A team-scoped admin reads its audit rows, but not the key page.
    let ann = fx.sign_in(TEAM_A_ADMIN).await;
    assert_eq!(fx.get(&ann, "/audit").await.status, StatusCode::OK);
    assert_eq!(fx.get(&ann, "/keys").await.status, StatusCode::FORBIDDEN);
    let alice = fx.sign_in(ADMIN).await;
    let keys = fx.get(&alice, "/keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    assert!(keys.text.contains("Key-encryption key versions"));
}

#[tokio::test]
async fn audit_page_filters_pages_exports_and_verifies() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(ADMIN).await;
    for i in 0..3 {
        let made = create(&fx, &b, &format!("s{i}"), &[]).await;
        assert_eq!(made.status, StatusCode::SEE_OTHER);
    }
    let page = fx.get(&b, "/audit?action=CREATE").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.text.matches("<td>CREATE</td>").count(),
        3,
        "{}",
        page.text
    );
    assert!(page.text.contains("Chain status"));
    no_value(&page);
    let v = fx.get(&b, "/audit?verify=1").await;
    assert!(v.text.contains("Verified: all"), "{}", v.text);
    let exp = fx.get(&b, "/audit/export?action=CREATE").await;
    assert_eq!(exp.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = exp
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["action"] == "CREATE"));
    no_value(&exp);
    assert_eq!(
        fx.get(&b, "/audit?action=NOPE").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        fx.get(&b, "/audit?since=yesterday").await.status,
        StatusCode::BAD_REQUEST
    );
}

/// `n` shared secrets made through the store: `n` CREATE rows.
async fn seed_many(fx: &Fixture, n: usize) {
    let names: Vec<String> = (0..n).map(|i| format!("bulk-{i:05}")).collect();
    let v = SecretValue::from_string(VALUE.into()).unwrap();
    let items: Vec<_> = names
        .iter()
        .map(|name| {
            let new = mlflow_secrets::model::NewSecret {
                workspace: "default",
                secret_name: name,
                is_shared: true,
                provider: None,
            };
            (new, &v)
        })
        .collect();
    for r in fx.store.create_secrets_with(&items, "t").await {
        r.unwrap();
    }
}

/// The `seq` of each JSON line, checking the line's action.
fn export_seqs(text: &str, action: &str) -> Vec<i64> {
    text.lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(j["action"], action, "{l}");
            j["seq"].as_i64().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_export_streams_pages_newest_first_and_audits_its_filter() {
    let fx = Fixture::new(false).await;
    // More than two pages of validate::MAX_PAGE_SIZE (1,000) rows.
    seed_many(&fx, 2_500).await;
    let b = fx.sign_in(ADMIN).await;
    let exp = fx.get(&b, "/audit/export?action=CREATE").await;
    assert_eq!(exp.status, StatusCode::OK);
    assert_ui_headers(&exp, false);
    assert_eq!(exp.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        exp.header("content-disposition"),
        Some("attachment; filename=\"audit.jsonl\"")
    );
    assert!(exp.text.ends_with('\n'));
    let seqs = export_seqs(&exp.text, "CREATE");
    assert_eq!(seqs.len(), 2_500);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    no_value(&exp);
    // The export's own row records the filter and the limit; an export
    // does not contain its own row.
    let own = fx.get(&b, "/audit/export?action=LIST_AUDIT").await;
    let rows: Vec<serde_json::Value> = own
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{}", own.text);
    assert_eq!(
        rows[0]["detail"],
        "via=ui export limit=100000 filter=action=CREATE"
    );
}

#[tokio::test]
async fn a_store_error_mid_export_ends_the_body_as_an_error() {
    let fx = Fixture::new(false).await;
    seed_many(&fx, 1_500).await;
    let b = fx.sign_in(ADMIN).await;
    let resp = fx
        .response(
            Method::GET,
            "/audit/export?action=CREATE",
            &[("cookie", &b.cookie)],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The first page was read before the response; break the table under
    // the second.
    let uri = format!("sqlite://{}", fx.dir.path().join("ui.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&uri)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE secrets_audit_log RENAME TO secrets_audit_log_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    let ended = loop {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(f)) => text.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            Some(Err(e)) => break Some(e.to_string()),
            None => break None,
        }
    };
    let ended = ended.expect("the body ends with an error, not a clean end");
    assert!(
        !ended.contains("no such table") && ended.contains("incident"),
        "{ended}"
    );
    let text = String::from_utf8(text).unwrap();
    assert_eq!(export_seqs(&text, "CREATE").len(), 1_000, "one whole page");
}

#[tokio::test]
async fn search_filters_and_page_tokens() {
    let fx = Fixture::new(false).await;
    let v = SecretValue::from_string(VALUE.into()).unwrap();
    for i in 0..45 {
        let new = mlflow_secrets::model::NewSecret {
            workspace: "default",
            secret_name: &format!("key-{i:02}"),
            is_shared: i % 2 == 0,
            provider: Some(if i % 3 == 0 { "anthropic" } else { "openai" }),
        };
        fx.store.create_secret_with(&new, &v, "t").await.unwrap();
    }
    let b = fx.sign_in(READER).await;
    let p1 = fx.get(&b, "/secrets").await;
    assert_eq!(p1.text.matches("<th scope=\"row\">").count(), 20);
    let next = {
        let i = p1.text.find("rel=\"next\" href=\"").unwrap() + 17;
        let end = p1.text[i..].find('"').unwrap();
        p1.text[i..i + end].replace("&amp;", "&")
    };
    let p2 = fx.get(&b, &next).await;
    assert!(p2.text.contains("key-20") && !p2.text.contains("key-19<"));
    let q = fx.get(&b, "/secrets?q=KEY-1").await;
    assert_eq!(q.text.matches("<th scope=\"row\">").count(), 10);
    let like = fx.get(&b, "/secrets?q=%25").await;
    assert!(
        like.text.contains("No secrets match."),
        "% is not a wildcard"
    );
    let prov = fx
        .get(&b, "/secrets?provider=anthropic&shared=shared")
        .await;
    // i in 0..45 with i%3==0 and i%2==0: 0,6,...,42 = 8 rows.
    assert_eq!(prov.text.matches("<th scope=\"row\">").count(), 8);
    assert_eq!(
        fx.get(&b, "/secrets?page_token=garbage").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn sign_out_and_timeouts_end_the_session_on_the_server() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(WRITER).await;
    let out = fx.post(&b, "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    let again = fx.get(&b, "/secrets").await;
    assert_eq!(
        again.status,
        StatusCode::SEE_OTHER,
        "the old cookie still works"
    );
    assert_eq!(again.location(), Some("/login"));

    let b = fx.sign_in(WRITER).await;
    let sid = b.cookie.split_once('=').unwrap().1.to_string();
    fx.state.ui.sessions.age_for_tests(
        &sid,
        mlflow_secrets::ui::session::IDLE_TIMEOUT,
        std::time::Duration::ZERO,
    );
    assert_eq!(fx.get(&b, "/secrets").await.status, StatusCode::SEE_OTHER);

    // Near the absolute limit the page says so.
    let b = fx.sign_in(WRITER).await;
    let sid = b.cookie.split_once('=').unwrap().1.to_string();
    let near = mlflow_secrets::ui::session::ABSOLUTE_TIMEOUT - std::time::Duration::from_secs(300);
    fx.state
        .ui
        .sessions
        .age_for_tests(&sid, std::time::Duration::ZERO, near);
    let page = fx.get(&b, "/secrets").await;
    assert!(
        page.text
            .contains("Your session ends soon. </strong>It ends in 5 minutes"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn anonymous_mode_works_as_local_with_a_banner() {
    let fx = Fixture::anonymous().await;
    let b = fx.anonymous_browser().await;
    let page = fx.get(&b, "/secrets").await;
    assert!(page.text.contains("Anonymous loopback mode."));
    assert!(
        page.text.contains("Test mode."),
        "the fixture's test KEK is announced"
    );
    let made = create(&fx, &b, "local-one", &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    let s = fx
        .store
        .get_secret_by_name("default", "local-one")
        .await
        .unwrap();
    assert_eq!(s.created_by.as_deref(), Some("local"));
    // DNS rebinding: another Host is refused.
    let r = fx
        .send(
            Method::GET,
            "/secrets",
            &[("host", "evil.example"), ("cookie", &b.cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_are_accessible_by_construction() {
    let fx = Fixture::new(false).await;
    let b = fx.sign_in(ADMIN).await;
    let made = create(
        &fx,
        &b,
        "a11y",
        &[("resource_id", "eval"), ("binding_name", "K")],
    )
    .await;
    let id = id_from_location(&made);
    for path in [
        "/secrets".to_string(),
        "/secrets/new".into(),
        format!("/secrets/{id}"),
        "/resources/SCORER_JOB/eval".into(),
        "/audit".into(),
        "/keys".into(),
    ] {
        let page = fx.get(&b, &path).await;
        let t = &page.text;
        // Every input but hidden ones has a label naming its id.
        for (i, _) in t.match_indices("<input ") {
            let tag = &t[i..i + t[i..].find('>').unwrap()];
            if tag.contains("type=\"hidden\"") {
                continue;
            }
            let id = tag
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("{path}: input without id: {tag}"));
            assert!(
                t.contains(&format!("for=\"{id}\"")),
                "{path}: input {id} has no label"
            );
        }
        assert!(!t.contains("<th>"), "{path}: a header cell without scope");
        assert!(
            !t.contains("style=") && !t.contains("<script>") && !t.contains("onclick"),
            "{path}: inline style or script"
        );
    }
}

#[tokio::test]
async fn an_old_active_kek_gets_a_banner_with_the_rotate_command() {
    use mlflow_secrets::keystore::{self, KeystoreConfig, NewKekOptions, PassphraseSource};
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "ui banner passphrase").unwrap();
    let dir = tmp.path().join("keystore");
    keystore::generate(
        &dir,
        &secrecy::SecretString::from("ui banner passphrase"),
        NewKekOptions::default(),
    )
    .unwrap();
    let cfg = KeystoreConfig {
        dir,
        passphrase: PassphraseSource::new(&pass),
        test_mode: false,
    };
    let load = || mlflow_secrets::keystore::Keystore::load(&cfg).unwrap();

    let fx = Fixture::anonymous_with(load(), std::time::Duration::ZERO).await;
    let b = fx.anonymous_browser().await;
    let page = fx.get(&b, "/secrets").await;
    assert!(
        page.text.contains("Old key-encryption key."),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("mlflow-secrets kek rotate")
            && page.text.contains("mlflow-secrets rewrap --all")
    );
    assert!(!page.text.contains("Test mode."));

    let fx = Fixture::anonymous_with(load(), mlflow_secrets::ui::DEFAULT_KEK_MAX_AGE).await;
    let b = fx.anonymous_browser().await;
    assert!(
        !fx.get(&b, "/secrets")
            .await
            .text
            .contains("Old key-encryption key.")
    );
}
