//! `create_secrets_with`, the batched creates of `mlflow import`: one
//! result per item in order, every secret whole with its own audit row, and
//! a batch that fails as a whole (a name already taken) retried one secret
//! per transaction so that only the bad item fails.

use mlflow_secrets::model::NewSecret;
use mlflow_secrets::store::{AuditFilter, SecretsStore, StoreError};
use mlflow_secrets::value::SecretValue;
use testkit::{TestDb, contract, val};

use crate::support::{ACTOR, StoreExt as _};

contract!(
    batches_write_each_secret_with_its_audit_row,
    a_taken_or_invalid_name_fails_only_that_item,
);

fn items<'a>(
    names: &'a [String],
    values: &'a [SecretValue],
) -> Vec<(NewSecret<'a>, &'a SecretValue)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let new = NewSecret {
                workspace: "default",
                secret_name: n,
                is_shared: true,
                provider: Some("openai"),
            };
            (new, v)
        })
        .collect()
}

/// The audit rows of `secret_id` as (action, outcome).
async fn audit_of(db: &TestDb, secret_id: &str) -> Vec<(String, String)> {
    let log = db
        .store
        .list_audit(&AuditFilter {
            secret_id: Some(secret_id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    log.into_iter().map(|e| (e.action, e.outcome)).collect()
}

async fn batches_write_each_secret_with_its_audit_row(db: TestDb) {
    let s = &db.store;
    // More than one transaction's worth (256).
    let n = 300;
    let names: Vec<String> = (0..n).map(|i| format!("batch-{i:04}")).collect();
    let values: Vec<SecretValue> = (0..n)
        .map(|i| val(&format!("sk-batch-{i:04}-abcdefghijklmnop")))
        .collect();
    let created = s.create_secrets_with(&items(&names, &values), ACTOR).await;
    assert_eq!(created.len(), n);
    for (i, r) in created.iter().enumerate() {
        let secret = r.as_ref().unwrap();
        assert_eq!(secret.secret_name, names[i]);
        assert_eq!(secret.provider.as_deref(), Some("openai"));
        assert_eq!(s.get_secret(&secret.secret_id).await.unwrap(), *secret);
    }
    for i in [0, 255, 256, n - 1] {
        let id = &created[i].as_ref().unwrap().secret_id;
        let got = s.get_secret_value(id, ACTOR).await.unwrap();
        assert_eq!(got.to_plaintext(), values[i].to_plaintext(), "{}", names[i]);
        let log = audit_of(&db, id).await;
        assert_eq!(log[0], ("CREATE".into(), "SUCCESS".into()), "{log:?}");
    }
    assert!(s.audit_verify().await.unwrap().ok);
}

async fn a_taken_or_invalid_name_fails_only_that_item(db: TestDb) {
    let s = &db.store;
    let taken = s
        .create("batch-0002", &val("sk-already-here-0123456789"), true)
        .await;
    let mut names: Vec<String> = (0..5).map(|i| format!("batch-{i:04}")).collect();
    names.push("not a valid name!".into());
    let values: Vec<SecretValue> = (0..6)
        .map(|i| val(&format!("sk-batch-{i:04}-abcdefghijklmnop")))
        .collect();
    let created = s.create_secrets_with(&items(&names, &values), ACTOR).await;
    assert_eq!(created.len(), 6);
    for (i, r) in created.iter().enumerate() {
        match (i, r) {
            (2, Err(StoreError::AlreadyExists(m))) => assert!(m.contains("batch-0002"), "{m}"),
            (5, Err(StoreError::InvalidParameter(_))) => {}
            (2 | 5, other) => panic!("item {i}: {other:?}"),
            (_, Ok(secret)) => assert_eq!(secret.secret_name, names[i]),
            (_, Err(e)) => panic!("item {i}: {e}"),
        }
    }
    // The taken name kept its own value; the others hold theirs.
    let kept = s.get_secret_value(&taken.secret_id, ACTOR).await.unwrap();
    assert_eq!(
        kept.to_plaintext(),
        val("sk-already-here-0123456789").to_plaintext()
    );
    let fourth = created[4].as_ref().unwrap();
    let got = s.get_secret_value(&fourth.secret_id, ACTOR).await.unwrap();
    assert_eq!(got.to_plaintext(), values[4].to_plaintext());
    // The failed creates are audited as failures.
    let failed = s
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "CREATE" && e.outcome != "SUCCESS")
        .count();
    assert_eq!(failed, 2);
    assert!(s.audit_verify().await.unwrap().ok);
}
