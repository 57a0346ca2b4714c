//! `mlflow-secrets doctor`: exit 0 on a healthy setup; exit 1 naming the
//! check and its remedy for a wrong passphrase, a group-writable keystore,
//! an unmigrated database and a broken tokens file (the cluster checks are
//! in tests/k8s/ops_doctor.rs).
//! Nothing it prints is a value or a passphrase.

use testkit::ops::*;

/// A keystore, a migrated store and one secret.
async fn healthy() -> Setup {
    let s = Setup::new(None);
    s.generate_keystore();
    s.ok(&["migrate"]);
    let store = s.store_at(&s.store_uri, &s.keystore).await;
    seed(&store, "doc", 2).await;
    s
}

/// Run doctor with `-o json`; returns (exit code, report, text output).
fn doctor(s: &Setup, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["doctor", "-o", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = s.cli(&args);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}{err}"));
    let mut text_args = vec!["doctor"];
    text_args.extend_from_slice(extra);
    let (text_code, text, text_err) = s.cli(&text_args);
    assert_eq!(code, text_code, "the table and JSON runs disagree");
    let all = format!("{out}{err}{text}{text_err}");
    for secret in [PASS_V1, PASS_V2, &value_for("doc-0"), &value_for("doc-1")] {
        assert!(
            !all.contains(secret),
            "doctor printed a passphrase or a value"
        );
    }
    (code, report, format!("{text}{text_err}"))
}

/// The one check named `name`.
fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// Exit 1, and `name` failed with a remedy containing `remedy`, listed in
/// the table's remedies too.
fn assert_fails(s: &Setup, extra: &[&str], name: &str, detail: &str, remedy: &str) {
    let (code, report, text) = doctor(s, extra);
    assert_eq!(code, 1, "doctor should fail: {text}");
    let c = check(&report, name);
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
    assert!(c["remedy"].as_str().unwrap().contains(remedy), "{c}");
    assert!(text.contains(&format!("{name} (FAIL): ")), "{text}");
    assert!(
        text.contains(name) && text.contains("error: doctor found"),
        "{text}"
    );
}

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
