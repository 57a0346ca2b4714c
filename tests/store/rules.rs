//! Store contract cases for the trust-model rules (docs/design.md §2, §4, §6, §10
//! rule 11): the added columns (`provider`, `value_field`,
//! `service_accounts`), reserved binding names, the revocation shred, the
//! exported audit head, and database driver text kept out of errors. Each
//! case runs on SQLite, PostgreSQL and MariaDB (see tests/testkit), and each
//! would fail if its rule broke.

use mlflow_secrets::model::ResourceRef;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_secrets::crypto::{self, Aad};
use mlflow_secrets::model::{NewBinding, NewSecret, SecretState};
use mlflow_secrets::store::audit::export::{HeadCadence, spawn_head_export};
use mlflow_secrets::store::audit::{ExportedHead, entry_hash};
use mlflow_secrets::store::{AuditFilter, SecretsStore, SqlStore, StoreError};
use mlflow_secrets::value::SecretValue;
use sqlx::Row;
use testkit::{TestDb, as_string, contract, drop_audit_triggers, val};

use crate::support::{ACTOR, StoreExt as _};

contract!(
    provider_is_stored_and_returned,
    field_bindings_inject_one_field_and_fail_when_it_is_gone,
    service_accounts_are_validated_stored_and_returned,
    reserved_binding_names_are_refused,
    revoke_shreds_the_wrapped_dek,
    verify_counts_revoked_rows_apart,
    rewrap_moves_revoked_rows_without_failing,
    audit_verify_head_detects_a_rewritten_chain,
    audit_head_is_exported_on_a_cadence,
    driver_text_never_reaches_the_caller,
    object_masks_reveal_at_most_eight_characters,
    chosen_bound_values_decrypt_only_what_was_chosen,
);

fn azure() -> SecretValue {
    SecretValue::from_json_text(
        r#"{"api_key":"azure-key-1234567890","api_base":"https://x.openai.azure.com","api_version":"2024-06-01"}"#,
    )
    .unwrap()
}

async fn create_with(
    db: &TestDb,
    name: &str,
    value: &SecretValue,
    provider: Option<&str>,
) -> String {
    db.store
        .create_secret_with(
            &NewSecret {
                workspace: "default",
                secret_name: name,
                is_shared: true,
                provider,
            },
            value,
            ACTOR,
        )
        .await
        .unwrap()
        .secret_id
}

fn binding<'a>(
    secret_id: &'a str,
    name: &'a str,
    field: Option<&'a str>,
    sas: &'a [String],
) -> NewBinding<'a> {
    NewBinding {
        secret_id,
        resource_type: "SCORER_JOB",
        resource_id: "job-1",
        binding_name: name,
        value_field: field,
        service_accounts: sas,
    }
}

async fn provider_is_stored_and_returned(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "openai", &val("sk-abcdefghijklmnop"), Some("openai")).await;
    assert_eq!(
        s.get_secret(&id).await.unwrap().provider.as_deref(),
        Some("openai")
    );
    let listed = s.list_secrets(&Default::default()).await.unwrap().items;
    assert_eq!(listed[0].provider.as_deref(), Some("openai"));
    // The short form stores none.
    let plain = s.create("plain", &val("sk-abcdefghijklmnop"), false).await;
    assert_eq!(s.get_secret(&plain.secret_id).await.unwrap().provider, None);
    let e = s
        .create_secret_with(
            &NewSecret {
                workspace: "default",
                secret_name: "bad",
                is_shared: false,
                provider: Some("open ai"),
            },
            &val("sk-abcdefghijklmnop"),
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::InvalidParameter(_)) && e.to_string().contains("provider"),
        "{e}"
    );
}

async fn field_bindings_inject_one_field_and_fail_when_it_is_gone(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "azure", &azure(), Some("azure")).await;
    for (name, field) in [
        ("AZURE_API_KEY", "api_key"),
        ("AZURE_API_BASE", "api_base"),
        ("AZURE_API_VERSION", "api_version"),
    ] {
        let b = s
            .bind_secret_with(&binding(&id, name, Some(field), &[]), ACTOR)
            .await
            .unwrap();
        assert_eq!(b.value_field.as_deref(), Some(field));
        assert_eq!(
            s.get_binding(&b.binding_id)
                .await
                .unwrap()
                .value_field
                .as_deref(),
            Some(field)
        );
    }
    let whole = s.bind(&id, "SCORER_JOB", "job-1", "AZURE_JSON").await;
    assert_eq!(whole.value_field, None);

    // The webhook's read path applies the field.
    let bound = s
        .get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-1"), ACTOR)
        .await
        .unwrap();
    assert_eq!(
        as_string(&bound["AZURE_API_KEY"].value),
        "azure-key-1234567890"
    );
    assert_eq!(
        as_string(&bound["AZURE_API_BASE"].value),
        "https://x.openai.azure.com"
    );
    assert_eq!(as_string(&bound["AZURE_API_VERSION"].value), "2024-06-01");
    assert!(matches!(bound["AZURE_JSON"].value, SecretValue::Object(ref m) if m.len() == 3));
    let one = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            "AZURE_API_KEY",
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(as_string(&one), "azure-key-1234567890");

    // At bind time the field must exist, and a string value has none.
    let e = s
        .bind_secret_with(&binding(&id, "AZURE_ORG", Some("org"), &[]), ACTOR)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::InvalidParameter(_)), "{e:?}");
    assert!(
        msg.contains("'org'") && msg.contains("azure") && msg.contains("api_key"),
        "{msg}"
    );
    assert!(!msg.contains("azure-key-1234567890"), "{msg}");
    let sid = create_with(&db, "str", &val("a-plain-string-value"), None).await;
    let e = s
        .bind_secret_with(&binding(&sid, "STR_KEY", Some("api_key"), &[]), ACTOR)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("single string"), "{e}");

    // An update that drops the field fails every read, naming the binding.
    s.update_secret(
        &id,
        &SecretValue::from_json_text(r#"{"api_base":"https://y.example","api_version":"1"}"#)
            .unwrap(),
        ACTOR,
    )
    .await
    .unwrap();
    let e = bound_values_err(s, "a binding whose field is gone fails the whole read").await;
    assert!(
        e.to_string().contains("AZURE_API_KEY") && e.to_string().contains("api_key"),
        "{e}"
    );
    let e = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            "AZURE_API_KEY",
            ACTOR,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("AZURE_API_KEY"), "{e}");
}

async fn service_accounts_are_validated_stored_and_returned(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "k", &val("sk-abcdefghijklmnop"), None).await;
    let sas = vec!["scorer".to_string(), "eval.runner-2".to_string()];
    let b = s
        .bind_secret_with(&binding(&id, "KEY", None, &sas), ACTOR)
        .await
        .unwrap();
    assert_eq!(b.service_accounts, sas);
    assert_eq!(
        s.get_binding(&b.binding_id).await.unwrap().service_accounts,
        sas
    );
    let listed = s.list_bindings(&Default::default()).await.unwrap().items;
    assert_eq!(listed[0].service_accounts, sas);
    let bound = s
        .get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-1"), ACTOR)
        .await
        .unwrap();
    assert_eq!(
        bound["KEY"].service_accounts, sas,
        "the webhook gets them with the value"
    );
    // No list: any ServiceAccount (an empty list, not a list of "").
    let open = s.bind(&id, "SCORER_JOB", "job-1", "OPEN").await;
    assert!(
        s.get_binding(&open.binding_id)
            .await
            .unwrap()
            .service_accounts
            .is_empty()
    );
    for bad in [
        vec!["Scorer".to_string()],
        vec!["a,b".to_string()],
        vec!["x".into(), "x".into()],
    ] {
        let e = s
            .bind_secret_with(&binding(&id, "BAD_SA", None, &bad), ACTOR)
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::InvalidParameter(_))
                && e.to_string().contains("service account"),
            "{e}"
        );
    }
}

async fn reserved_binding_names_are_refused(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "k", &val("https://attacker.example/v1"), None).await;
    for name in [
        "PATH",
        "LD_PRELOAD",
        "PYTHONWARNINGS",
        "BROWSER",
        "https_proxy",
        "HTTPS_PROXY",
        "MLFLOW_SECRETS_TEST_MODE",
        "KUBERNETES_SERVICE_HOST",
    ] {
        let e = s.bind_err(&id, "SCORER_JOB", "job-1", name).await;
        assert!(
            matches!(e, StoreError::InvalidParameter(_)),
            "{name}: {e:?}"
        );
        assert!(
            e.to_string().contains("reserved") && e.to_string().contains(name),
            "{e}"
        );
    }
    assert!(
        s.list_bindings(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    s.bind(&id, "SCORER_JOB", "job-1", "OPENAI_BASE_URL").await;
    // A reserved name written behind the store's back is never injected:
    // the resource read fails, naming it.
    let mut conn = db.raw().await;
    sqlx::query(sqlx::AssertSqlSafe(db.sql(
        "INSERT INTO secrets_bindings (binding_id, secret_id, workspace, resource_type, \
         resource_id, binding_name, created_at) VALUES (?, ?, 'default', 'SCORER_JOB', 'job-1', 'LD_PRELOAD', 0)",
    )))
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(id.clone())
    .execute(&mut conn)
    .await
    .unwrap();
    let e = bound_values_err(s, "a reserved binding name was injected").await;
    assert!(
        e.to_string().contains("LD_PRELOAD") && e.to_string().contains("reserved"),
        "{e}"
    );
}

async fn wrapped_dek(db: &TestDb, id: &str) -> Vec<u8> {
    let mut c = db.raw().await;
    sqlx::query(sqlx::AssertSqlSafe(
        db.sql("SELECT wrapped_dek FROM secrets WHERE secret_id = ?"),
    ))
    .bind(id.to_string())
    .fetch_one(&mut c)
    .await
    .unwrap()
    .get("wrapped_dek")
}

async fn revoke_shreds_the_wrapped_dek(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "leaked", &val("sk-leaked-key-0123456789"), None).await;
    let before = wrapped_dek(&db, &id).await;
    s.revoke_secret(&id, ACTOR).await.unwrap();
    let after = wrapped_dek(&db, &id).await;
    assert_ne!(before, after, "revocation left the wrapped DEK in place");
    assert_eq!(after.len(), crypto::WRAPPED_DEK_LEN);
    // No KEK of the keystore opens it any more, now or after a rotation.
    db.keystore.rotate();
    let ks = db.keystore.load();
    for v in [1, 2] {
        let kek = ks.kek(v).unwrap();
        assert!(
            kek.unwrap_dek(&after).is_err(),
            "KEK v{v} opened a shredded DEK"
        );
    }
    assert!(
        ks.kek(1).unwrap().unwrap_dek(&before).is_ok(),
        "the test's own check works"
    );
    // Not even by decrypting the row as the store would, state aside.
    let mut c = db.raw().await;
    let row = sqlx::query(sqlx::AssertSqlSafe(
        db.sql("SELECT ciphertext, iv, aad_hash FROM secrets WHERE secret_id = ?"),
    ))
    .bind(id.clone())
    .fetch_one(&mut c)
    .await
    .unwrap();
    let aad = Aad::new("default", &id, "leaked");
    let opened = crypto::open(
        ks.kek(1).unwrap(),
        &aad,
        &row.get::<String, _>("aad_hash"),
        &row.get::<Vec<u8>, _>("ciphertext"),
        &row.get::<Vec<u8>, _>("iv"),
        &after,
    );
    assert!(opened.is_err());
    assert_eq!(s.get_secret(&id).await.unwrap().state, SecretState::Revoked);
}

async fn verify_counts_revoked_rows_apart(db: TestDb) {
    let s = &db.store;
    let keep = create_with(&db, "keep", &val("keep-value-0123456789"), None).await;
    for i in 0..3 {
        let id = create_with(
            &db,
            &format!("gone{i}"),
            &val("gone-value-0123456789"),
            None,
        )
        .await;
        s.revoke_secret(&id, ACTOR).await.unwrap();
    }
    let r = s.verify(ACTOR, &|_| {}).await.unwrap();
    assert_eq!(
        (r.total, r.ok, r.revoked, r.failed.len()),
        (4, 1, 3, 0),
        "{r:?}"
    );
    assert_eq!(as_string(&s.value(&keep).await), "keep-value-0123456789");
    let audit = s.all_audit().await;
    let v = audit.iter().rev().find(|e| e.action == "VERIFY").unwrap();
    assert_eq!(v.outcome, "SUCCESS");
    assert!(v.detail.as_deref().unwrap().contains("revoked=3"), "{v:?}");
}

async fn rewrap_moves_revoked_rows_without_failing(db: TestDb) {
    let s = &db.store;
    let active = create_with(&db, "a", &val("active-value-0123456"), None).await;
    let gone = create_with(&db, "g", &val("gone-value-01234567"), None).await;
    s.revoke_secret(&gone, ACTOR).await.unwrap();
    db.keystore.rotate();
    s.keys().replace(db.keystore.load());
    let report = s
        .rewrap(mlflow_secrets::store::RewrapTarget::All, 10, ACTOR, &|_| {})
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.rewrapped, 2);
    // Nothing is left on v1, so v1 can be retired; the shredded row stays shredded.
    assert_eq!(
        s.kek_version_counts()
            .await
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![2]
    );
    assert!(
        db.keystore
            .load()
            .kek(2)
            .unwrap()
            .unwrap_dek(&wrapped_dek(&db, &gone).await)
            .is_err()
    );
    assert_eq!(as_string(&s.value(&active).await), "active-value-0123456");
}

/// What a database writer can do without any key: delete rows, then
/// renumber and re-hash the rest with the public algorithm, and move the
/// head row, so that the chain is consistent again.
async fn rewrite_chain_without(db: &TestDb, action: &str) {
    let mut conn = db.raw().await;
    drop_audit_triggers(db, &mut conn).await;
    db.exec(
        &mut conn,
        "DELETE FROM secrets_audit_log WHERE action = ?",
        &[action],
    )
    .await;
    let rows = db.store.all_audit().await;
    let mut prev = mlflow_secrets::store::audit::GENESIS_HASH.to_string();
    for (i, e) in rows.iter().enumerate() {
        let mut rewritten = e.clone();
        rewritten.seq = i as i64 + 1;
        rewritten.prev_hash = prev.clone();
        let hash = entry_hash(&rewritten);
        sqlx::query(sqlx::AssertSqlSafe(db.sql(
            "UPDATE secrets_audit_log SET seq = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
        )))
        .bind(rewritten.seq)
        .bind(prev.clone())
        .bind(hash.clone())
        .bind(e.seq)
        .execute(&mut conn)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query(sqlx::AssertSqlSafe(db.sql(
        "UPDATE secrets_audit_head SET seq = ?, last_hash = ? WHERE id = 1",
    )))
    .bind(rows.len() as i64)
    .bind(prev)
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn audit_verify_head_detects_a_rewritten_chain(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "k", &val("value-0123456789abc"), None).await;
    s.bind(&id, "SCORER_JOB", "job-1", "KEY").await;
    s.get_all_bound_values(
        ResourceRef::new("default", "SCORER_JOB", "job-1"),
        "webhook:evil",
    )
    .await
    .unwrap();
    create_with(&db, "k2", &val("value-0123456789abc"), None).await;
    let head = s.audit_head().await.unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(
        head.to_string(),
        format!("audit head seq=4 hash={}", head.hash)
    );
    assert!(
        s.audit_verify_head(head.clone()).await.unwrap().ok,
        "the untouched chain reaches its head"
    );
    // The log grows after the export: still fine.
    create_with(&db, "k3", &val("value-0123456789abc"), None).await;
    assert!(s.audit_verify_head(head.clone()).await.unwrap().ok);
    // An earlier export (any row of the chain) works the same way.
    let first = s.list_audit(&AuditFilter::default()).await.unwrap()[0].clone();
    let early = ExportedHead {
        seq: first.seq,
        hash: first.row_hash.clone(),
    };
    assert!(s.audit_verify_head(early).await.unwrap().ok);

    // Erase the value read and re-hash: the chain alone verifies ...
    rewrite_chain_without(&db, "READ_RESOURCE_VALUES").await;
    let plain = s.audit_verify().await.unwrap();
    assert!(
        plain.ok,
        "the rewritten chain should pass on its own: {plain:?}"
    );
    // ... but not against the exported head.
    let r = s.audit_verify_head(head.clone()).await.unwrap();
    assert!(!r.ok, "a rewritten chain passed --head");
    assert!(r.reason.as_deref().unwrap().contains("rewritten"), "{r:?}");
    // A head beyond the end of a truncated log fails too.
    let far = ExportedHead {
        seq: 99,
        hash: head.hash,
    };
    let r = s.audit_verify_head(far).await.unwrap();
    assert!(
        !r.ok && r.reason.as_deref().unwrap().contains("never reaches"),
        "{r:?}"
    );
}

async fn audit_head_is_exported_on_a_cadence(db: TestDb) {
    let s = &db.store;
    let seen: Arc<Mutex<Vec<ExportedHead>>> = Arc::default();
    let sink = seen.clone();
    let cadence = HeadCadence {
        every_rows: 3,
        every: Duration::from_secs(3600),
        poll: Duration::from_millis(20),
    };
    let task = spawn_head_export(s.clone(), cadence, move |h| {
        sink.lock().unwrap().push(h.clone())
    });
    let wait_for = |n: usize| {
        let seen = seen.clone();
        async move {
            for _ in 0..500 {
                if seen.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "expected {n} exported heads, got {:?}",
                seen.lock().unwrap()
            );
        }
    };
    wait_for(1).await;
    assert_eq!(seen.lock().unwrap()[0].seq, 0, "one export at start");
    for i in 0..2 {
        create_with(&db, &format!("a{i}"), &val("value-0123456789abc"), None).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "two rows are below the cadence"
    );
    create_with(&db, "a2", &val("value-0123456789abc"), None).await;
    wait_for(2).await;
    let last = seen.lock().unwrap()[1].clone();
    assert_eq!(last, s.audit_head().await.unwrap());
    assert!(s.audit_verify_head(last).await.unwrap().ok);
    task.abort();
}

async fn driver_text_never_reaches_the_caller(db: TestDb) {
    let s = &db.store;
    let id = create_with(&db, "k", &val("value-0123456789abc"), None).await;
    let mut conn = db.raw().await;
    sqlx::raw_sql("ALTER TABLE secrets_bindings RENAME TO gone_bindings")
        .execute(&mut conn)
        .await
        .unwrap();
    let errors = [
        s.list_bindings(&Default::default()).await.unwrap_err(),
        s.bind_err(&id, "SCORER_JOB", "job-1", "KEY").await,
        s.get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-1"), ACTOR)
            .await
            .err()
            .unwrap(),
    ];
    for e in &errors {
        let text = e.to_string();
        assert!(text.contains("incident "), "no incident id: {text}");
        for driver in [
            "secrets_bindings",
            "no such table",
            "does not exist",
            "doesn't exist",
            "relation",
            "1146",
            "42P01",
        ] {
            assert!(
                !text.contains(driver),
                "driver text {driver:?} reached the caller: {text}"
            );
        }
        assert_eq!(e.error_code(), "INTERNAL_ERROR");
    }
}

async fn object_masks_reveal_at_most_eight_characters(db: TestDb) {
    let fields: Vec<String> = (0..10)
        .map(|i| {
            let v: String = (0..32u8)
                .map(|j| char::from(b'a' + (j + i * 3) % 26))
                .collect();
            format!("\"f{i}\":\"{v}\"")
        })
        .collect();
    let value = SecretValue::from_json_text(&format!("{{{}}}", fields.join(","))).unwrap();
    let secret = db.store.create("ten-fields", &value, false).await;
    let stored = db
        .store
        .get_secret(&secret.secret_id)
        .await
        .unwrap()
        .masked_value;
    let revealed: usize = stored
        .split(", ")
        .map(|part| part.split_once(": ").expect("key: mask").1)
        .map(|m| m.chars().filter(|c| c.is_ascii_lowercase()).count())
        .sum();
    assert!(revealed <= 8, "{revealed} characters revealed: {stored}");
}

/// The `READ_RESOURCE_VALUES` rows of the audit log, oldest first.
async fn resource_reads(db: &TestDb) -> Vec<mlflow_secrets::model::AuditEntry> {
    db.store
        .all_audit()
        .await
        .into_iter()
        .filter(|e| e.action == "READ_RESOURCE_VALUES")
        .collect()
}

/// The webhook decides a pod's consent on the rows' metadata before
/// anything is decrypted (docs/design.md §8): a refusing choice decrypts, counts
/// and audits nothing, and a partial choice decrypts and names only the
/// bindings it chose.
async fn chosen_bound_values_decrypt_only_what_was_chosen(db: TestDb) {
    let a = create_with(&db, "chosen-a", &val("sk-aaaaaaaaaaaaaaaa"), None).await;
    let b = create_with(&db, "chosen-b", &val("sk-bbbbbbbbbbbbbbbb"), None).await;
    let sas = vec!["scorer".to_string()];
    db.store
        .bind_secret_with(&binding(&a, "A_KEY", None, &[]), ACTOR)
        .await
        .unwrap();
    db.store
        .bind_secret_with(&binding(&b, "B_KEY", None, &sas), ACTOR)
        .await
        .unwrap();
    let before = resource_reads(&db).await.len();

    let mut seen = Vec::new();
    let refused = db
        .store
        .get_chosen_bound_values(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            ACTOR,
            |m| {
                seen = m
                    .iter()
                    .map(|b| (b.binding_name.to_string(), b.service_accounts.to_vec()))
                    .collect();
                Err::<BTreeSet<String>, &str>("the pod does not consent")
            },
        )
        .await
        .unwrap();
    match refused {
        Err(e) => assert_eq!(e, "the pod does not consent"),
        Ok(m) => panic!("a refused choice returned {} values", m.len()),
    }
    seen.sort(); // the rows come in no promised order
    assert_eq!(
        seen,
        vec![("A_KEY".to_string(), vec![]), ("B_KEY".to_string(), sas)],
        "the choice sees every binding's name and ServiceAccounts"
    );
    assert_eq!(
        resource_reads(&db).await.len(),
        before,
        "a refused choice is no value read"
    );

    let got = db
        .store
        .get_chosen_bound_values(
            ResourceRef::new("default", "SCORER_JOB", "job-1"),
            ACTOR,
            |_| Ok::<_, ()>(BTreeSet::from(["A_KEY".to_string()])),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["A_KEY"]);
    assert_eq!(as_string(&got["A_KEY"].value), "sk-aaaaaaaaaaaaaaaa");
    let reads = resource_reads(&db).await;
    assert_eq!(reads.len(), before + 1);
    let detail = reads.last().unwrap().detail.clone().unwrap_or_default();
    assert!(detail.contains(&a), "{detail}");
    assert!(
        !detail.contains(&b) && !detail.contains("B_KEY"),
        "an unchosen binding is neither decrypted nor named: {detail}"
    );
}

/// The error of reading every value bound to `SCORER_JOB/job-1`, which
/// `why` says must fail.
async fn bound_values_err(s: &SqlStore, why: &str) -> StoreError {
    s.get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-1"), ACTOR)
        .await
        .err()
        .expect(why)
}
