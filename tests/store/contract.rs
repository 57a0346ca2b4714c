//! The store contract suite: every operation of docs/design.md §6 and every rule,
//! run against SQLite, PostgreSQL and MariaDB (see tests/testkit).

use mlflow_secrets::model::ResourceRef;
use std::collections::BTreeMap;

use mlflow_secrets::model::{BindingFilter, SecretFilter, SecretState};
use mlflow_secrets::store::{AuditFilter, RewrapTarget, SecretsStore, SqlStore, StoreError};
use mlflow_secrets::value::SecretValue;
use secrecy::ExposeSecret;
use sqlx::Row;
use testkit::{Backend, TestDb, as_string, contract, drop_audit_triggers, val};

use crate::support::{ACTOR, StoreExt as _, exactly_one_wins};

contract!(
    create_and_get,
    duplicate_names,
    list_filters_and_pages,
    update_writes_new_dek_and_iv,
    revoke_is_one_way_and_refuses_reads,
    delete_cascades_to_bindings,
    private_and_shared_binding_rules,
    binding_uniqueness_and_validation,
    workspace_isolation,
    resource_reads,
    unbind_and_not_found_errors,
    invalid_input_names_the_field,
    concurrent_creates_yield_one_row,
    tamper_is_detected,
    no_plaintext_in_database,
    errors_never_contain_values,
    value_reads_are_audited_and_chain_verifies,
    audit_log_tampering_is_detected,
    rotation_rewrap_and_verify,
    foreign_mlflow_table_is_refused,
    decrypts_are_rate_limited,
    concurrent_audit_appends_commit_together_and_fail_closed,
    audit_appends_from_two_stores_and_operations_keep_one_chain,
);

async fn create_and_get(db: TestDb) {
    let s = &db.store;
    let secret = s
        .create(
            "openai-key",
            &val("sk-proj-abcdefghijklmnopqrstuvwx1234"),
            false,
        )
        .await;
    assert_eq!(secret.secret_name, "openai-key");
    assert_eq!(secret.workspace, "default");
    assert_eq!(secret.state, SecretState::Active);
    assert_eq!(secret.masked_value, "sk-p...1234");
    assert_eq!(secret.created_by.as_deref(), Some(ACTOR));
    assert!(!secret.is_shared);
    assert_eq!(s.get_secret(&secret.secret_id).await.unwrap(), secret);
    assert_eq!(
        s.get_secret_by_name("default", "openai-key").await.unwrap(),
        secret
    );

    // The entities carry no crypto field.
    let json = serde_json::to_string(&secret).unwrap();
    for field in ["ciphertext", "iv", "wrapped_dek", "kek_version", "aad_hash"] {
        assert!(
            !json.contains(&format!("\"{field}\"")),
            "{field} leaked: {json}"
        );
    }
    let b = s
        .bind(&secret.secret_id, "SCORER_JOB", "job-1", "OPENAI_API_KEY")
        .await;
    let json = serde_json::to_string(&b).unwrap();
    for field in ["ciphertext", "iv", "wrapped_dek", "kek_version", "aad_hash"] {
        assert!(
            !json.contains(&format!("\"{field}\"")),
            "{field} leaked: {json}"
        );
    }

    // String and object values round-trip.
    assert_eq!(
        as_string(&s.value(&secret.secret_id).await),
        "sk-proj-abcdefghijklmnopqrstuvwx1234"
    );
    let obj = SecretValue::from_json_text(r#"{"api_key":"k-123456789012","org":"org-1"}"#).unwrap();
    let o = s.create("azure", &obj, true).await;
    assert!(o.is_shared);
    match s.value(&o.secret_id).await {
        SecretValue::Object(m) => {
            assert_eq!(m["api_key"].expose_secret(), "k-123456789012");
            assert_eq!(m["org"].expose_secret(), "org-1");
        }
        other => panic!("expected object, got {other:?}"),
    }
}

async fn duplicate_names(db: TestDb) {
    let s = &db.store;
    s.create("k", &val("value-one-123456"), false).await;
    let err = s.create_err("k", &val("value-two-123456"), false).await;
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(err.error_code(), "RESOURCE_ALREADY_EXISTS");
    assert_eq!(
        err.to_string(),
        "secret 'k' already exists in workspace 'default'"
    );
    // Same name in another workspace is a different secret; names are case-sensitive.
    s.create_secret("team-a", "k", &val("value-three-1234"), false, ACTOR)
        .await
        .unwrap();
    s.create("K", &val("value-four-12345"), false).await;
}

async fn list_filters_and_pages(db: TestDb) {
    let s = &db.store;
    for i in 0..7 {
        s.create(&format!("s{i}"), &val("some-value-123456"), i % 2 == 0)
            .await;
    }
    s.create_secret("team-a", "other", &val("some-value-123456"), false, ACTOR)
        .await
        .unwrap();
    let revoked = s.get_secret_by_name("default", "s1").await.unwrap();
    s.revoke_secret(&revoked.secret_id, ACTOR).await.unwrap();

    let all = |f: SecretFilter| async move { s.list_secrets(&f).await.unwrap().items };
    assert_eq!(all(SecretFilter::default()).await.len(), 8);
    let ws = |w: &str| SecretFilter {
        workspace: Some(w.into()),
        ..Default::default()
    };
    assert_eq!(all(ws("default")).await.len(), 7);
    assert_eq!(all(ws("team-a")).await.len(), 1);
    let shared = all(SecretFilter {
        is_shared: Some(true),
        ..ws("default")
    })
    .await;
    assert_eq!(shared.len(), 4);
    assert!(shared.iter().all(|x| x.is_shared));
    let rev = all(SecretFilter {
        state: Some(SecretState::Revoked),
        ..Default::default()
    })
    .await;
    assert_eq!(rev.len(), 1);
    assert_eq!(rev[0].secret_name, "s1");

    // Pages of 3 cover everything exactly once, in order.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = s
            .secrets(&SecretFilter {
                max_results: Some(3),
                page_token: token,
                ..ws("default")
            })
            .await;
        assert!(page.items.len() <= 3);
        names.extend(page.items.into_iter().map(|x| x.secret_name));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());

    let bad = s
        .secrets_err(&SecretFilter {
            page_token: Some("garbage!".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad, StoreError::InvalidParameter(ref m) if m.contains("page_token")));
    let bad = s
        .secrets_err(&SecretFilter {
            max_results: Some(0),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad, StoreError::InvalidParameter(ref m) if m.contains("max_results")));

    // Binding listing pages too.
    let shared_one = &shared[0];
    for i in 0..5 {
        s.bind(
            &shared_one.secret_id,
            "SCORER_JOB",
            &format!("job-{i}"),
            "KEY",
        )
        .await;
    }
    let first = s
        .bindings(&BindingFilter {
            max_results: Some(2),
            ..Default::default()
        })
        .await;
    assert_eq!(first.items.len(), 2);
    let rest = s
        .bindings(&BindingFilter {
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    assert_eq!(rest.items.len(), 3);
    assert!(rest.next_page_token.is_none());
    let by_secret = s
        .bindings(&BindingFilter {
            secret_id: Some(shared_one.secret_id.clone()),
            ..Default::default()
        })
        .await;
    assert_eq!(by_secret.items.len(), 5);
}

async fn crypto_columns(db: &TestDb, id: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>, i64, String) {
    let mut c = db.raw().await;
    let row = sqlx::query(sqlx::AssertSqlSafe(db.sql(
        "SELECT ciphertext, iv, wrapped_dek, kek_version, aad_hash FROM secrets WHERE secret_id = ?",
    )))
    .bind(id.to_string())
    .fetch_one(&mut c)
    .await
    .unwrap();
    (
        row.get("ciphertext"),
        row.get("iv"),
        row.get("wrapped_dek"),
        row.get("kek_version"),
        row.get("aad_hash"),
    )
}

async fn update_writes_new_dek_and_iv(db: TestDb) {
    let s = &db.store;
    let sec = s.create("k", &val("first-value-12345"), false).await;
    let before = crypto_columns(&db, &sec.secret_id).await;
    assert_eq!(before.1.len(), 12);
    assert_eq!(before.2.len(), 60);
    assert_eq!(before.3, 1);
    assert_eq!(before.4.len(), 64);
    let updated = s
        .update_secret(&sec.secret_id, &val("second-value-6789"), "bob")
        .await
        .unwrap();
    assert_eq!(updated.last_updated_by.as_deref(), Some("bob"));
    assert_eq!(updated.created_by.as_deref(), Some(ACTOR));
    assert!(updated.last_updated_at >= sec.last_updated_at);
    let after = crypto_columns(&db, &sec.secret_id).await;
    assert_ne!(before.1, after.1, "a new IV for every write");
    assert_ne!(before.2, after.2, "a new DEK for every write");
    assert_ne!(before.0, after.0);
    assert_eq!(
        as_string(&s.value(&sec.secret_id).await),
        "second-value-6789"
    );
}

async fn revoke_is_one_way_and_refuses_reads(db: TestDb) {
    let s = &db.store;
    let sec = s.create("k", &val("the-value-1234567"), true).await;
    s.bind(&sec.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    let r = s.revoke_secret(&sec.secret_id, "carol").await.unwrap();
    assert_eq!(r.state, SecretState::Revoked);
    assert_eq!(r.revoked_by.as_deref(), Some("carol"));
    assert!(r.revoked_at.is_some());
    // The row and its bindings stay.
    assert_eq!(s.bindings(&BindingFilter::default()).await.items.len(), 1);

    let reads: Vec<StoreError> = vec![
        s.value_err(&sec.secret_id).await,
        s.get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            "KEY",
            ACTOR,
        )
        .await
        .unwrap_err(),
        s.get_all_secrets_for_resource(ResourceRef::new("default", "SCORER_JOB", "job-1"), ACTOR)
            .await
            .unwrap_err(),
        s.update_secret(&sec.secret_id, &val("new-value-1234567"), ACTOR)
            .await
            .unwrap_err(),
        s.bind_err(&sec.secret_id, "SCORER_JOB", "job-2", "KEY")
            .await,
        s.revoke_secret(&sec.secret_id, ACTOR).await.unwrap_err(),
    ];
    for e in reads {
        assert_eq!(e.error_code(), "RESOURCE_CONFLICT", "{e}");
        assert!(e.to_string().contains("revoked"), "{e}");
    }
    // Update did not un-revoke it.
    assert_eq!(
        s.get_secret(&sec.secret_id).await.unwrap().state,
        SecretState::Revoked
    );
}

async fn delete_cascades_to_bindings(db: TestDb) {
    let s = &db.store;
    let sec = s.create("k", &val("the-value-1234567"), true).await;
    let keep = s.create("keep", &val("the-value-1234567"), true).await;
    for i in 0..3 {
        s.bind(&sec.secret_id, "SCORER_JOB", &format!("job-{i}"), "KEY")
            .await;
    }
    s.bind(&keep.secret_id, "SCORER_JOB", "job-0", "OTHER")
        .await;
    s.delete_secret(&sec.secret_id, ACTOR).await.unwrap();
    assert!(matches!(
        s.get_secret(&sec.secret_id).await,
        Err(StoreError::NotFound(_))
    ));
    let left = s.bindings(&BindingFilter::default()).await.items;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].secret_id, keep.secret_id);
    // The cascade is the database's, not ours: check the raw table.
    let mut c = db.raw().await;
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(
        db.sql("SELECT COUNT(*) AS n FROM secrets_bindings WHERE secret_id = ?"),
    ))
    .bind(sec.secret_id.clone())
    .fetch_one(&mut c)
    .await
    .unwrap()
    .get("n");
    assert_eq!(n, 0);
    // A raw DELETE (no store code involved) cascades too.
    db.exec(
        &mut c,
        "DELETE FROM secrets WHERE secret_id = ?",
        &[&keep.secret_id],
    )
    .await;
    assert!(s.bindings(&BindingFilter::default()).await.items.is_empty());
    let e = s.delete_secret(&sec.secret_id, ACTOR).await.unwrap_err();
    assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
}

async fn private_and_shared_binding_rules(db: TestDb) {
    let s = &db.store;
    let private = s.create("p", &val("private-value-123"), false).await;
    s.bind(&private.secret_id, "SCORER_JOB", "job-1", "KEY")
        .await;
    // The same resource may bind it under a second name.
    s.bind(&private.secret_id, "SCORER_JOB", "job-1", "KEY2")
        .await;
    let e = s
        .bind_err(&private.secret_id, "SCORER_JOB", "job-2", "KEY")
        .await;
    assert_eq!(e.error_code(), "RESOURCE_CONFLICT");
    assert!(
        e.to_string().contains("private") && e.to_string().contains("SCORER_JOB/job-1"),
        "{e}"
    );
    let e = s
        .bind_err(&private.secret_id, "OTHER_TYPE", "job-1", "KEY")
        .await;
    assert_eq!(e.error_code(), "RESOURCE_CONFLICT");

    let shared = s.create("s", &val("shared-value-1234"), true).await;
    for i in 0..4 {
        s.bind(
            &shared.secret_id,
            "SCORER_JOB",
            &format!("job-{i}"),
            "SHARED",
        )
        .await;
    }
    // Concurrent binds of a private secret to different resources: one wins.
    let p2 = s.create("p2", &val("private-value-123"), false).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let st = s.clone();
        let id = p2.secret_id.clone();
        tasks.push(tokio::spawn(async move {
            st.bind_secret(&id, "SCORER_JOB", &format!("race-{i}"), "KEY", ACTOR)
                .await
        }));
    }
    exactly_one_wins(tasks, "RESOURCE_CONFLICT").await;
}

async fn binding_uniqueness_and_validation(db: TestDb) {
    let s = &db.store;
    let a = s.create("a", &val("value-a-123456789"), true).await;
    let b = s.create("b", &val("value-b-123456789"), true).await;
    s.bind(&a.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    let e = s.bind_err(&b.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    assert_eq!(e.error_code(), "RESOURCE_ALREADY_EXISTS");
    assert_eq!(
        e.to_string(),
        "binding 'KEY' already exists for SCORER_JOB/job-1 in workspace 'default'"
    );
    let e = s
        .bind_err(&a.secret_id, "SCORER_JOB", "job-1", "1BAD")
        .await;
    assert_eq!(e.error_code(), "INVALID_PARAMETER_VALUE");
    assert!(e.to_string().contains("binding_name"), "{e}");
    let missing = uuid::Uuid::new_v4().to_string();
    let e = s.bind_err(&missing, "SCORER_JOB", "job-1", "K").await;
    assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert!(e.to_string().contains(&missing));
}

async fn workspace_isolation(db: TestDb) {
    let s = &db.store;
    let a = s
        .create_secret("team-a", "k", &val("team-a-value-1234"), true, ACTOR)
        .await
        .unwrap();
    let bnd = s.bind(&a.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    assert_eq!(
        bnd.workspace, "team-a",
        "a binding lives in its secret's workspace"
    );
    // Another workspace claiming the same resource gets nothing.
    let e = s
        .get_secret_for_resource(
            ResourceRef::new("team-b", "SCORER_JOB", "job-1"),
            "KEY",
            ACTOR,
        )
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert!(
        s.get_all_secrets_for_resource(ResourceRef::new("team-b", "SCORER_JOB", "job-1"), ACTOR)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.get_secret_by_name("team-b", "k").await,
        Err(StoreError::NotFound(_))
    ));
    // Even a forged binding row pointing across workspaces is never followed.
    let mut c = db.raw().await;
    sqlx::query(sqlx::AssertSqlSafe(db.sql(
        "INSERT INTO secrets_bindings (binding_id, secret_id, workspace, resource_type, resource_id, binding_name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )))
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(a.secret_id.clone())
    .bind("team-b")
    .bind("SCORER_JOB")
    .bind("job-1")
    .bind("KEY")
    .bind(0i64)
    .execute(&mut c)
    .await
    .unwrap();
    assert!(
        s.get_all_secrets_for_resource(ResourceRef::new("team-b", "SCORER_JOB", "job-1"), ACTOR)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn resource_reads(db: TestDb) {
    let s = &db.store;
    let a = s.create("a", &val("value-a-123456789"), false).await;
    let b = s
        .create(
            "b",
            &SecretValue::from_json_text(r#"{"k":"v-b-123456789"}"#).unwrap(),
            true,
        )
        .await;
    s.bind(&a.secret_id, "SCORER_JOB", "job-9", "A_KEY").await;
    s.bind(&b.secret_id, "SCORER_JOB", "job-9", "B_KEY").await;
    let one = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-9"),
            "A_KEY",
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(as_string(&one), "value-a-123456789");
    let all = s.resource_values("SCORER_JOB", "job-9").await;
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        vec!["A_KEY", "B_KEY"]
    );
    // The webhook's read: the same values, each naming its secret and the
    // version (last_updated_at) it was read at, which moves with the value.
    s.update_secret(&a.secret_id, &val("value-a-2-23456789"), ACTOR)
        .await
        .unwrap();
    let bound = s
        .get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-9"), ACTOR)
        .await
        .unwrap();
    assert_eq!(bound.len(), 2);
    for (key, sec) in [("A_KEY", &a), ("B_KEY", &b)] {
        let now = s.get_secret(&sec.secret_id).await.unwrap();
        assert_eq!(bound[key].secret_id, sec.secret_id);
        assert_eq!(bound[key].last_updated_at, now.last_updated_at);
    }
    assert!(bound["A_KEY"].last_updated_at >= a.last_updated_at);
    let a_value = match &bound["A_KEY"].value {
        SecretValue::String(v) => v.expose_secret().to_string(),
        other => panic!("expected a string value, got {other:?}"),
    };
    assert_eq!(a_value, "value-a-2-23456789");
    let e = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-9"),
            "MISSING",
            ACTOR,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no binding 'MISSING' for SCORER_JOB/job-9 in workspace 'default'"
    );
    // One revoked secret fails the whole resource read, naming it.
    s.revoke_secret(&b.secret_id, ACTOR).await.unwrap();
    let e = s
        .get_all_secrets_for_resource(ResourceRef::new("default", "SCORER_JOB", "job-9"), ACTOR)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "RESOURCE_CONFLICT");
    assert!(
        e.to_string().contains("'b'") && e.to_string().contains("B_KEY"),
        "{e}"
    );
}

async fn unbind_and_not_found_errors(db: TestDb) {
    let s = &db.store;
    let a = s.create("a", &val("value-a-123456789"), true).await;
    let b = s.bind(&a.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    assert_eq!(s.get_binding(&b.binding_id).await.unwrap(), b);
    s.unbind_secret(&b.binding_id, ACTOR).await.unwrap();
    let e = s.get_binding(&b.binding_id).await.unwrap_err();
    assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert!(e.to_string().contains(&b.binding_id));
    let e = s.unbind_secret(&b.binding_id, ACTOR).await.unwrap_err();
    assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
    let e = s.get_secret_by_name("default", "nope").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "secret 'nope' does not exist in workspace 'default'"
    );
}

async fn invalid_input_names_the_field(db: TestDb) {
    let s = &db.store;
    let v = val("value-123456789012");
    let cases = [
        (
            s.create_secret("Bad WS", "k", &v, false, ACTOR)
                .await
                .unwrap_err(),
            "workspace",
        ),
        (s.create_err("bad name", &v, false).await, "secret_name"),
        (
            s.create_err(&"x".repeat(256), &v, false).await,
            "secret_name",
        ),
        (s.get_secret("not-a-uuid").await.unwrap_err(), "secret_id"),
        (s.get_binding("nope").await.unwrap_err(), "binding_id"),
    ];
    for (e, field) in cases {
        assert_eq!(e.error_code(), "INVALID_PARAMETER_VALUE", "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    let a = s.create("a", &v, true).await;
    for (t, i, n, field) in [
        ("scorer", "job", "K", "resource_type"),
        ("SCORER_JOB", "", "K", "resource_id"),
        ("SCORER_JOB", "job", "A-B", "binding_name"),
    ] {
        let e = s.bind_err(&a.secret_id, t, i, n).await;
        assert!(e.to_string().contains(field), "{e}");
    }
    // Nothing half-written: no bindings, one secret.
    assert!(s.bindings(&BindingFilter::default()).await.items.is_empty());
    assert_eq!(s.secrets(&SecretFilter::default()).await.items.len(), 1);
}

async fn concurrent_creates_yield_one_row(db: TestDb) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = db.store.clone();
        tasks.push(tokio::spawn(async move {
            st.create_secret(
                "default",
                "racy",
                &val(&format!("value-{i}-1234567890")),
                false,
                ACTOR,
            )
            .await
        }));
    }
    exactly_one_wins(tasks, "RESOURCE_ALREADY_EXISTS").await;
    assert_eq!(
        db.store.secrets(&SecretFilter::default()).await.items.len(),
        1
    );
}

async fn swap_column(db: &TestDb, col: &str, a: &str, b: &str) {
    let (ca, cb) = (crypto_columns(db, a).await, crypto_columns(db, b).await);
    let pick = |c: &(Vec<u8>, Vec<u8>, Vec<u8>, i64, String)| match col {
        "ciphertext" => c.0.clone(),
        "iv" => c.1.clone(),
        _ => c.2.clone(),
    };
    let mut conn = db.raw().await;
    let sql = db.sql(&format!("UPDATE secrets SET {col} = ? WHERE secret_id = ?"));
    for (id, v) in [(a, pick(&cb)), (b, pick(&ca))] {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(v)
            .bind(id.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn tamper_is_detected(db: TestDb) {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(
            s.create(
                &format!("t{i}"),
                &val(&format!("tamper-value-{i}-123")),
                false,
            )
            .await
            .secret_id,
        );
    }
    swap_column(&db, "ciphertext", &ids[0], &ids[1]).await;
    swap_column(&db, "iv", &ids[2], &ids[3]).await;
    swap_column(&db, "wrapped_dek", &ids[4], &ids[5]).await;
    let mut conn = db.raw().await;
    db.exec(
        &mut conn,
        "UPDATE secrets SET secret_name = ? WHERE secret_id = ?",
        &["renamed", &ids[6]],
    )
    .await;
    db.exec(
        &mut conn,
        "UPDATE secrets SET workspace = ? WHERE secret_id = ?",
        &["moved", &ids[7]],
    )
    .await;
    for id in &ids[..6] {
        let e = s.value_err(id).await;
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        assert!(e.to_string().contains(id.as_str()), "{e}");
    }
    for id in &ids[6..8] {
        let e = s.value_err(id).await;
        assert!(
            e.to_string()
                .contains("row metadata does not match its ciphertext"),
            "{e}"
        );
    }
    assert_eq!(as_string(&s.value(&ids[8]).await), "tamper-value-8-123");
    let report = s.verify(ACTOR, &|_| {}).await.unwrap();
    assert_eq!(report.total, 9);
    assert_eq!(report.ok, 1);
    let mut failed: Vec<_> = report.failed.iter().map(|f| f.secret_id.clone()).collect();
    failed.sort();
    let mut want = ids[..8].to_vec();
    want.sort();
    assert_eq!(failed, want);
    for f in &report.failed {
        assert!(!f.reason.contains("tamper-value"));
    }
}

const PLAINTEXTS: [&str; 3] = [
    "sk-PLAINTEXT-CANARY-7f3a9c1e5b",
    "ANOTHER-CANARY-e4d2c8b6a0-xyz",
    "dict-CANARY-value-0b1c2d3e4f",
];

async fn seed_canaries(db: &TestDb) {
    let s = &db.store;
    s.create("c0", &val(PLAINTEXTS[0]), false).await;
    let c1 = s.create("c1", &val("placeholder-value-1"), true).await;
    s.update_secret(&c1.secret_id, &val(PLAINTEXTS[1]), ACTOR)
        .await
        .unwrap();
    let obj =
        SecretValue::from_json_text(&format!(r#"{{"api_key":"{}"}}"#, PLAINTEXTS[2])).unwrap();
    let c2 = s.create("c2", &obj, true).await;
    s.bind(&c2.secret_id, "SCORER_JOB", "job-1", "API_KEY")
        .await;
    s.resource_values("SCORER_JOB", "job-1").await;
    s.value(&c1.secret_id).await;
    s.verify(ACTOR, &|_| {}).await.unwrap();
}

fn contains_any_canary(hay: &[u8]) -> Option<&'static str> {
    PLAINTEXTS
        .iter()
        .find(|p| hay.windows(p.len()).any(|w| w == p.as_bytes()))
        .copied()
}

async fn no_plaintext_in_database(db: TestDb) {
    seed_canaries(&db).await;
    // Every column of every table, as text and as bytes.
    let mut conn = db.raw().await;
    // `is_shared` is left out: sqlx's Any driver cannot decode SQLite's BOOLEAN.
    let dumps = [
        "SELECT secret_id, workspace, secret_name, ciphertext, iv, wrapped_dek, kek_version, aad_hash, \
         masked_value, state, created_by, last_updated_by, revoked_by, created_at, last_updated_at, \
         revoked_at FROM secrets",
        "SELECT * FROM secrets_bindings",
        "SELECT * FROM secrets_audit_log",
        "SELECT * FROM secrets_audit_head",
    ];
    for table in dumps {
        let rows = sqlx::query(table).fetch_all(&mut conn).await.unwrap();
        for row in &rows {
            for i in 0..row.len() {
                let as_bytes: Option<Vec<u8>> = row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten();
                let as_text: Option<String> = row.try_get::<Option<String>, _>(i).ok().flatten();
                for cell in [as_bytes, as_text.map(String::into_bytes)]
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(
                        contains_any_canary(&cell),
                        None,
                        "plaintext in {table} column {i}"
                    );
                }
            }
        }
    }
    // For SQLite, the raw files too (database and write-ahead log).
    if let Some(path) = db.sqlite_path() {
        drop(conn);
        for suffix in ["", "-wal"] {
            let p = format!("{}{suffix}", path.display());
            if let Ok(bytes) = std::fs::read(&p) {
                assert!(!bytes.is_empty() || suffix == "-wal");
                assert_eq!(contains_any_canary(&bytes), None, "plaintext in {p}");
            }
        }
        // The masked value is in the file, so the file was really read.
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(format!("{}-wal", path.display())).unwrap_or_default();
        let needle = b"c0";
        assert!(bytes.windows(2).any(|w| w == needle) || wal.windows(2).any(|w| w == needle));
    }
}

async fn errors_never_contain_values(db: TestDb) {
    let s = &db.store;
    let v = val(PLAINTEXTS[0]);
    s.create("k", &v, false).await;
    let mut errors = vec![s.create_err("k", &v, false).await];
    let sec = s.get_secret_by_name("default", "k").await.unwrap();
    s.revoke_secret(&sec.secret_id, ACTOR).await.unwrap();
    errors.push(
        s.update_secret(&sec.secret_id, &v, ACTOR)
            .await
            .unwrap_err(),
    );
    errors.push(s.value_err(&sec.secret_id).await);
    errors.push(
        s.create_secret("BAD", "k", &v, false, ACTOR)
            .await
            .unwrap_err(),
    );
    for e in &errors {
        assert_eq!(contains_any_canary(e.to_string().as_bytes()), None, "{e}");
        assert_eq!(
            contains_any_canary(format!("{e:?}").as_bytes()),
            None,
            "{e:?}"
        );
    }
    // Nor does the Debug form of a value.
    assert_eq!(contains_any_canary(format!("{v:?}").as_bytes()), None);
    // Nor the audit rows written for those failures.
    let audit = s.all_audit().await;
    assert!(audit.iter().any(|e| e.outcome != "SUCCESS"));
    assert_eq!(
        contains_any_canary(serde_json::to_string(&audit).unwrap().as_bytes()),
        None
    );
}

async fn value_reads_are_audited_and_chain_verifies(db: TestDb) {
    let s = &db.store;
    let a = s.create("a", &val("value-a-123456789"), true).await;
    s.bind(&a.secret_id, "SCORER_JOB", "job-1", "KEY").await;
    s.get_secret_value(&a.secret_id, "reader-1").await.unwrap();
    s.get_secret_for_resource(
        ResourceRef::new("default", "SCORER_JOB", "job-1"),
        "KEY",
        "webhook",
    )
    .await
    .unwrap();
    s.get_all_secrets_for_resource(
        ResourceRef::new("default", "SCORER_JOB", "job-1"),
        "webhook",
    )
    .await
    .unwrap();
    let _ = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            "NOPE",
            "webhook",
        )
        .await;
    let log = s
        .list_audit(&AuditFilter {
            secret_id: Some(a.secret_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.outcome.as_str(),
                e.principal.as_deref(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("CREATE", "SUCCESS", Some(ACTOR))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("BIND", "SUCCESS", Some(ACTOR))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("READ_VALUE", "SUCCESS", Some("reader-1"))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("READ_VALUE", "SUCCESS", Some("webhook"))),
        "{actions:?}"
    );
    let all = s.list_audit(&AuditFilter::default()).await.unwrap();
    assert!(
        all.iter()
            .any(|e| e.action == "READ_VALUE" && e.outcome == "FAILED")
    );
    let resource_read = all
        .iter()
        .find(|e| e.action == "READ_RESOURCE_VALUES")
        .unwrap();
    assert_eq!(resource_read.principal.as_deref(), Some("webhook"));
    assert_eq!(resource_read.resource.as_deref(), Some("SCORER_JOB/job-1"));
    let version = s.get_secret(&a.secret_id).await.unwrap().last_updated_at;
    assert_eq!(
        resource_read.detail,
        Some(format!("KEY={}@kek_v1:version={version}", a.secret_id))
    );
    let report = s.audit_verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows as usize, all.len());
}

async fn audit_log_tampering_is_detected(db: TestDb) {
    let s = &db.store;
    for i in 0..6 {
        s.create(&format!("a{i}"), &val("value-a-123456789"), true)
            .await;
    }
    assert!(s.audit_verify().await.unwrap().ok);
    let mut conn = db.raw().await;
    // The database itself refuses edits while the triggers are in place.
    let blocked = sqlx::raw_sql("UPDATE secrets_audit_log SET principal = 'mallory' WHERE seq = 2")
        .execute(&mut conn)
        .await;
    assert!(blocked.is_err(), "the audit log accepted an UPDATE");
    let blocked = sqlx::raw_sql("DELETE FROM secrets_audit_log WHERE seq = 2")
        .execute(&mut conn)
        .await;
    assert!(blocked.is_err(), "the audit log accepted a DELETE");

    // Someone with DDL rights drops them; the hash chain still catches it.
    drop_audit_triggers(&db, &mut conn).await;
    tamper(
        &mut conn,
        "UPDATE secrets_audit_log SET principal = 'mallory' WHERE seq = 3",
    )
    .await;
    assert_chain_broken(s, Some(3), "edited").await;

    tamper(
        &mut conn,
        "UPDATE secrets_audit_log SET principal = 'alice' WHERE seq = 3",
    )
    .await;
    assert!(
        s.audit_verify().await.unwrap().ok,
        "restoring the row restores the chain"
    );
    tamper(&mut conn, "DELETE FROM secrets_audit_log WHERE seq = 4").await;
    assert_chain_broken(s, Some(4), "deleted").await;
}

async fn audit_tail_truncation(db: &TestDb) {
    let mut conn = db.raw().await;
    drop_audit_triggers(db, &mut conn).await;
    tamper(&mut conn, "DELETE FROM secrets_audit_log WHERE seq = (SELECT m FROM (SELECT MAX(seq) AS m FROM secrets_audit_log) x)").await;
    assert_chain_broken(&db.store, None, "end").await;
}

async fn rotation_rewrap_and_verify(db: TestDb) {
    let s = &db.store;
    let mut want = BTreeMap::new();
    for i in 0..25 {
        let v = format!("rotation-value-{i}-abcdef");
        let sec = s.create(&format!("r{i}"), &val(&v), false).await;
        want.insert(sec.secret_id, v);
    }
    db.keystore.rotate();
    s.keys().replace(db.keystore.load());
    assert_eq!(s.keys().current().active_version(), 2);
    // New writes use v2 at once; old rows still read through v1.
    let fresh = s.create("fresh", &val("fresh-value-12345"), false).await;
    assert_eq!(crypto_columns(&db, &fresh.secret_id).await.3, 2);
    assert_eq!(
        s.kek_version_counts().await.unwrap(),
        BTreeMap::from([(1, 25), (2, 1)])
    );

    let e = s
        .rewrap(RewrapTarget::Version(2), 10, ACTOR, &|_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("active"), "{e}");
    let report = s
        .rewrap(RewrapTarget::All, 10, ACTOR, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 25);
    assert_eq!(report.batches, 3);
    assert!(report.failed.is_empty());
    assert_eq!(
        s.kek_version_counts().await.unwrap(),
        BTreeMap::from([(2, 26)])
    );
    // A second run finds nothing to do.
    assert_eq!(
        s.rewrap(RewrapTarget::All, 10, ACTOR, &|_| {})
            .await
            .unwrap()
            .rewrapped,
        0
    );
    for (id, v) in &want {
        assert_eq!(&as_string(&s.value(id).await), v);
    }
    let report = s.verify(ACTOR, &|_| {}).await.unwrap();
    assert_eq!((report.total, report.ok, report.failed.len()), (26, 26, 0));
    // Retiring v1 is now allowed, and the store still reads everything.
    mlflow_secrets::keystore::retire(&db.keystore.config.dir, 1, 0).unwrap();
    s.keys().replace(db.keystore.load());
    assert!(s.verify(ACTOR, &|_| {}).await.unwrap().failed.is_empty());
    audit_tail_truncation(&db).await;
}

async fn foreign_mlflow_table_is_refused(db: TestDb) {
    // A fresh database that holds MLflow 3.8's own `secrets` table.
    let Some((uri, _tmp)) = testkit::empty_database(db.backend).await else {
        return;
    };
    let mut conn = sqlx::AnyConnection::connect(&uri).await.unwrap();
    // PostgreSQL spells BLOB as BYTEA.
    let blob = if db.backend == Backend::Postgres {
        "BYTEA"
    } else {
        "BLOB"
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE secrets (secret_id VARCHAR(36) PRIMARY KEY, secret_name VARCHAR(255), \
         encrypted_value {blob}, wrapped_dek {blob}, kek_version INTEGER, masked_value VARCHAR(100), \
         provider VARCHAR(64), auth_config TEXT)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let store = mlflow_secrets::store::SqlStore::connect(&uri, db.keystore.handle())
        .await
        .unwrap();
    let e = store.migrate().await.unwrap_err();
    assert!(e.to_string().contains("MLflow"), "{e}");
    // Nothing was created next to it.
    let e = store.ensure_schema(false).await.unwrap_err();
    assert!(e.to_string().contains("migrate"), "{e}");
}

use sqlx::Connection;

async fn decrypts_are_rate_limited(db: TestDb) {
    use mlflow_secrets::store::DecryptLimits;
    let s = db.store.clone().with_decrypt_limits(DecryptLimits {
        per_principal_per_minute: Some(2),
        per_workspace_per_minute: Some(4),
    });
    let a = s.create("a", &val("value-a-123456789"), true).await;
    let b = s.create("b", &val("value-b-123456789"), true).await;
    s.bind(&a.secret_id, "SCORER_JOB", "job-1", "A").await;
    s.bind(&b.secret_id, "SCORER_JOB", "job-1", "B").await;
    s.get_secret_value(&a.secret_id, "p1").await.unwrap();
    s.get_secret_value(&a.secret_id, "p1").await.unwrap();
    let e = s.get_secret_value(&a.secret_id, "p1").await.unwrap_err();
    assert_eq!(e.error_code(), "REQUEST_LIMIT_EXCEEDED", "{e}");
    assert!(matches!(e, StoreError::RateLimited { retry_after, .. } if retry_after.as_secs() >= 1));
    // A resource read takes one decrypt per binding: 2 more fill the workspace.
    s.get_all_secrets_for_resource(ResourceRef::new("default", "SCORER_JOB", "job-1"), "p2")
        .await
        .unwrap();
    let e = s
        .get_all_secrets_for_resource(ResourceRef::new("default", "SCORER_JOB", "job-1"), "p3")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("workspace 'default'"), "{e}");
    // Other workspaces are unaffected, and metadata reads are never limited.
    let c = s
        .create_secret("team-a", "c", &val("value-c-123456789"), true, ACTOR)
        .await
        .unwrap();
    s.get_secret_value(&c.secret_id, "p4").await.unwrap();
    s.get_secret(&a.secret_id).await.unwrap();
    // Refusals are audited as denials.
    let log = s.all_audit().await;
    assert!(
        log.iter()
            .any(|e| e.outcome == "DENIED" && e.principal.as_deref() == Some("p1"))
    );
}

/// Standalone audit records are group-committed (src/store/audit_writer.rs).
/// Many concurrent appends must each be acknowledged only once committed,
/// all of them must land in one valid chain, and when the database refuses
/// the write every caller gets the error (the server fails closed on it).
async fn concurrent_audit_appends_commit_together_and_fail_closed(db: TestDb) {
    use mlflow_secrets::store::audit::{AuditAction, AuditRecord};
    const N: usize = 200;
    let before = db
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .len();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = db.store.clone();
            tokio::spawn(async move {
                let rec = AuditRecord::new(AuditAction::GetSecret, &format!("reader-{i}"))
                    .workspace("default")
                    .detail(format!("n={i}"));
                s.append_audit(&rec).await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("every queued audit record is committed");
    }
    let after = db.store.all_audit().await;
    assert_eq!(after.len(), before + N, "one row per acknowledged append");
    for i in 0..N {
        let want = format!("n={i}");
        assert!(
            after
                .iter()
                .any(|e| e.detail.as_deref() == Some(want.as_str())
                    && e.principal.as_deref() == Some(format!("reader-{i}").as_str())),
            "row {i} missing"
        );
    }
    let report = db.store.audit_verify().await.unwrap();
    assert!(report.ok, "{report:?}");

    // Fail closed: with the log table gone, every waiter gets an error and
    // none is told its record was written.
    let mut conn = db.raw().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "ALTER TABLE secrets_audit_log RENAME TO secrets_audit_log_gone".to_string(),
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = db.store.clone();
            tokio::spawn(async move {
                s.append_audit(&AuditRecord::new(AuditAction::GetSecret, "reader"))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_err(), "an audit write that did not commit must fail");
    }
}

/// The group-commit writer remembers the head its last batch left and
/// appends after it in one round trip while that guess holds. Another
/// store on the same database (another replica, the CLI) and the store's
/// own operations (which append in their own transactions) move the head
/// behind its back: every append must still land exactly once, in one
/// unforked chain with no gap, whatever interleaves.
async fn audit_appends_from_two_stores_and_operations_keep_one_chain(db: TestDb) {
    use mlflow_secrets::store::audit::{AuditAction, AuditRecord};
    const ROUNDS: usize = 12;
    let a = db.store.clone();
    let b = SqlStore::connect(&db.uri, db.keystore.handle())
        .await
        .unwrap();
    let before = a.all_audit().await.len();
    let rec = |who: &str, i: usize| {
        AuditRecord::new(AuditAction::GetSecret, who)
            .workspace("default")
            .detail(format!("{who}-{i}"))
    };
    // Strictly alternating first: every append of one store finds the
    // head the other one moved.
    for i in 0..ROUNDS {
        a.append_audit(&rec("a", i)).await.unwrap();
        b.append_audit(&rec("b", i)).await.unwrap();
    }
    // An operation's own audit row moves the head too.
    a.create_secret(
        "default",
        "chain-op",
        &val("sk-chain-op-0001"),
        false,
        ACTOR,
    )
    .await
    .unwrap();
    a.append_audit(&rec("a", ROUNDS)).await.unwrap();
    // Then both at once, many in flight on each.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (s, who) = if i % 2 == 0 {
                (a.clone(), "ca")
            } else {
                (b.clone(), "cb")
            };
            tokio::spawn(async move { s.append_audit(&rec(who, i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every append is committed");
    }
    let after = a.all_audit().await;
    // 2 x ROUNDS alternating, the create, one more, 40 concurrent.
    assert_eq!(after.len(), before + 2 * ROUNDS + 1 + 1 + 40);
    let mut details: Vec<&str> = after.iter().filter_map(|e| e.detail.as_deref()).collect();
    let all = details.len();
    details.sort_unstable();
    details.dedup();
    assert_eq!(details.len(), all, "no row was written twice");
    let seqs: Vec<i64> = after.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers without gaps: {seqs:?}"
    );
    let report = a.audit_verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(b.audit_verify().await.unwrap().ok);
}

/// Run `sql` on a raw connection, behind the store's back; it must succeed.
async fn tamper(conn: &mut sqlx::AnyConnection, sql: &'static str) {
    sqlx::raw_sql(sql).execute(conn).await.unwrap();
}

/// `audit verify` reports the chain broken (at `seq`, when given) and says
/// `why`.
async fn assert_chain_broken(s: &SqlStore, seq: Option<i64>, why: &str) {
    let r = s.audit_verify().await.unwrap();
    assert!(!r.ok);
    if seq.is_some() {
        assert_eq!(r.first_broken_seq, seq);
    }
    assert!(r.reason.unwrap().contains(why));
}
