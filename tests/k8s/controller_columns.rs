//! The CRD fields that reach the store's columns (`spec.provider` ->
//! `provider`, `spec.field` -> `value_field`, `spec.serviceAccountNames` ->
//! `service_accounts`, docs/design.md §2, §8), and the schema refusing what the
//! store refuses (reserved binding names of docs/design.md §6, bad fields and
//! ServiceAccount names). Real control plane, in-process controllers,
//! SQLite.

use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::json;

use crate::support;
use crate::support::controller::{Harness, binding_ready_is, secret_ready_is, value_from};

const VALUE: &str = "sk-columns-CANARY-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_field_and_service_accounts_reach_the_store() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-columns").await;
    let ns = h.name().to_string();
    h.put_source("openai", "token", VALUE).await;
    h.create_secret(
        "openai-key",
        json!({ "provider": "openai", "valueFrom": value_from("openai", "token") }),
    )
    .await;
    h.wait_secret("openai-key", "Ready", |o| {
        secret_ready_is(o, "True", "Active")
    })
    .await;
    let row = h.store.get_secret_by_name(&ns, "openai-key").await.unwrap();
    assert_eq!(row.provider.as_deref(), Some("openai"));

    // An Azure credential managed with the CLI; one field per binding.
    let azure = SecretValue::from_json_text(
        r#"{"api_key":"az-CANARY-key-0123456789","api_base":"https://example.invalid","api_version":"2024-06-01"}"#,
    )
    .unwrap();
    let az = h
        .store
        .create_secret(&ns, "azure", &azure, true, "cli:alice")
        .await
        .unwrap();
    h.create_secret("azure", json!({})).await;
    h.wait_secret("azure", "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;
    h.create_binding(
        "az-key",
        json!({
            "secretRef": { "name": "azure" }, "resourceId": "judge", "bindingName": "AZURE_API_KEY",
            "field": "api_key", "serviceAccountNames": ["scorer-sa", "batch"]
        }),
    )
    .await;
    let b = h
        .wait_binding("az-key", "Bound", |o| binding_ready_is(o, "True", "Bound"))
        .await;
    let sb = h
        .store
        .get_binding(&b.status.unwrap().binding_id.unwrap())
        .await
        .unwrap();
    assert_eq!(sb.secret_id, az.secret_id);
    assert_eq!(sb.value_field.as_deref(), Some("api_key"));
    let mut sas = sb.service_accounts.clone();
    sas.sort();
    assert_eq!(sas, ["batch", "scorer-sa"]);

    // A store binding of the same key with another field is not this
    // object's to change: Conflict, and the store binding stays as it is.
    h.store
        .bind_secret(
            &az.secret_id,
            "SCORER_JOB",
            "judge-2",
            "AZURE_API_BASE",
            "cli:alice",
        )
        .await
        .unwrap();
    h.create_binding(
        "az-base",
        json!({
            "secretRef": { "name": "azure" }, "resourceId": "judge-2", "bindingName": "AZURE_API_BASE",
            "field": "api_base"
        }),
    )
    .await;
    h.wait_binding("az-base", "Conflict", |o| {
        binding_ready_is(o, "False", "Conflict")
    })
    .await;
    h.cleanup().await;
}

/// The CRD's schema refuses what the store refuses: the same names are
/// refused by `kubectl apply` (dry run) and by the store's validator, and
/// the same names pass both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_reserved_names_bad_fields_and_service_accounts() {
    support::skip_if_off!();
    use mlflow_secrets::store::validate;
    let h = Harness::start("ctrl-reserved").await;
    let dry = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let spec = |name: &str| json!({ "secretRef": { "name": "s" }, "resourceId": "job-1", "bindingName": name });
    // One or two names of each reserved family, sorted (the whole list is
    // the store's own unit test).
    let refused = [
        "BROWSER",
        "DYLD_INSERT_LIBRARIES",
        "HOME",
        "HTTPS_PROXY",
        "https_proxy",
        "JAVA_TOOL_OPTIONS",
        "KUBERNETES_SERVICE_HOST",
        "LD_PRELOAD",
        "MLFLOW_SECRETS_STORE_URI",
        "No_Proxy",
        "NODE_OPTIONS",
        "PATH",
        "PERL5OPT",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "RUBYOPT",
        "SHELL",
        "USER",
    ];
    let accepted = [
        "OPENAI_API_KEY",
        "PATHS",
        "MY_PATH",
        "USERNAME",
        "PROXY_URL",
        "MLFLOW_TRACKING_TOKEN",
        "AZURE_API_BASE",
    ];
    for name in refused {
        assert!(
            validate::binding_name(name).is_err(),
            "the store accepts {name}"
        );
        let err = h
            .bindings()
            .create(&dry, &h.binding_object("r", spec(name)))
            .await
            .expect_err(name)
            .to_string();
        assert!(err.contains("reserved"), "{name}: {err}");
    }
    for name in accepted {
        assert!(
            validate::binding_name(name).is_ok(),
            "the store refuses {name}"
        );
        h.bindings()
            .create(&dry, &h.binding_object("a", spec(name)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (extra, expect) in [
        (json!({ "field": "api\u{1}key" }), "field"),
        (json!({ "field": "" }), "field"),
        (
            json!({ "serviceAccountNames": ["Bad_SA"] }),
            "serviceAccountNames",
        ),
        (
            json!({ "serviceAccountNames": ["a", "a"] }),
            "serviceAccountNames",
        ),
    ] {
        let mut s = spec("OK_NAME");
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        let err = h
            .bindings()
            .create(&dry, &h.binding_object("f", s))
            .await
            .expect_err(expect)
            .to_string();
        assert!(err.contains(expect), "{extra}: {err}");
    }
    let bad_provider: mlflow_secrets::k8s::crd::MlflowSecret = serde_json::from_value(json!({
        "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecret",
        "metadata": { "name": "p" }, "spec": { "provider": "open ai" }
    }))
    .unwrap();
    let err = h
        .secrets()
        .create(&dry, &bad_provider)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("provider"), "{err}");
    // The API server runs the store's secret-name pattern: visible
    // non-ASCII text passes, whitespace and a bidi override do not.
    let named = |name: &str| -> mlflow_secrets::k8s::crd::MlflowSecret {
        serde_json::from_value(json!({
            "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecret",
            "metadata": { "name": "n" }, "spec": { "secretName": name }
        }))
        .unwrap()
    };
    for name in ["clé-ü", "日本-key"] {
        assert!(validate::secret_name(name).is_ok(), "{name}");
        h.secrets()
            .create(&dry, &named(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["has space", "abc\u{202e}gpj.exe", "a\u{200b}b"] {
        assert!(validate::secret_name(name).is_err(), "{name:?}");
        let err = h
            .secrets()
            .create(&dry, &named(name))
            .await
            .expect_err(name)
            .to_string();
        assert!(err.contains("secretName"), "{name:?}: {err}");
    }
    h.cleanup().await;
}
