//! `mlflow-secrets doctor` against the test control plane: a webhook
//! configuration whose caBundle does not trust the serving certificate
//! fails `k8s.ca_bundle`; the right CA passes it.

use testkit::ops::*;

/// The cluster checks: a webhook configuration whose caBundle holds some
/// other CA fails `k8s.ca_bundle`; the right CA passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_that_does_not_match_the_serving_certificate_fails() {
    crate::support::skip_if_off!();
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use mlflow_secrets::k8s::webhook::certs::Material;
    use std::time::Duration;

    let env = crate::support::TestEnv::get().await;
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
    let config_name = crate::support::unique_name("ops-doctor");
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
