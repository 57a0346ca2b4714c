//! `mlflow-secrets doctor`: exit 0 on a healthy setup; exit 1 naming the
//! check and its remedy for a wrong passphrase, a group-writable keystore,
//! an unmigrated database, a broken tokens file, and (on the test control
//! plane) a webhook caBundle that does not trust the serving certificate.
//! Nothing it prints is a value or a passphrase.

mod k8s;
mod ops_support;

use ops_support::*;

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

/// The cluster checks: a webhook configuration whose caBundle holds some
/// other CA fails `k8s.ca_bundle`; the right CA passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_that_does_not_match_the_serving_certificate_fails() {
    k8s::skip_if_off!();
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use mlflow_secrets::k8s::webhook::certs::Material;
    use std::time::Duration;

    let env = k8s::TestEnv::get().await;
    let ns = env.namespace("ops-doctor").await;
    let client = env.client().await;
    // The CRDs, as the chart installs them.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    {
        use kube::CustomResourceExt;
        for crd in [
            mlflow_secrets::k8s::crd::MlflowSecret::crd(),
            mlflow_secrets::k8s::crd::MlflowSecretBinding::crd(),
        ] {
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(
                &name,
                &PatchParams::apply("ops-doctor-test").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
        }
    }
    let day = Duration::from_secs(86_400);
    let serving =
        Material::generate(&["127.0.0.1".to_string()], 300 * day, 900 * day, None).unwrap();
    let other = Material::generate(&["127.0.0.1".to_string()], 300 * day, 900 * day, None).unwrap();
    let secret_name = "ops-doctor-webhook-tls";
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(
            &PostParams::default(),
            &serving.to_secret(ns.name(), secret_name),
        )
        .await
        .unwrap();
    let config_name = k8s::unique_name("ops-doctor");
    let webhook = |bundle: &str| -> MutatingWebhookConfiguration {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": { "name": config_name },
            "webhooks": [{
                "name": "inject.secrets.mlflow.org",
                "clientConfig": {
                    "url": "https://127.0.0.1:9/mutate",
                    "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bundle),
                },
                // Never called: it selects no namespace.
                "namespaceSelector": { "matchLabels": { "ops-doctor-test/never": "x" } },
                "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"] }],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Ignore",
            }]
        }))
        .unwrap()
    };
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    hooks
        .create(&PostParams::default(), &webhook(&other.ca_crt))
        .await
        .unwrap();

    let s = healthy().await;
    let kubeconfig = env.kubeconfig_path().to_str().unwrap().to_string();
    let args = [
        "--kubeconfig",
        kubeconfig.as_str(),
        "--operator-namespace",
        ns.name(),
        "--webhook-configuration",
        config_name.as_str(),
        "--webhook-secret",
        secret_name,
    ];
    assert_fails(
        &s,
        &args,
        "k8s.ca_bundle",
        "does not hold the CA",
        "restart the operator",
    );
    let (_, report, _) = doctor(&s, &args);
    for name in [
        "k8s.api",
        "k8s.crds",
        "k8s.webhook",
        "k8s.cert_expiry",
        "k8s.namespaces",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report}");
    }

    // With the serving certificate's CA in the bundle, every check passes.
    hooks
        .patch(
            &config_name,
            &PatchParams::apply("ops-doctor-test").force(),
            &Patch::Apply(&webhook(&serving.ca_crt)),
        )
        .await
        .unwrap();
    let (code, report, text) = doctor(&s, &args);
    assert_eq!(code, 0, "{text}");
    assert_eq!(check(&report, "k8s.ca_bundle")["status"], "ok");
    hooks
        .delete(&config_name, &DeleteParams::default())
        .await
        .unwrap();
    ns.cleanup().await;
}
