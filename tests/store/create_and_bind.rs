//! `create_and_bind_secret`, the web UI's "create and bind": the secret,
//! its binding and both audit rows commit in one transaction or not at
//! all. Each failure below is one the store finds *inside* that
//! transaction, after the secret's INSERT (a binding name the resource
//! already has, caught by `unique_binding_per_resource`; a `value_field`
//! the new value lacks, found by decrypting the new row), so a test that
//! passed with a create and a separate bind would leave a secret behind.

use mlflow_secrets::model::{
    AuditEntry, BindingFilter, BindingSpec, NewSecret, ResourceRef, Secret, SecretBinding,
};
use mlflow_secrets::store::{AuditFilter, SecretsStore, StoreError};
use mlflow_secrets::value::SecretValue;
use testkit::{TestDb, as_string, contract, val};

use crate::support::{ACTOR, StoreExt as _};

contract!(
    create_and_bind_commits_both_rows_and_both_audit_rows,
    a_bind_that_fails_inside_the_transaction_leaves_nothing,
    a_create_that_fails_binds_nothing,
);

fn new_secret(name: &str) -> NewSecret<'_> {
    NewSecret {
        workspace: "default",
        secret_name: name,
        is_shared: false,
        provider: Some("azure"),
    }
}

fn spec<'a>(resource_id: &'a str, name: &'a str, field: Option<&'a str>) -> BindingSpec<'a> {
    BindingSpec {
        resource_type: "SCORER_JOB",
        resource_id,
        binding_name: name,
        value_field: field,
        service_accounts: &[],
    }
}

fn azure() -> SecretValue {
    SecretValue::from_json_text(r#"{"api_key":"azure-key-1234567890","api_base":"https://x"}"#)
        .unwrap()
}

/// The audit rows after `seq`, oldest first.
async fn audit_after(db: &TestDb, seq: i64) -> Vec<AuditEntry> {
    db.store
        .list_audit(&AuditFilter {
            after_seq: Some(seq),
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn last_seq(db: &TestDb) -> i64 {
    db.store.all_audit().await.last().map_or(0, |e| e.seq)
}

/// Create `name` bound to `job` as AZ_KEY, the `api_key` field.
async fn made(db: &TestDb, name: &str, job: &str) -> (Secret, SecretBinding) {
    db.store
        .create_and_bind_secret(
            &new_secret(name),
            &azure(),
            &spec(job, "AZ_KEY", Some("api_key")),
            ACTOR,
        )
        .await
        .unwrap()
}

/// The rows a plain create and bind write and the rows of one
/// create-and-bind, compared field by field (ids aside): the same rows.
async fn create_and_bind_commits_both_rows_and_both_audit_rows(db: TestDb) {
    let s = &db.store;
    let before = last_seq(&db).await;
    let plain = s
        .create_secret_with(&new_secret("plain"), &azure(), ACTOR)
        .await
        .unwrap();
    let plain_b = s
        .bind_secret_with(
            &spec("job-1", "AZ_KEY", Some("api_key")).for_secret(&plain.secret_id),
            ACTOR,
        )
        .await
        .unwrap();
    let mid = last_seq(&db).await;
    let (secret, binding) = made(&db, "both", "job-2").await;
    // Both rows exist and read back as returned.
    assert_eq!(s.get_secret(&secret.secret_id).await.unwrap(), secret);
    assert_eq!(s.get_binding(&binding.binding_id).await.unwrap(), binding);
    assert_eq!(binding.secret_id, secret.secret_id);
    assert_eq!(binding.value_field.as_deref(), Some("api_key"));
    let got = s
        .get_secret_for_resource(
            ResourceRef::new("default", "SCORER_JOB", "job-2"),
            "AZ_KEY",
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(as_string(&got), "azure-key-1234567890");

    // The same audit rows as create + bind, in the same order.
    let separate = audit_after(&db, before).await;
    let separate: Vec<_> = separate.iter().filter(|e| e.seq <= mid).collect();
    let together = audit_after(&db, mid).await;
    let together: Vec<_> = together.iter().take(2).collect();
    assert_eq!(separate.len(), 2, "{separate:?}");
    assert_eq!(together.len(), 2, "{together:?}");
    assert_eq!(together[1].seq, together[0].seq + 1, "one after the other");
    for (a, b) in separate.iter().zip(&together) {
        let norm = |e: &AuditEntry, id: &str, bid: &str, name: &str, res: &str| {
            let swap = |t: &str| {
                t.replace(id, "<id>")
                    .replace(bid, "<bid>")
                    .replace(name, "<name>")
                    .replace(res, "<res>")
            };
            (
                e.action.clone(),
                e.outcome.clone(),
                e.principal.clone(),
                e.workspace.clone(),
                e.secret_id.as_deref().map(swap),
                e.secret_name.as_deref().map(swap),
                e.resource.as_deref().map(swap),
                e.detail.as_deref().map(swap),
            )
        };
        assert_eq!(
            norm(a, &plain.secret_id, &plain_b.binding_id, "plain", "job-1"),
            norm(b, &secret.secret_id, &binding.binding_id, "both", "job-2"),
        );
    }
    assert_eq!(
        (together[0].action.as_str(), together[1].action.as_str()),
        ("CREATE", "BIND")
    );
    assert!(together.iter().all(|e| e.outcome == "SUCCESS"));
    assert!(s.audit_verify().await.unwrap().ok);
}

/// No secret named `name` and no binding on `job`'s resource but `kept`.
async fn nothing_left(db: &TestDb, name: &str, job: &str, kept: usize) {
    let s = &db.store;
    assert!(matches!(
        s.get_secret_by_name("default", name).await,
        Err(StoreError::NotFound(_))
    ));
    let on_job = s
        .bindings(&BindingFilter {
            resource_id: Some(job.into()),
            ..Default::default()
        })
        .await;
    assert_eq!(on_job.items.len(), kept, "{:?}", on_job.items);
}

/// The rows since `seq` are one failed CREATE naming the binding, with no
/// secret id (none was made), and nothing else.
async fn only_a_failed_create(db: &TestDb, seq: i64, name: &str, error: &str) {
    let rows = audit_after(db, seq).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r.action, "CREATE");
    assert_ne!(r.outcome, "SUCCESS");
    assert_eq!(r.secret_id, None);
    assert_eq!(r.secret_name.as_deref(), Some(name));
    let d = r.detail.as_deref().unwrap_or("");
    assert!(d.contains("bind=SCORER_JOB/") && d.contains(error), "{d}");
}

/// A create-and-bind of `name` with `binding` that fails: its error,
/// once the audit rows since the call are checked to be one failed CREATE
/// whose detail contains `error`.
async fn refused(db: &TestDb, name: &str, binding: BindingSpec<'_>, error: &str) -> StoreError {
    let seq = last_seq(db).await;
    let err = db
        .store
        .create_and_bind_secret(&new_secret(name), &azure(), &binding, ACTOR)
        .await
        .unwrap_err();
    only_a_failed_create(db, seq, name, error).await;
    err
}

async fn a_bind_that_fails_inside_the_transaction_leaves_nothing(db: TestDb) {
    let s = &db.store;
    // Another secret already holds AZ_KEY on job-1: the new binding's
    // INSERT hits unique_binding_per_resource after the secret's INSERT.
    let other = s
        .create("other", &val("other-value-1234567890"), true)
        .await;
    s.bind(&other.secret_id, "SCORER_JOB", "job-1", "AZ_KEY")
        .await;
    let taken = spec("job-1", "AZ_KEY", None);
    let err = refused(&db, "new", taken, "already exists").await;
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    assert!(
        err.to_string().contains("binding 'AZ_KEY' already exists"),
        "{err}"
    );
    nothing_left(&db, "new", "job-1", 1).await;

    // A field the new value does not have: found by opening the new row.
    let err = refused(&db, "new", spec("job-2", "AZ_ORG", Some("org")), "'org'").await;
    assert!(matches!(err, StoreError::InvalidParameter(_)), "{err}");
    nothing_left(&db, "new", "job-2", 0).await;

    // An invalid resource id: refused before the transaction.
    let err = refused(&db, "new", spec("bad id!", "AZ_KEY", None), "error:").await;
    assert!(matches!(err, StoreError::InvalidParameter(_)), "{err}");
    nothing_left(&db, "new", "job-2", 0).await;

    // Nothing of the failures is in the way: the same name binds now.
    let (secret, b) = made(&db, "new", "job-2").await;
    assert_eq!(b.secret_id, secret.secret_id);
    nothing_left(&db, "absent", "job-2", 1).await;
    assert!(s.audit_verify().await.unwrap().ok);
}

async fn a_create_that_fails_binds_nothing(db: TestDb) {
    let s = &db.store;
    let taken = s
        .create("taken", &val("taken-value-1234567890"), false)
        .await;
    let err = refused(
        &db,
        "taken",
        spec("job-3", "AZ_KEY", None),
        "already exists",
    )
    .await;
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    nothing_left(&db, "absent", "job-3", 0).await;
    // The existing secret is untouched and still unbound.
    assert_eq!(s.get_secret(&taken.secret_id).await.unwrap(), taken);
    let of_taken = s
        .bindings(&BindingFilter {
            secret_id: Some(taken.secret_id.clone()),
            ..Default::default()
        })
        .await;
    assert!(of_taken.items.is_empty());
}
