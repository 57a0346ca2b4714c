//! `mlflow-secrets doctor`: exit 0 on a healthy setup; exit 1 naming the
//! check and its remedy for a wrong passphrase, a group-writable keystore,
//! an unmigrated database and a broken tokens file (the cluster checks are
//! in tests/k8s/ops_doctor.rs).
//! Nothing it prints is a value or a passphrase.

use testkit::ops::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes() {
    let s = healthy().await;
    let (code, report, text) = doctor(&s, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["ok"], true);
    for name in [
        "keystore.permissions",
        "kek.v1",
        "kek.active",
        "store.reachable",
        "store.migrations",
        "store.foreign_table",
        "audit.chain",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {text}");
    }
    assert_eq!(check(&report, "k8s")["status"], "skip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_leaves_a_rewrap_due_warning_not_a_failure() {
    let s = healthy().await;
    s.rotate();
    let (code, report, text) = doctor(&s, &[]);
    assert_eq!(code, 0, "{text}");
    let c = check(&report, "store.kek_usage");
    assert_eq!(c["status"], "warn");
    assert!(
        c["remedy"].as_str().unwrap().contains("rewrap --all"),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_fails_kek_check() {
    let s = healthy().await;
    std::fs::write(s.pass.join("v1"), "a passphrase that is not it").unwrap();
    assert_fails(
        &s,
        &[],
        "kek.v1",
        "wrong passphrase for KEK version 1",
        "put the passphrase",
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_writable_keystore_fails() {
    use std::os::unix::fs::PermissionsExt;
    let s = healthy().await;
    std::fs::set_permissions(&s.keystore, std::fs::Permissions::from_mode(0o770)).unwrap();
    assert_fails(
        &s,
        &[],
        "keystore.permissions",
        "writable by group or others",
        "chmod go-w",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_database_fails() {
    let mut s = Setup::new(None);
    s.generate_keystore();
    let db = s.path("unmigrated.db");
    std::fs::File::create(&db).unwrap();
    s.store_uri = format!("sqlite://{}", db.display());
    assert_fails(
        &s,
        &[],
        "store.migrations",
        "pending",
        "mlflow-secrets migrate",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tokens_file_fails() {
    let s = healthy().await;
    let tokens = s.path("tokens");
    std::fs::write(&tokens, "this is not a tokens line\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_fails(
        &s,
        &["--tokens-file", tokens.to_str().unwrap()],
        "tokens_file",
        "",
        "token create",
    );
}
