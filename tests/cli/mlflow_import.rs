//! `mlflow import` against gateway secrets written by real MLflow 3.17.2
//! (its own `SqlAlchemyStore.create_gateway_secret`) into SQLite and
//! PostgreSQL tracking databases (docs/design.md §11, §13): values match
//! what MLflow's own decrypt path reads, reruns are idempotent, `--update`
//! and `--dry-run` behave, a wrong passphrase writes nothing, and MLflow's
//! database is never changed.

use mlflow_secrets::model::SecretFilter;
use mlflow_secrets::store::SecretsStore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::mlflow::{MLFLOW_PASS, Ours, mlflow_decrypt_all, mlflow_seed, run};

const OPENAI: &str = "sk-proj-import-test-0123456789abcdef";
const AZURE_KEY: &str = "azure-import-key-0123456789";
const UNICODE_VALUE: &str = "clé-ünïcödé-✓-値";

fn specs() -> Value {
    json!([
        {"name": "openai-key", "value": {"api_key": OPENAI}, "provider": "openai"},
        {"name": "azure-creds", "value": {
            "api_key": AZURE_KEY,
            "api_base": "https://example.openai.azure.com",
            "api_version": "2024-06-01"
        }, "provider": "azure"},
        {"name": "anthropic-key", "value": {"api_key": UNICODE_VALUE}, "provider": "anthropic"},
        // A non-ASCII name imports: its UTF-8 AAD is MLflow's.
        {"name": "clé-ü", "value": {"api_key": "non-ascii-name-value-42"}, "provider": "openai"},
        // MLflow takes any name; ours have no whitespace
        // (src/store/validate.rs): this one decrypts and then fails on its
        // name alone.
        {"name": "has space", "value": {"api_key": "spaced-name-value-43"}, "provider": "openai"}
    ])
}

/// The names that import, in the report's order (byte order).
const IMPORTED: [&str; 4] = ["anthropic-key", "azure-creds", "clé-ü", "openai-key"];

const FORBIDDEN: &[&str] = &[
    OPENAI,
    AZURE_KEY,
    UNICODE_VALUE,
    "non-ascii-name-value-42",
    "spaced-name-value-43",
    MLFLOW_PASS,
];

fn sha256_file(p: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn import(ours: &Ours, from: &str, extra: &[&str]) -> testkit::mlflow::Run {
    let mut c = ours.cmd();
    c.env("MLFLOW_CRYPTO_KEK_PASSPHRASE", MLFLOW_PASS)
        .args(["mlflow", "import", "--from", from, "-o", "json"])
        .args(extra);
    run(c, FORBIDDEN)
}

fn names(report: &Value, group: &str) -> Vec<String> {
    report[group]
        .as_array()
        .unwrap_or_else(|| panic!("no {group} in report"))
        .iter()
        .map(|e| e["secret_name"].as_str().unwrap().to_string())
        .collect()
}

async fn count_ours(ours: &Ours) -> usize {
    ours.store()
        .await
        .list_secrets(&SecretFilter::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Every value of ours equals what MLflow's own code decrypts.
async fn assert_values_match(ours: &Ours, mlflow_uri: &str, expect: &[&str]) {
    let theirs = mlflow_decrypt_all(mlflow_uri);
    for name in expect {
        let ours_v = ours.value_json(name).await;
        assert!(
            ours_v == theirs[*name],
            "our value of '{name}' differs from MLflow's"
        );
    }
}

/// `run` hands a scorer exactly what MLflow wrote: every imported secret
/// bound to one resource (the Azure credential as three field bindings, as
/// a judge reads it), and the child writes its environment to a file with
/// masking off; each variable equals the field MLflow's own code decrypts.
fn run_delivers_what_mlflow_wrote(ours: &Ours, mlflow_uri: &str) {
    let theirs = mlflow_decrypt_all(mlflow_uri);
    let bindings: [(&str, &str, Option<&str>); 6] = [
        ("openai-key", "OPENAI_API_KEY", Some("api_key")),
        ("anthropic-key", "ANTHROPIC_API_KEY", Some("api_key")),
        ("clé-ü", "OTHER_OPENAI_KEY", Some("api_key")),
        ("azure-creds", "AZURE_API_KEY", Some("api_key")),
        ("azure-creds", "AZURE_API_BASE", Some("api_base")),
        ("azure-creds", "AZURE_API_VERSION", Some("api_version")),
    ];
    for (secret, env, field) in bindings {
        let mut c = ours.cmd();
        c.args(["bind", secret, "--resource-type", "SCORER_JOB"])
            .args(["--resource-id", "judge-1", "--name", env]);
        if let Some(f) = field {
            c.args(["--field", f]);
        }
        let r = run(c, FORBIDDEN);
        assert_eq!(r.code, 0, "bind {secret} as {env}: {}", r.stderr);
    }
    let out = ours.tmp.path().join("env.json");
    let script = "import json, os, sys; json.dump({k: os.environ[k] for k in sys.argv[2:]}, open(sys.argv[1], 'w'))";
    let mut c = ours.cmd();
    c.args(["run", "--resource-id", "judge-1", "--mask", "never", "--"])
        .args(["python3", "-c", script])
        .arg(&out)
        .args(bindings.map(|(_, env, _)| env));
    let r = run(c, FORBIDDEN);
    assert_eq!(r.code, 0, "run: {}", r.stderr);
    let got: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).unwrap();
    for (secret, env, field) in bindings {
        let want = &theirs[secret][field.unwrap()];
        assert!(
            got[env] == *want,
            "{env} under run differs from MLflow's {secret}.{}",
            field.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_is_exact_idempotent_and_read_only() {
    testkit::mlflow_skip_if_off!();
    let ours = Ours::new();
    let (uri, path) = testkit::mlflow::mlflow_sqlite(ours.tmp.path());
    let seeded = mlflow_seed(&uri, &specs());
    assert_eq!(seeded.len(), 5);
    let before = sha256_file(&path);

    // --dry-run decides everything and writes nothing.
    let r = import(&ours, &uri, &["--dry-run"]);
    assert_eq!(r.code, 1, "the name with a space fails: {}", r.stderr);
    let rep = r.json();
    assert_eq!(rep["dry_run"], json!(true));
    assert_eq!(names(&rep, "imported"), IMPORTED);
    assert_eq!(names(&rep, "failed"), ["has space"]);
    let why = rep["failed"][0]["reason"].as_str().unwrap();
    assert!(why.contains("secret_name"), "{why}");
    assert_eq!(count_ours(&ours).await, 0, "a dry run writes nothing");

    // The real import: same workspace, name and provider; shared; values
    // exactly MLflow's.
    let r = import(&ours, &uri, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = r.json();
    assert_eq!(names(&rep, "imported"), IMPORTED);
    for e in rep["imported"].as_array().unwrap() {
        let mlflow_id = e["mlflow_secret_id"].as_str().unwrap();
        let name = e["secret_name"].as_str().unwrap();
        assert!(seeded.iter().any(|(n, id)| n == name && id == mlflow_id));
    }
    let store = ours.store().await;
    let azure = store
        .get_secret_by_name("default", "azure-creds")
        .await
        .unwrap();
    assert!(azure.is_shared);
    assert_eq!(azure.provider.as_deref(), Some("azure"));
    assert_eq!(rep["imported"][1]["secret_id"], json!(azure.secret_id));
    assert_values_match(&ours, &uri, &IMPORTED).await;
    run_delivers_what_mlflow_wrote(&ours, &uri);

    // A rerun skips every value it already holds.
    let rep = import(&ours, &uri, &[]).json();
    assert_eq!(names(&rep, "skipped"), IMPORTED);
    assert!(names(&rep, "imported").is_empty() && names(&rep, "updated").is_empty());

    // Our value changes: skipped without --update, reported with --update
    // --dry-run, replaced with --update.
    let mut c = ours.cmd();
    c.args(["update", "openai-key", "--value-stdin"])
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"sk-changed-on-our-side-999")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let rep = import(&ours, &uri, &[]).json();
    let differ = rep["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["secret_name"] == "openai-key")
        .unwrap();
    assert!(differ["reason"].as_str().unwrap().contains("--update"));
    let rep = import(&ours, &uri, &["--update", "--dry-run"]).json();
    assert_eq!(names(&rep, "updated"), ["openai-key"]);
    assert_eq!(
        ours.value_json("openai-key").await,
        json!({"value": "sk-changed-on-our-side-999"}),
        "a dry run changes nothing"
    );
    let rep = import(&ours, &uri, &["--update"]).json();
    assert_eq!(names(&rep, "updated"), ["openai-key"]);
    assert_values_match(&ours, &uri, &["openai-key"]).await;

    assert_eq!(sha256_file(&path), before, "MLflow's database is only read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_fails_before_any_write() {
    testkit::mlflow_skip_if_off!();
    let ours = Ours::new();
    let (uri, _) = testkit::mlflow::mlflow_sqlite(ours.tmp.path());
    mlflow_seed(&uri, &specs());
    let mut c = ours.cmd();
    c.args(["create", "already-here", "--value", "existing-value-123456"]);
    assert_eq!(run(c, &[]).code, 0);
    assert_eq!(count_ours(&ours).await, 1);

    let mut c = ours.cmd();
    c.env("MLFLOW_CRYPTO_KEK_PASSPHRASE", "not the MLflow passphrase")
        .args(["mlflow", "import", "--from", &uri, "--update"]);
    let r = run(c, FORBIDDEN);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("wrong MLflow passphrase: 5 of 5 gateway secrets with KEK version 1"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert_eq!(count_ours(&ours).await, 1, "no row was written");

    // No passphrase at all: a clear message, nothing written.
    let mut c = ours.cmd();
    c.args(["mlflow", "import", "--from", &uri]);
    let r = run(c, FORBIDDEN);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("MLFLOW_CRYPTO_KEK_PASSPHRASE"),
        "{}",
        r.stderr
    );

    // The passphrase from a file (one trailing newline stripped) works.
    let pf = ours.tmp.path().join("mlflow-pass");
    std::fs::write(&pf, format!("{MLFLOW_PASS}\n")).unwrap();
    let mut c = ours.cmd();
    c.args(["mlflow", "import", "--from", &uri, "-o", "json"])
        .arg("--mlflow-passphrase-file")
        .arg(&pf);
    let rep = run(c, FORBIDDEN).json();
    assert_eq!(names(&rep, "imported").len(), 4);
    assert_eq!(count_ours(&ours).await, 5);
}

/// Import from MLflow's store on a database server (`uri` as SQLAlchemy
/// names it; `sqlx_url` the same database for our snapshot): every value
/// matches what MLflow's own code decrypts, a rerun skips them all, and
/// MLflow's rows are unchanged.
async fn server_import_matches_and_leaves_mlflow_unchanged(uri: String, sqlx_url: String) {
    let ours = Ours::new();
    mlflow_seed(&uri, &specs());
    let snapshot = || async {
        use sqlx::{Connection, Row};
        let mut c = sqlx::AnyConnection::connect(&sqlx_url).await.unwrap();
        let rows = sqlx::query(
            "SELECT secret_id, encrypted_value, wrapped_dek, last_updated_at FROM secrets ORDER BY secret_id",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let mut h = Sha256::new();
        for r in rows {
            h.update(r.get::<String, _>(0));
            h.update(r.get::<Vec<u8>, _>(1));
            h.update(r.get::<Vec<u8>, _>(2));
            h.update(r.get::<i64, _>(3).to_be_bytes());
        }
        hex::encode(h.finalize())
    };
    let before = snapshot().await;
    let r = import(&ours, &uri, &[]);
    let rep = r.json();
    assert_eq!(names(&rep, "imported"), IMPORTED, "{}", r.stderr);
    assert_values_match(&ours, &uri, &IMPORTED).await;
    let rep = import(&ours, &uri, &[]).json();
    assert_eq!(names(&rep, "skipped"), IMPORTED);
    assert_eq!(snapshot().await, before, "MLflow's database is only read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_import_matches_and_leaves_mlflow_unchanged() {
    testkit::mlflow_skip_if_off!();
    let Some(uri) = testkit::mlflow::mlflow_postgres().await else {
        return;
    };
    let url = uri.replacen("postgresql+psycopg2://", "postgres://", 1);
    server_import_matches_and_leaves_mlflow_unchanged(uri, url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_import_matches_and_leaves_mlflow_unchanged() {
    testkit::mlflow_skip_if_off!();
    let Some(uri) = testkit::mlflow::mlflow_mysql().await else {
        return;
    };
    let url = uri.replacen("mysql+pymysql://", "mysql://", 1);
    server_import_matches_and_leaves_mlflow_unchanged(uri, url).await;
}
