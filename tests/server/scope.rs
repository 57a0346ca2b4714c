//! Workspace-scoped tokens (docs/design.md §7, §10 rule 9; security review
//! finding 1) on SQLite, PostgreSQL and MariaDB: a token reaches only its
//! workspaces, checked against the *row* (looked up by id), and listings
//! without a workspace hold only the token's workspaces, page after page.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Backend, TestDb};

async fn create_in(app: &axum::Router, token: &str, ws: &str, name: &str, value: Value) -> Resp {
    let body = json!({"workspace": ws, "secret_name": name, "value": value});
    post(app, "create", Some(token), &body.to_string()).await
}

fn id(r: &Resp, what: &str) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()[what][format!("{what}_id")]
        .as_str()
        .unwrap()
        .to_string()
}

fn workspaces_of(r: &Resp, list: &str) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["workspace"].as_str().unwrap().to_string())
        .collect()
}

fn assert_denied(r: &Resp, what: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        "{what}: {}",
        r.text
    );
}

async fn scoped_writer_stays_in_its_workspaces(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let fx = Fixture::around(tempfile::tempdir().unwrap(), db.store.clone());
    let app = fx.app(0);
    // Team B's secret and binding, made by the `*` writer.
    let victim = id(
        &create_in(
            &app,
            WRITER,
            "team-b",
            "victim",
            json!("sk-team-b-0123456789"),
        )
        .await,
        "secret",
    );
    let bind_body = json!({"secret_id": victim, "resource_id": "nightly-eval", "binding_name": "OPENAI_API_KEY"});
    let binding = id(
        &post(&app, "bind", Some(WRITER), &bind_body.to_string()).await,
        "binding",
    );
    // Team A's own secret: allowed, and created_by is the principal.
    let r = create_in(
        &app,
        TEAM_A_WRITER,
        "team-a",
        "mine",
        json!("sk-team-a-0123456789"),
    )
    .await;
    let mine = id(&r, "secret");
    assert_eq!(r.json()["secret"]["created_by"], "ada");

    // The attack of the review: create, bind, change and remove in team-b.
    let attack =
        json!({"workspace": "team-b", "secret_name": "u", "value": "https://attacker.example/v1"});
    assert_denied(
        &post(&app, "create", Some(TEAM_A_WRITER), &attack.to_string()).await,
        "create in team-b",
    );
    let hdr = call_with(
        &app,
        Method::POST,
        &format!("{API}/create"),
        Some(TEAM_A_WRITER),
        Some(r#"{"secret_name":"u","value":"x"}"#),
        &[("X-MLFLOW-WORKSPACE", "team-b")],
    )
    .await;
    assert_denied(&hdr, "create in team-b by header");
    let by_id = json!({"secret_id": victim}).to_string();
    let update = json!({"secret_id": victim, "value": "https://attacker.example/v1"});
    assert_denied(
        &patch(&app, "update", Some(TEAM_A_WRITER), &update.to_string()).await,
        "update",
    );
    assert_denied(
        &post(&app, "revoke", Some(TEAM_A_WRITER), &by_id).await,
        "revoke",
    );
    assert_denied(
        &delete(&app, "delete", Some(TEAM_A_WRITER), &by_id).await,
        "delete",
    );
    let rebind =
        json!({"secret_id": victim, "resource_id": "x", "binding_name": "OPENAI_BASE_URL"});
    assert_denied(
        &post(&app, "bind", Some(TEAM_A_WRITER), &rebind.to_string()).await,
        "bind",
    );
    let unbind = json!({"binding_id": binding}).to_string();
    assert_denied(
        &delete(&app, "unbind", Some(TEAM_A_WRITER), &unbind).await,
        "unbind",
    );
    // Reads of team-b, by id and by name, for the scoped writer and reader.
    for t in [TEAM_A_WRITER, TEAM_A_READER] {
        assert_denied(
            &get(&app, &format!("get?secret_id={victim}"), Some(t)).await,
            "get by id",
        );
        assert_denied(
            &get(&app, "get?secret_name=victim&workspace=team-b", Some(t)).await,
            "get by name",
        );
        assert_denied(
            &get(&app, &format!("get-binding?binding_id={binding}"), Some(t)).await,
            "get-binding",
        );
        assert_denied(
            &get(&app, "list?workspace=team-b", Some(t)).await,
            "list team-b",
        );
        assert_denied(
            &get(&app, "list-bindings?workspace=team-b", Some(t)).await,
            "list-bindings team-b",
        );
        // Without a workspace: only team-a.
        let r = get(&app, "list", Some(t)).await;
        assert_eq!(workspaces_of(&r, "secrets"), vec!["team-a"]);
        let r = get(&app, "list-bindings", Some(t)).await;
        assert!(workspaces_of(&r, "bindings").iter().all(|w| w == "team-a"));
        let r = get(&app, &format!("list-bindings?secret_id={victim}"), Some(t)).await;
        assert!(workspaces_of(&r, "bindings").is_empty(), "{}", r.text);
    }
    // A binding in team-a for the lists above.
    let b = json!({"secret_id": mine, "resource_id": "nightly-eval", "binding_name": "K"});
    id(
        &post(&app, "bind", Some(TEAM_A_WRITER), &b.to_string()).await,
        "binding",
    );
    let r = get(&app, "list-bindings", Some(TEAM_A_READER)).await;
    assert_eq!(workspaces_of(&r, "bindings"), vec!["team-a"]);

    // Team B's rows are untouched.
    let r = get(&app, &format!("get?secret_id={victim}"), Some(WRITER)).await;
    assert_eq!(r.json()["secret"]["state"], "ACTIVE");
    assert_eq!(r.json()["secret"]["last_updated_by"], "wendy");
    let r = get(
        &app,
        &format!("get-binding?binding_id={binding}"),
        Some(WRITER),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Every refusal is audited as DENIED against team-b's rows.
    let r = get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    let denied: Vec<Value> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["outcome"] == "DENIED" && (e["principal"] == "ada" || e["principal"] == "rae")
        })
        .cloned()
        .collect();
    // 12 refusals of the writer, 5 of the reader.
    assert_eq!(denied.len(), 17, "{denied:?}");
    assert!(
        denied.iter().all(|e| e["workspace"] == "team-b"),
        "{denied:?}"
    );
    for action in ["CREATE", "UPDATE", "REVOKE", "DELETE", "BIND", "UNBIND"] {
        assert!(
            denied.iter().any(|e| e["action"] == action),
            "no DENIED {action} row"
        );
    }

    // A team-a admin sees team-a's audit rows only, and not team-b's.
    let r = get(&app, "list-audit?max_results=1000", Some(TEAM_A_ADMIN)).await;
    assert!(workspaces_of(&r, "entries").iter().all(|w| w == "team-a"));
    assert!(!workspaces_of(&r, "entries").is_empty());
    assert_denied(
        &get(&app, "list-audit?workspace=team-b", Some(TEAM_A_ADMIN)).await,
        "list-audit team-b",
    );
}

/// The scope filter is in the query: pages are full and the page token
/// continues within the token's workspaces.
async fn scoped_listing_pages(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let fx = Fixture::around(tempfile::tempdir().unwrap(), db.store.clone());
    let app = fx.app(0);
    // Interleaved names: a page filtered after the query would come back
    // short or empty.
    for ws in ["team-a", "team-b", "team-c"] {
        for i in 0..3 {
            id(
                &create_in(
                    &app,
                    WRITER,
                    ws,
                    &format!("s{i}"),
                    json!("sk-0123456789abc"),
                )
                .await,
                "secret",
            );
        }
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("list?max_results=2&page_token={t}"),
            None => "list?max_results=2".to_string(),
        };
        let r = get(&app, &q, Some(TEAM_A_READER)).await;
        let page = workspaces_of(&r, "secrets");
        assert!(
            page.len() == 2 || r.json()["next_page_token"].is_null(),
            "{}",
            r.text
        );
        seen.extend(page);
        match r.json()["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["team-a"; 3]);
}

#[tokio::test]
async fn sqlite_scoped_writer_stays_in_its_workspaces() {
    scoped_writer_stays_in_its_workspaces(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_scoped_writer_stays_in_its_workspaces() {
    scoped_writer_stays_in_its_workspaces(Backend::Postgres).await;
}

#[tokio::test]
async fn mysql_scoped_writer_stays_in_its_workspaces() {
    scoped_writer_stays_in_its_workspaces(Backend::Mysql).await;
}

#[tokio::test]
async fn sqlite_scoped_listing_pages() {
    scoped_listing_pages(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_scoped_listing_pages() {
    scoped_listing_pages(Backend::Postgres).await;
}

#[tokio::test]
async fn mysql_scoped_listing_pages() {
    scoped_listing_pages(Backend::Mysql).await;
}

/// `X-MLFLOW-WORKSPACE` is the default workspace of a request; a workspace
/// the request names wins over it.
#[tokio::test]
async fn workspace_header_is_the_default() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let h = [("X-MLFLOW-WORKSPACE", "team-a")];
    let r = call_with(
        &app,
        Method::POST,
        &format!("{API}/create"),
        Some(TEAM_A_WRITER),
        Some(r#"{"secret_name":"h","value":"sk-0123456789abc"}"#),
        &h,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["secret"]["workspace"], "team-a");
    let r = call_with(
        &app,
        Method::GET,
        &format!("{API}/get?secret_name=h"),
        Some(TEAM_A_READER),
        None,
        &h,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = call_with(
        &app,
        Method::GET,
        &format!("{API}/list"),
        Some(READER),
        None,
        &h,
    )
    .await;
    assert_eq!(workspaces_of(&r, "secrets"), vec!["team-a"]);
    // Without the header, a `*` reader's list is every workspace.
    id(
        &create_in(&app, WRITER, "team-z", "z", json!("sk-0123456789abc")).await,
        "secret",
    );
    let r = get(&app, "list", Some(READER)).await;
    assert_eq!(workspaces_of(&r, "secrets"), vec!["team-a", "team-z"]);
}
