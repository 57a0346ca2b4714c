//! The chart's RBAC is enough, and only just: the `operator` process runs
//! against the control plane *as the chart's ServiceAccount* (an
//! impersonating kubeconfig), with exactly the ServiceAccount, ClusterRole,
//! Role and bindings that `helm template` renders, and still imports,
//! binds, leads and injects. A permission the chart forgot makes this test
//! fail; `kubectl auth can-i` checks that it was not given more than the
//! job needs. Twice: cluster-wide (the ClusterRole), and namespaced
//! (`rbac.namespaces`, `--watch-namespaces`: a Role per namespace, and no
//! Secret of any other namespace within reach).

use std::time::Duration;

use crate::support;
use crate::support::operator::{OperatorSetup, crd_api, operator_env, wait_condition};
use crate::support::{TestEnv, eventually, repo_root, unique_name};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use testkit::TestKeystore;

const READY: Duration = Duration::from_secs(60);

/// Deletes the cluster-scoped objects of the rendered chart, also when the
/// test fails half-way.
struct ClusterScoped {
    kubectl: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    name: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        for kind in [
            "mutatingwebhookconfiguration",
            "clusterrolebinding",
            "clusterrole",
        ] {
            let _ = std::process::Command::new(&self.kubectl)
                .args(["delete", kind, &self.name, "--ignore-not-found"])
                .env("KUBECONFIG", &self.kubeconfig)
                .status();
        }
    }
}

async fn kubectl(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = env.command("kubectl");
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_on_the_charts_rbac_alone() {
    support::skip_if_off!();
    runs_on_the_rendered_rbac(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_mode_runs_on_roles_alone_and_reaches_no_other_namespace() {
    support::skip_if_off!();
    runs_on_the_rendered_rbac(true).await;
}

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A] --as SA`: "yes" or "no".
async fn can_i(env: &TestEnv, sa: &str, verb: &str, resource: &str, ns: Option<&str>) -> String {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", sa];
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let (_, answer) = kubectl(env, &args, None).await;
    answer
        .lines()
        .next()
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

async fn runs_on_the_rendered_rbac(namespaced: bool) {
    let (env, client) = operator_env().await;
    let op_ns = env.namespace("rbac-op").await;
    let ns = env.namespace("rbac-work").await;
    let elsewhere = env.namespace("rbac-elsewhere").await;
    let release = unique_name("rbac");
    let fullname = format!("{release}-mlflow-secrets");
    let _cleanup = ClusterScoped {
        kubectl: env.bin_dir().join("kubectl"),
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        name: fullname.clone(),
    };

    // The chart's ServiceAccount and RBAC, exactly as rendered.
    let helm_home = tempfile::tempdir().unwrap();
    let rendered = env
        .command("helm")
        .args(["template", &release])
        .arg(repo_root().join("charts/mlflow-secrets"))
        .args(["--namespace", op_ns.name()])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"])
        .args(if namespaced {
            vec![
                "--set".to_string(),
                format!("rbac.namespaces[0]={}", ns.name()),
            ]
        } else {
            vec![]
        })
        .env("HELM_CACHE_HOME", helm_home.path().join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.path().join("config"))
        .env("HELM_DATA_HOME", helm_home.path().join("data"))
        .output()
        .await
        .unwrap();
    assert!(
        rendered.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let rendered = String::from_utf8(rendered.stdout).unwrap();
    let (ok, out) = kubectl(env, &["apply", "-f", "-"], Some(&rendered)).await;
    assert!(ok, "applying the chart's RBAC: {out}");

    // The chart creates the webhook configuration (the operator may only
    // get/patch it, by name); stand in for it with an empty one.
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": fullname }
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mwc)
        .await
        .unwrap();

    // A kubeconfig that acts as the ServiceAccount.
    let sa_user = format!("system:serviceaccount:{}:{fullname}", op_ns.name());
    let admin: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(env.kubeconfig_path()).unwrap()).unwrap();
    let mut impersonating = admin.clone();
    for user in impersonating["users"].as_array_mut().unwrap() {
        user["user"]["as"] = sa_user.clone().into();
        user["user"]["as-groups"] = serde_json::json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{}", op_ns.name()),
            "system:authenticated"
        ]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig-as-sa.json");
    std::fs::write(&kubeconfig, impersonating.to_string()).unwrap();

    // Not more than the job needs.
    let mut refused = vec![
        ("list", "pods", Some(ns.name())),
        // The webhook reads Jobs (get/list/watch), never writes them.
        ("create", "jobs", Some(ns.name())),
        ("delete", "jobs", Some(ns.name())),
        ("create", "mutatingwebhookconfigurations", Some(ns.name())),
        (
            "delete",
            "mlflowsecrets.secrets.mlflow.org",
            Some(ns.name()),
        ),
        ("create", "leases.coordination.k8s.io", Some(ns.name())),
        ("delete", "configmaps", Some(ns.name())),
    ];
    if namespaced {
        // Nothing of another namespace, nor any cluster-wide listing.
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            refused.push((verb, "secrets", Some(elsewhere.name())));
            refused.push((verb, "secrets", Some("kube-system")));
        }
        refused.push(("list", "secrets", None));
        refused.push(("list", "mlflowsecrets.secrets.mlflow.org", None));
        refused.push((
            "get",
            "mlflowsecrets.secrets.mlflow.org",
            Some(elsewhere.name()),
        ));
        refused.push(("delete", "secrets", Some(op_ns.name())));
    }
    for (verb, resource, in_ns) in refused {
        assert_eq!(
            can_i(env, &sa_user, verb, resource, in_ns).await,
            "no",
            "the ServiceAccount may {verb} {resource} in {in_ns:?}"
        );
    }
    // What the revocation sweep needs in the workload namespace.
    for verb in ["list", "patch", "delete"] {
        assert_eq!(
            can_i(env, &sa_user, verb, "secrets", Some(ns.name())).await,
            "yes",
            "the ServiceAccount may not {verb} secrets in {}",
            ns.name()
        );
    }

    // The operator, as the ServiceAccount, with the chart's names.
    let ks = TestKeystore::new();
    let store_uri = format!("sqlite://{}", tmp.path().join("secrets.db").display());
    let mut setup = OperatorSetup::for_keystore(store_uri, &ks, op_ns.name(), tmp.path());
    setup.webhook_config = fullname.clone();
    setup.lease_name = Some(format!("{fullname}-operator"));
    setup.kubeconfig = Some(kubeconfig);
    if namespaced {
        setup.extra_args = vec!["--watch-namespaces".into(), ns.name().to_string()];
    }
    setup.select(env, &ns).await;
    let op = setup.start(env, "rbac-replica").await;
    op.wait_ready(READY).await;

    // Import, bind, inject.
    let src: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "key-src", "annotations": { "secrets.mlflow.org/importable": "true" } },
        "stringData": { "k": "sk-rbac-canary-0001" }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &src)
        .await
        .unwrap();
    let apply = |kind: &'static str, name: &'static str, spec: serde_json::Value| {
        let api = crd_api(client.clone(), ns.name(), kind);
        let labels = setup.labels();
        async move {
            let o: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": kind,
                "metadata": { "name": name, "labels": labels },
                "spec": spec
            }))
            .unwrap();
            api.patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&o))
                .await
                .unwrap();
            wait_condition(&api, name, "Ready", "True", READY).await
        }
    };
    apply(
        "MlflowSecret",
        "key",
        serde_json::json!({ "valueFrom": { "secretKeyRef": { "name": "key-src", "key": "k" } } }),
    )
    .await;
    apply(
        "MlflowSecretBinding",
        "bind",
        serde_json::json!({ "secretRef": { "name": "key" }, "resourceId": "job-rbac", "bindingName": "API_KEY" }),
    )
    .await;
    // Two Jobs of the resource: each gets its per-Job Secret.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for name in ["scorer", "scorer-2"] {
        let job: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": name },
            "spec": { "backoffLimit": 0, "template": {
                "metadata": {
                    "labels": { "secrets.mlflow.org/inject": "true" },
                    "annotations": { "secrets.mlflow.org/resource-id": "job-rbac" }
                },
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] }
            } }
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let pod = eventually(READY, &format!("the pod of {name}"), || {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default().labels(&format!("job-name={name}")))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .next()
            }
        })
        .await;
        let env_vars = pod.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env_vars.iter().any(|e| e.name == "API_KEY"),
            "not injected under the chart's RBAC; operator log:\n{}",
            op.logs()
        );
    }
    let copies: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    for name in ["scorer", "scorer-2"] {
        let s = copies.get(&format!("{name}-mlflow-secrets")).await.unwrap();
        assert!(s.data.unwrap_or_default().contains_key("API_KEY"));
    }

    // Revoking the MlflowSecret removes its value from both Jobs' Secrets
    // within the reconcile (the status turns REVOKED only after that), with
    // the chart's RBAC.
    let mlsec = crd_api(client.clone(), ns.name(), "MlflowSecret");
    mlsec
        .patch(
            "key",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "revoked": true } })),
        )
        .await
        .unwrap();
    eventually(READY, "the MlflowSecret to be REVOKED", || {
        let mlsec = mlsec.clone();
        async move {
            let o = mlsec.get("key").await.ok()?;
            (o.data["status"]["state"] == "REVOKED").then_some(())
        }
    })
    .await;
    for name in ["scorer", "scorer-2"] {
        assert!(
            copies
                .get_opt(&format!("{name}-mlflow-secrets"))
                .await
                .unwrap()
                .is_none(),
            "{name}'s Secret still holds the revoked value; operator log:\n{}",
            op.logs()
        );
    }

    // The leader wrote its Lease, certificate Secret and caBundle with
    // these permissions, and nothing was refused along the way.
    let logs = op.logs();
    assert!(
        !logs.contains("forbidden") && !logs.contains("Forbidden"),
        "a request was refused by RBAC:\n{logs}"
    );
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&fullname)
        .await
        .unwrap();
    assert!(
        mwc.webhooks.unwrap_or_default()[0]
            .client_config
            .ca_bundle
            .is_some()
    );

    setup.cleanup(env).await;
    drop(op);
    for name in ["scorer", "scorer-2"] {
        let _ = jobs.delete(name, &DeleteParams::background()).await;
    }
    ns.cleanup().await;
    elsewhere.cleanup().await;
    op_ns.cleanup().await;
}
