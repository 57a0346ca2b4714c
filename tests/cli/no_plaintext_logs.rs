//! docs/design.md §10 rule 2: no plaintext in logs. Captures everything the store,
//! sqlx and the crypto layer log at TRACE level while secrets are created,
//! updated, bound, read, verified and rewrapped, on every configured
//! backend, and searches it for the values.

use mlflow_secrets::model::ResourceRef;
use mlflow_secrets::store::{RewrapTarget, SecretsStore};
use mlflow_secrets::value::SecretValue;
use testkit::{Backend, CapturedLogs, TestDb};

const CANARIES: [&str; 3] = [
    "sk-LOG-CANARY-1d9e8f7a6b5c",
    "LOG-CANARY-two-0a1b2c3d4e",
    "LOG-CANARY-dict-9f8e7d6c5b",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_values() {
    let logs = CapturedLogs::install_global_trace();

    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mysql] {
        let Some(db) = TestDb::new(backend).await else {
            continue;
        };
        let s = &db.store;
        let v = |x: &str| SecretValue::from_string(x.to_string()).unwrap();
        let a = s
            .create_secret("default", "a", &v(CANARIES[0]), false, "t")
            .await
            .unwrap();
        s.update_secret(&a.secret_id, &v(CANARIES[1]), "t")
            .await
            .unwrap();
        let obj = SecretValue::from_json_text(&format!(r#"{{"k":"{}"}}"#, CANARIES[2])).unwrap();
        let b = s
            .create_secret("default", "b", &obj, true, "t")
            .await
            .unwrap();
        s.bind_secret(&b.secret_id, "SCORER_JOB", "job-1", "K", "t")
            .await
            .unwrap();
        s.get_all_secrets_for_resource(ResourceRef::new("default", "SCORER_JOB", "job-1"), "t")
            .await
            .unwrap();
        s.get_secret_value(&a.secret_id, "t").await.unwrap();
        // Failures log too.
        let _ = s
            .create_secret("default", "a", &v(CANARIES[0]), false, "t")
            .await;
        s.revoke_secret(&a.secret_id, "t").await.unwrap();
        let _ = s.get_secret_value(&a.secret_id, "t").await;
        let _ = s.update_secret(&a.secret_id, &v(CANARIES[1]), "t").await;
        db.keystore.rotate();
        s.keys().replace(db.keystore.load());
        s.rewrap(RewrapTarget::All, 1, "t", &|_| {}).await.unwrap();
        s.verify("t", &|_| {}).await.unwrap();
    }

    let text = logs.text();
    // The capture works: sqlx logs every statement at debug level.
    assert!(text.contains("INSERT INTO secrets"), "nothing was captured");
    for c in CANARIES {
        assert!(!text.contains(c), "a secret value reached the logs");
    }
}
